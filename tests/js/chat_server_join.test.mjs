// Chat's server-side joins (issue #24 item 2) seen from snorky.js: the
// backend's control.subscribe({service: "chat"}) makes the page's Chat
// dispatch serverJoined(channel, members) (members() and membersChanged as
// after a join), then the room's lines come through messageReceived; the
// other members see presenceReceived joined; control.unsubscribe dispatches
// serverLeft(channel) and forgets the room; after a reconnection the old
// connection's server joins are gone (not rejoined).
import assert from "node:assert/strict";
import { Snorky, controlApp, next, test } from "./helpers.mjs";

const app = controlApp();

const { control } = app;
const page = (identity) => app.page(identity, { chat: Snorky.Chat });

test("control.subscribe/unsubscribe reach the page's Chat signals", async () => {
  const bob = (await page("bob90")).services.chat;
  await bob.join({ channel: "room-90" });
  const mine = await page("u90");
  const chat = mine.services.chat;

  const joined = next(chat.serverJoined);
  const seen = next(bob.presenceReceived);
  assert.deepEqual(await control("subscribe", { identity: "u90", service: "chat", channel: "room-90" }),
                   { subscribed: 1, refused: 0, processes: 1 });
  const [channel, members] = await joined;
  assert.equal(channel, "room-90");
  assert.deepEqual(members.sort(), ["bob90", "u90"]);
  assert.deepEqual(chat.members("room-90").sort(), ["bob90", "u90"]);
  assert.equal(chat.serverChannels.has("room-90"), true);
  const presence = await seen;
  assert.deepEqual([presence.from, presence.channel, presence.status], ["u90", "room-90", "joined"]);

  const line = next(chat.messageReceived);
  await bob.send({ channel: "room-90", body: "hi" });
  assert.equal((await line).body, "hi");

  // taken out: told, forgotten; bob sees u90 leave
  const left = next(chat.serverLeft);
  const gone = next(bob.presenceReceived);
  assert.deepEqual(await control("unsubscribe", { identity: "u90", service: "chat", channel: "room-90" }),
                   { unsubscribed: 1, processes: 1 });
  assert.equal(await left, "room-90");
  assert.equal((await gone).status, "left");
  assert.deepEqual(chat.members("room-90"), []);
  assert.equal(chat.serverChannels.has("room-90"), false);

  // joined by the server again, then a reconnection: not rejoined by the page
  const again = next(chat.serverJoined);
  await control("subscribe", { identity: "u90", service: "chat", channel: "room-90" });
  await again;
  await chat.join({ channel: "own-90" });
  const back = next(mine.connected);
  await control("disconnect", { identity: "u90" });
  await back;
  const rejoined = next(chat.membersChanged, { filter: (c) => c === "own-90" });
  await rejoined;  // the page's own room is restored
  assert.deepEqual(chat.serverChannels.values(), []);
  assert.deepEqual(chat.members("room-90"), []);
  const rooms = (await control("channels", { service: "chat" })).channels;
  assert.deepEqual(rooms.filter((c) => c.channel === "room-90"), [{ channel: "room-90", subscribers: 1 }]);
});

test("a personal channel of others is refused and the page is told nothing", async () => {
  const chat = (await page("carol90")).services.chat;
  const told = [];
  chat.serverJoined.add((channel) => told.push(channel));
  assert.deepEqual(await control("subscribe", { identity: "carol90", service: "chat", channel: "dm#alice,bob" }),
                   { subscribed: 0, refused: 1, processes: 1 });
  const marker = next(chat.serverJoined);
  await control("subscribe", { identity: "carol90", service: "chat", channel: "dm#carol90,dave" });
  assert.deepEqual(await marker, ["dm#carol90,dave", ["carol90"]]);
  assert.deepEqual(told, ["dm#carol90,dave"]);
});
