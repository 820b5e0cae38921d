// Every connector against a real snorky_sync server (tests/integration/testapp.py).
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, connect, next, collect, within, test } from "./helpers.mjs";

let server;
const open = [];

before(async () => { server = await TestServer.start(); });
after(async () => {
  open.forEach((s) => s.close());
  await server.stop();
});

async function client(services, path = "/ws") {
  const s = await connect(server.wsUrl + path, services);
  open.push(s);
  return s;
}

const id = (name) => ({ user: name });  // the test app's token identities
const names = (members) => members.map((m) => m.user).sort();

async function user(name, services) {
  return client(services, "/ws-token?token=" + encodeURIComponent(await server.token(name)));
}

test("calls made before the socket opens are queued and sent on open", async () => {
  const s = new Snorky(WebSocket, server.wsUrl + "/ws", { pubsub: Snorky.PubSub });
  open.push(s);
  assert.equal(s.isConnecting, true);
  const got = next(s.services.pubsub.messagePublished);
  const subscribed = s.services.pubsub.subscribe({ channel: "early" });
  const published = s.services.pubsub.publish({ channel: "early", message: "hi" });
  assert.equal(await within(subscribed), null);
  assert.equal(await within(published), null);
  assert.deepEqual(await got, { type: "message", channel: "early", message: "hi" });
  assert.equal(s.isConnected, true);
  assert.equal(s.isConnecting, false);
});

test("RPC errors reject with the server's error text", async () => {
  const s = await client({ pubsub: Snorky.PubSub });
  await s.services.pubsub.subscribe({ channel: { room: 1 } });
  await assert.rejects(s.services.pubsub.subscribe({ channel: { room: 1 } }), { message: "Already subscribed" });
  await assert.rejects(s.services.pubsub.rpcCall("nope", {}), { message: "Unknown command" });
  await assert.rejects(s.services.pubsub.rpcCall("publish", { chanel: 1 }), { message: "Invalid params" });
  await assert.rejects(s.services.pubsub.unsubscribe({ channel: "never" }), { message: "Not subscribed" });
  assert.deepEqual(s.services.pubsub.subscriptions.values(), [{ room: 1 }]);
});

test("a custom RPCService subclass with addRPCMethods talks to a user-written service", async () => {
  class Calculator extends Snorky.RPCService {}
  Calculator.addRPCMethods(["add", "divide", "slowSquare"]);
  const s = await client({ calc: Calculator });
  assert.equal(await s.services.calc.add({ a: 2, b: 3 }), 5);
  assert.equal(await s.services.calc.slowSquare({ x: 7, delay: 0.01 }), 49);
  await assert.rejects(s.services.calc.divide({ a: 1, b: 0 }), { message: "Division by zero" });
});

test("PubSub: publish reaches every subscriber, unsubscribe stops it", async () => {
  const a = await client({ pubsub: Snorky.PubSub });
  const b = await client({ pubsub: Snorky.PubSub });
  await a.services.pubsub.subscribe({ channel: "news" });
  await b.services.pubsub.subscribe({ channel: "news" });
  const atB = next(b.services.pubsub.messagePublished);
  await a.services.pubsub.publish({ channel: "news", message: { n: 1 } });
  assert.deepEqual(await atB, { type: "message", channel: "news", message: { n: 1 } });
  await b.services.pubsub.unsubscribe({ channel: "news" });
  const bSeen = collect(b.services.pubsub.messagePublished);
  const atA = next(a.services.pubsub.messagePublished);
  await a.services.pubsub.publish({ channel: "news", message: { n: 2 } });
  assert.deepEqual((await atA).message, { n: 2 });
  // b's own publish on another channel it subscribes proves its stream is live and ordered
  await b.services.pubsub.subscribe({ channel: "probe" });
  await b.services.pubsub.publish({ channel: "probe", message: "p" });
  assert.deepEqual(bSeen.map((m) => m.channel), ["probe"]);
});

test("Chat: presence, members, messages and read receipts between two identities", async () => {
  const alice = await user("alice", { chat: Snorky.Chat });
  const alice2 = await user("alice", { chat: Snorky.Chat });
  const bob = await user("bob", { chat: Snorky.Chat });
  const ca = alice.services.chat, ca2 = alice2.services.chat, cb = bob.services.chat;
  assert.deepEqual((await ca.join({ channel: "room" })).members, [id("alice")]);
  const joined = next(ca.presenceReceived);
  assert.deepEqual(names((await cb.join({ channel: "room" })).members), ["alice", "bob"]);
  const p = await joined;
  assert.deepEqual(p.from, id("bob"));
  assert.equal(p.status, "joined");
  assert.deepEqual(names(ca.members("room")), ["alice", "bob"]);

  const aliceSeen = collect(ca.presenceReceived);
  await ca2.join({ channel: "room" });  // same identity: no second "joined"
  const msg = next(cb.messageReceived);
  await ca2.send({ channel: "room", body: "hello" });
  const m = await msg;
  assert.deepEqual(m.from, id("alice"));
  assert.equal(m.body, "hello");
  assert.match(m.timestamp, /^\d{4}-\d\d-\d\dT.*(Z|[+-]\d\d:\d\d)$/);

  const read = next(ca.readReceived);
  await ca2.read({ channel: "room" });
  assert.equal((await read).channel, "room");

  const left = next(ca.membersChanged, { filter: (ch, members) => !names(members).includes("bob") });
  await cb.leave({ channel: "room" });
  assert.deepEqual((await left)[1], [id("alice")]);
  assert.deepEqual(aliceSeen.map((x) => [x.from.user, x.status]), [["bob", "left"]]);
  await assert.rejects(cb.send({ channel: "room", body: "x" }), { message: "Not joined" });
});

