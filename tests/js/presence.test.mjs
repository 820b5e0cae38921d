// Presence with metadata (issue #24 item 4) seen from snorky.js: subscribe/join
// with {presence: true, meta}, presenceChanged (join, update, leave), presenceOf,
// updatePresence, presenceStats, and the restore after a reconnection, which
// subscribes again with the page's latest meta.  The default app with
// SNORKY_PUBSUB_PRESENCE=1 and SNORKY_CHAT_PRESENCE=1.
import assert from "node:assert/strict";
import { Snorky, controlApp, next, test } from "./helpers.mjs";

const app = controlApp({ SNORKY_PUBSUB_PRESENCE: "1", SNORKY_CHAT_PRESENCE: "1" });

const page = (user) => app.page(user, { pubsub: Snorky.PubSub, chat: Snorky.Chat });
const metas = (entries) => entries.map((e) => [e.identity, e.meta]).sort((a, b) => (a[0] < b[0] ? -1 : 1));

test("a PubSub channel's presence: entries, join/update/leave, counts, restored after a reconnection", async () => {
  const ann = await page("ann");
  const bob = await page("bob");
  const a = ann.services.pubsub;
  const b = bob.services.pubsub;

  const first = next(a.presenceChanged);
  const answer = await a.subscribe({ channel: "room", presence: true, meta: { status: "on" } });
  assert.deepEqual(answer.presence, [{ client: answer.client, identity: "ann", meta: { status: "on" } }]);
  const [channel, entries, change] = await first;
  assert.deepEqual([channel, metas(entries), change], ["room", [["ann", { status: "on" }]], null]);
  assert.equal(a.presenceId("room"), answer.client);

  let changed = next(a.presenceChanged);
  await b.subscribe({ channel: "room", presence: true, meta: { status: "on" } });
  let [, now, what] = await changed;
  assert.equal(what.event, "join");
  assert.deepEqual(metas(now), [["ann", { status: "on" }], ["bob", { status: "on" }]]);

  changed = next(a.presenceChanged);
  await b.updatePresence({ channel: "room", meta: { status: "away" } });
  [, now, what] = await changed;
  assert.deepEqual([what.event, what.identity, what.meta], ["update", "bob", { status: "away" }]);
  assert.deepEqual(metas(a.presenceOf("room")), [["ann", { status: "on" }], ["bob", { status: "away" }]]);
  assert.deepEqual(await a.presenceStats({ channel: "room" }), { clients: 2, users: 2 });
  assert.equal((await b.presence({ channel: "room" })).presence.length, 2);

  // bob's connection drops: snorky.js subscribes again with his latest meta
  const left = next(a.presenceChanged, { filter: (ch, list, c) => c && c.event === "leave" });
  const joined = next(a.presenceChanged, { filter: (ch, list, c) => c && c.event === "join" });
  const restored = next(b.presenceChanged, { filter: (ch, list, c) => c === null, timeout: 15000 });
  const oldId = b.presenceId("room");
  bob._socket.close();
  assert.equal((await left)[2].client, oldId);
  assert.deepEqual([(await joined)[2].identity, (await joined)[2].meta], ["bob", { status: "away" }]);
  const [, again] = await restored;
  assert.notEqual(b.presenceId("room"), oldId);
  assert.deepEqual(metas(again), [["ann", { status: "on" }], ["bob", { status: "away" }]]);

  const gone = next(a.presenceChanged);
  await b.unsubscribe({ channel: "room" });
  assert.equal((await gone)[2].event, "leave");
  assert.deepEqual(metas(a.presenceOf("room")), [["ann", { status: "on" }]]);
  assert.deepEqual(b.presenceOf("room"), []);
});

test("Chat: members as in 0.1, entries with meta on request", async () => {
  const ann = await page("ann");
  const bob = await page("bob");
  const a = ann.services.chat;
  const answer = await a.join({ channel: "lobby", presence: true, meta: "phone" });
  assert.deepEqual(answer.members, ["ann"]);
  const changed = next(a.presenceChanged);
  const members = next(a.membersChanged);
  const plain = await bob.services.chat.join({ channel: "lobby", meta: "laptop" });
  assert.deepEqual(Object.keys(plain), ["members"]);  // no presence asked: 0.1's answer
  assert.deepEqual((await members)[1].sort(), ["ann", "bob"]);
  assert.deepEqual([(await changed)[2].identity, (await changed)[2].meta], ["bob", "laptop"]);
  assert.deepEqual(await bob.services.chat.presenceStats({ channel: "lobby" }), { clients: 2, users: 2 });
});
