// PubSub history: snorky.js recovers what was published while it was away,
// against a real server with SNORKY_PUBSUB_HISTORY_SIZE set.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, connect, gather, next, within, test } from "./helpers.mjs";

let server;
const open = [];
before(async () => {
  server = await TestServer.start(undefined, {
    env: { SNORKY_PUBSUB_HISTORY_SIZE: "100", SNORKY_CHAT_HISTORY_SIZE: "100",
           SNORKY_DATASYNC_RESUME_WINDOW: "60" } });
});
after(async () => {
  open.forEach((s) => s.close());
  await server.stop();
});

const publish = (channel, message) =>
  server.backend("pubsub_backend", { command: "publish", params: { channel, message }, callId: 1 });

test("a dropped connection gets every message published meanwhile, once, in order", async () => {
  const page = await connect(server.wsUrl + "/ws", { pubsub: Snorky.PubSub });
  open.push(page);
  const { pubsub } = page.services;
  const got = gather(pubsub.messagePublished, (m) => m.message);
  const recovered = gather(pubsub.recovered);
  const first = await pubsub.subscribe({ channel: { room: "h" } });
  assert.equal(first.offset, 0);
  for (let i = 0; i < 5; i++) await publish({ room: "h" }, i);
  await got.atLeast(5);

  const back = next(page.connected, { timeout: 20000 });
  page._socket.close();                          // the network drops the connection
  for (let i = 5; i < 10; i++) await publish({ room: "h" }, i);   // published while away
  assert.equal(await within(back, 20000), true);
  await recovered.atLeast(1);
  assert.deepEqual(recovered[0], [{ room: "h" }, true]);
  for (let i = 10; i < 12; i++) await publish({ room: "h" }, i);
  await got.atLeast(12);
  assert.deepEqual([...got], [...Array(12).keys()]);  // nothing lost, nothing twice
});

test("after a server restart (history gone) the page is told it missed something", async () => {
  const page = await connect(server.wsUrl + "/ws", { pubsub: Snorky.PubSub });
  open.push(page);
  const { pubsub } = page.services;
  await pubsub.subscribe({ channel: "r" });
  const before = next(pubsub.messagePublished);  // listening before the publish can arrive
  await publish("r", "before");
  await before;
  const told = next(pubsub.recovered, { timeout: 30000 });
  await server.restart();
  assert.deepEqual(await told, ["r", false]);
  const after = next(pubsub.messagePublished);
  await publish("r", "after");                   // and it is subscribed again
  assert.equal((await after).message, "after");
});

test("0.1-style code that ignores offsets keeps working", async () => {
  const page = await connect(server.wsUrl + "/ws", { pubsub: Snorky.PubSub });
  open.push(page);
  const { pubsub } = page.services;
  const seen = new Promise((resolve) => {
    pubsub.onMessagePublished = (m) => resolve([m.channel, m.message]);  // 0.1's callback
  });
  await pubsub.subscribe({ channel: "old" });
  await publish("old", "x");
  assert.deepEqual(await within(seen), ["old", "x"]);
});

test("a chat page that drops gets the lines sent meanwhile, once, in order", async () => {
  const as = async (user) => connect(server.wsUrl + "/ws-token?token=" + encodeURIComponent(await server.token(user)),
                                     { chat: Snorky.Chat });
  const ann = await as("ann");
  const bob = await as("bob");
  open.push(ann, bob);
  const lines = gather(ann.services.chat.messageReceived, (m) => m.body);
  const recovered = gather(ann.services.chat.recovered);
  await ann.services.chat.join({ channel: "room" });
  await bob.services.chat.join({ channel: "room" });
  await bob.services.chat.send({ channel: "room", body: "one" });
  await lines.atLeast(1);
  const back = next(ann.connected, { timeout: 20000 });
  ann._socket.close();
  await bob.services.chat.send({ channel: "room", body: "two" });
  await bob.services.chat.send({ channel: "room", body: "three" });
  await within(back, 20000);
  await recovered.atLeast(1);
  assert.deepEqual(recovered[0], ["room", true]);
  await bob.services.chat.send({ channel: "room", body: "four" });
  await lines.atLeast(4);
  assert.deepEqual([...lines], ["one", "two", "three", "four"]);
});

test("a DataSync subscription resumes after a drop with the deltas it missed", async () => {
  const page = await connect(server.wsUrl + "/ws", { datasync: Snorky.DataSync });
  open.push(page);
  const { datasync } = page.services;
  const titles = gather(datasync.deltaReceived, (d) => d.data.title);
  const resumed = gather(datasync.recovered);
  const lost = gather(datasync.subscriptionsLost);
  const token = (await server.backend("datasync_backend", {
    command: "authorizeSubscription", params: { items: [{ dealer: "allTodos", query: null }] }, callId: 1 })).data;
  await datasync.acquireSubscription({ token });
  const insert = (title) => server.backend("datasync_backend", { command: "publishDeltas", callId: 2,
    params: { deltas: [{ type: "insert", model: "Todo", data: { id: title, title, list: "x" } }] } });
  await insert("a");
  await titles.atLeast(1);
  const back = next(page.connected, { timeout: 20000 });
  page._socket.close();
  await insert("b");
  await insert("c");
  await within(back, 20000);
  await resumed.atLeast(1);
  assert.deepEqual([...resumed], [token]);
  await insert("d");
  await titles.atLeast(4);
  assert.deepEqual([...titles], ["a", "b", "c", "d"]);
  assert.equal(lost.length, 0);
});

test("a channel refused on restore is dropped and signalled (access taken back)", async () => {
  // the test app's PubSub follows SNORKY_PERSONAL_CHANNELS: off, then on after a restart
  const env = server.env;
  server.env = { ...env, SNORKY_PERSONAL_CHANNELS: "0" };
  await server.restart();
  try {
    const page = await connect(server.wsUrl + "/ws", { pubsub: Snorky.PubSub });
    open.push(page);
    const { pubsub } = page.services;
    await pubsub.subscribe({ channel: "dialog#alice" });  // anonymous, allowed while off
    await pubsub.subscribe({ channel: "open" });
    const refused = next(pubsub.refused, { timeout: 30000 });
    const recovered = gather(pubsub.recovered);
    server.env = { ...env, SNORKY_PERSONAL_CHANNELS: "1" };
    await server.restart();
    assert.deepEqual(await refused, ["dialog#alice", "Not authorized"]);
    await recovered.atLeast(1);                     // "open" came back
    assert.deepEqual(recovered[0], ["open", false]);
    assert.deepEqual(pubsub.subscriptions.values(), ["open"]);
    const after = next(pubsub.messagePublished);
    await publish("open", "still here");
    assert.equal((await after).message, "still here");
  } finally {
    server.env = env;
  }
});