test("Chat without an identity is refused", async () => {
  const anon = await client({ chat: Snorky.Chat });
  await assert.rejects(anon.services.chat.join({ channel: "room" }), { message: "Not authenticated" });
});

test("Cursors: own cursors, and remote cursors added, updated and removed", async () => {
  const a = await user("ann", { cursors: Snorky.Cursors });
  const b = await user("ben", { cursors: Snorky.Cursors });
  const docA = await a.services.cursors.join({ document: "doc1" });
  const [own, created] = docA.createCursor({ position: 1, status: "typing" });
  const handle = await created;
  assert.equal(own.publicHandle, handle);
  assert.equal(own.isMine, true);
  const docB = await b.services.cursors.join({ document: "doc1" });
  assert.deepEqual(docB.cursors.map((c) => [c.publicHandle, c.position, c.owner]), [[handle, 1, id("ann")]]);

  const [bOwn, bCreated] = docB.createCursor({ position: 5, status: null });
  const added = await next(docA.cursorAdded);
  assert.equal(added.publicHandle, await bCreated);
  assert.notEqual(added.publicHandle, handle);
  assert.deepEqual(added.owner, id("ben"));

  const updated = next(docB.cursorUpdated);
  await own.update({ position: 42 });
  assert.equal((await updated).position, 42);
  assert.equal(docB.cursors.find((c) => c.publicHandle === handle).position, 42);
  assert.equal(own.isSynchronized(), true);
  assert.throws(() => own.update({ owner: "x" }), /Can't update 'owner'/);

  const removed = next(docA.cursorRemoved);
  await bOwn.remove();
  assert.equal((await removed).publicHandle, bOwn.publicHandle);
  assert.deepEqual(docA.foreignCursors(), []);
});

test("Messaging: register, list, send, and the error texts", async () => {
  const a = await client({ messaging: Snorky.Messaging });
  const b = await client({ messaging: Snorky.Messaging });
  const ma = a.services.messaging, mb = b.services.messaging;
  await ma.registerParticipant({ name: "js-alice" });
  await mb.registerParticipant({ name: "js-bob" });
  await assert.rejects(mb.registerParticipant({ name: "js-alice" }), { message: "Name already registered" });
  const list = await ma.listParticipants();
  assert.ok(list.includes("js-alice") && list.includes("js-bob"));
  const got = next(mb.participantMessage);
  await ma.send({ sender: "js-alice", dest: "js-bob", body: { hi: 1 } });
  assert.deepEqual(await got, { type: "message", sender: "js-alice", dest: "js-bob", body: { hi: 1 } });
  await assert.rejects(ma.send({ sender: "js-bob", dest: "js-alice", body: 1 }), { message: "Invalid sender" });
  await ma.unregisterParticipant({ name: "js-alice" });
  assert.equal(ma.participants.size, 0);
});

test("DataSync: buffered deltas arrive before the acquire response and keep a collection in sync", async () => {
  const s = await client({ datasync: Snorky.DataSync });
  const ds = s.services.datasync;
  const token = (await server.backend("datasync_backend", {
    command: "authorizeSubscription", params: { items: [{ dealer: "todosByList", query: "js" }] }, callId: 1,
  })).data;
  assert.match(token, /^[a-z0-9]{32}$/);
  // the page's initial query result, then a delta that raced with it (buffered)
  const todos = [{ id: 1, list: "js", title: "first" }];
  const processor = new Snorky.DataSync.CollectionDeltaProcessor({
    Todo: new Snorky.DataSync.ArrayCollection(todos),
  });
  ds.deltaReceived.add(processor.processDelta, processor);
  const onDelta = [];
  ds.onDelta = (d) => onDelta.push(d.type);
  await server.backend("datasync_backend", { command: "publishDeltas", params: { deltas: [
    { type: "insert", model: "Todo", data: { id: 2, list: "js", title: "second" } },
  ] } });
  await ds.acquireSubscription({ token });
  // delivered before the response: already applied when acquire resolves
  assert.deepEqual(todos.map((t) => t.title), ["first", "second"]);

  const done = next(processor.processed, { filter: (d) => d.type === "delete" });
  await server.backend("datasync_backend", { command: "publishDeltas", params: { deltas: [
    { type: "update", model: "Todo", oldData: { id: 1, list: "js", title: "first" }, newData: { id: 1, list: "js", title: "FIRST" } },
    { type: "insert", model: "Todo", data: { id: 3, list: "other", title: "not mine" } },
    { type: "delete", model: "Todo", data: { id: 2, list: "js", title: "second" } },
  ] } });
  await done;
  assert.deepEqual(todos, [{ id: 1, list: "js", title: "FIRST" }]);
  assert.deepEqual(onDelta, ["insert", "update", "delete"]);
  await assert.rejects(ds.acquireSubscription({ token: "x".repeat(32) }), { message: "No such subscription" });
  await ds.cancelSubscription({ token });
});
