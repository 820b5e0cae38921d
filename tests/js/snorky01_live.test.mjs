// Code written the Snorky.js 0.1 way, against real snorky_sync servers:
// a 0.1-style Snorky.Class subclass of RPCService, a plain Service, 0.1's doc
// example connector (doc/examples/simple_pubsub.js, with its server side in
// minimal_pubsub_app.py), the logic of 0.1's chat demo (snorky/demos/chat:
// Messaging over a SockJS-like socket class, debug on), 0.1's announcements
// demo (PubSub fed by the backend), and every connector through 0.1's API,
// with Snorky.Promise replaced by a $q-style library.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, makeQ, next, within, test } from "./helpers.mjs";

let server, minimal;
const open = [];

before(async () => {
  [server, minimal] = await Promise.all([
    TestServer.start(),
    TestServer.start(undefined, { module: "tests.js.minimal_pubsub_app" }),
  ]);
});
after(async () => {
  open.forEach((s) => s.close());
  await Promise.all([server.stop(), minimal.stop()]);
});

/** new Snorky(...) as 0.1 code writes it (no options), opened. */
async function snorky(socketClass, url, services, debug) {
  const s = debug === undefined ? new Snorky(socketClass, url, services) : new Snorky(socketClass, url, services, debug);
  open.push(s);
  if (!s.isConnected) await next(s.connected);
  return s;
}

async function tokenUrl(user) {
  return server.wsUrl + "/ws-token?token=" + encodeURIComponent(await server.token(user));
}

test("a 0.1-style Snorky.Class subclass of RPCService talks to a server service", async () => {
  // the way 0.1's built-in connectors are written
  const Calculator = Snorky.Class(Snorky.RPCService, {
    init: function () {
      Snorky.RPCService.prototype.init.call(this);
      this.notificationReceived.add(this.onNotification, this);
      this.answers = [];
    },
    onNotification: function () {},
    addAndKeep: function (params) {
      const self = this;
      return this.add(params).then(function (sum) { self.answers.push(sum); return sum; });
    },
  });
  Calculator.addRPCMethods(["add", "divide", "slowSquare"]);
  // and a subclass of it, 0.1-style too: Parent.call / Parent.prototype.m.call
  const LoggingCalculator = Snorky.Class(Calculator, {
    constructor: function (name, snorkyObj) {
      this.sent = [];
      Calculator.call(this, name, snorkyObj);
    },
    sendMessage: function (message) {
      this.sent.push(message);
      return Calculator.prototype.sendMessage.call(this, message);
    },
  });
  assert.throws(() => LoggingCalculator.addRPCMethods(["add"]),
    { message: 'Method "add" already exists in the class. Refusing to overwrite it.' });

  const s = await snorky(WebSocket, server.wsUrl + "/ws", { calc: LoggingCalculator });
  const calc = s.services.calc;
  assert.ok(calc instanceof Calculator && calc instanceof Snorky.RPCService);
  assert.equal(await calc.addAndKeep({ a: 2, b: 3 }), 5);
  assert.equal(await calc.add({ a: 2 }), 2);  // the service's default b=0
  assert.equal(await calc.slowSquare({ x: 7, delay: 0.01 }), 49);
  await assert.rejects(calc.divide({ a: 1, b: 0 }), { message: "Division by zero" });
  await assert.rejects(calc.rpcCall("nope", {}), { message: "Unknown command" });
  await assert.rejects(calc.add({ c: 1 }), { message: "Invalid params" });
  assert.deepEqual(calc.answers, [5]);
  assert.deepEqual(calc.sent.map((m) => [m.command, m.callId]),
    [["add", 0], ["add", 1], ["slowSquare", 2], ["divide", 3], ["nope", 4], ["add", 5]]);
  assert.deepEqual(calc.calls, {});
});

test("a 0.1-style plain Service: sendMessage and packetReceived against the echo service", async () => {
  const Echo = Snorky.Class(Snorky.Service, {
    init: function () {
      this.echoes = new Snorky.Signal();
      this.packetReceived.add(function (message) { this.echoes.dispatch(message); }, this);
    },
  });
  const s = await snorky(WebSocket, server.wsUrl + "/ws", { echo: Echo });
  const got = next(s.services.echo.echoes);
  s.services.echo.sendMessage({ hello: ["world", 1] });
  assert.deepEqual(await got, { hello: ["world", 1] });
});

test("0.1's doc example connector (simple_pubsub.js) against 0.1's doc example service", async () => {
  // doc/examples/simple_pubsub.js as 0.1's guide gives it — including its
  // call of the parent's init() without .call(this)
  const SimplePubSub = new Snorky.Class(Snorky.RPCService, {
    init: function () {
      Snorky.RPCService.prototype.init();
      this.notificationReceived.add(this.onNotification, this);
      this.publicationReceived = new Snorky.Signal();
    },
    onNotification: function (notification) {
      if (notification.type == "publication") {  // eslint-disable-line eqeqeq
        this.publicationReceived.dispatch(notification.message);
      }
    },
  });
  SimplePubSub.addRPCMethods(["subscribe", "unsubscribe", "publish"]);

  // connecting.rst: used before the connection is made, buffered until then
  const a = new Snorky(WebSocket, minimal.wsUrl + "/ws", { pubsub: SimplePubSub });
  const b = new Snorky(WebSocket, minimal.wsUrl + "/ws", { pubsub: SimplePubSub });
  open.push(a, b);
  for (const key of ["calls", "nextCallId", "notificationReceived", "packetReceived"]) {
    assert.equal(Object.hasOwn(Snorky.RPCService.prototype, key), false, "state on the prototype: " + key);
  }
  assert.notEqual(a.services.pubsub.calls, b.services.pubsub.calls);
  const log = [];
  const subscribed = [a, b].map((s) => s.services.pubsub.subscribe({ /* no parameters */ })
    .then(function () { log.push("Subscripted!"); }));
  await within(Promise.all(subscribed));
  assert.deepEqual(log, ["Subscripted!", "Subscripted!"]);
  const atA = next(a.services.pubsub.publicationReceived);
  const atB = next(b.services.pubsub.publicationReceived);
  await a.services.pubsub.publish({ message: "Hello from A" });
  assert.deepEqual(await Promise.all([atA, atB]), ["Hello from A", "Hello from A"]);

  await b.services.pubsub.unsubscribe({});
  const bSeen = [];
  b.services.pubsub.publicationReceived.add(function (text) { bSeen.push(text); });
  const again = next(a.services.pubsub.publicationReceived);
  await b.services.pubsub.publish({ message: "second" });  // b's publish answered after delivery
  assert.equal(await again, "second");
  assert.deepEqual(bSeen, []);
});

/* The logic of 0.1's chat demo page (snorky/demos/chat/demo.js): a form to
 * register a name, a button to list participants, a form to send a message,
 * and the messages received, through Snorky.Messaging, with
 * `new Snorky(SockJS, "/sockjs", {...}, true)`.  Here the page is an object
 * of texts and lists instead of jQuery and a DOM. */
function chatDemoPage(SockJS) {
  const page = {
    statusRegister: "", statusParticipants: "", statusMessages: "",
    ulParticipants: [], ulMessages: [], changed: new Snorky.Signal(),
  };
  const set = (key, value) => { page[key] = value; page.changed.dispatch(key, value); };
  const snorkyObj = new Snorky(SockJS, "/sockjs", { messaging: Snorky.Messaging }, true);
  const messaging = snorkyObj.services.messaging;
  page.snorky = snorkyObj;
  page.register = (name) => messaging.registerParticipant({ name: name }).then(
    () => set("statusRegister", "Successfully registered"),
    (err) => set("statusRegister", "Register error: " + err.message));
  page.unregister = (name) => messaging.unregisterParticipant({ name: name }).then(
    () => set("statusRegister", "Successfully unregistered"),
    (err) => set("statusRegister", "Unregister error: " + err.message));
  page.listParticipants = () => messaging.listParticipants({}).then((participants) => {
    set("ulParticipants", participants.slice());
    set("statusParticipants", "Participants listed");
  }, (err) => {
    set("ulParticipants", []);
    set("statusParticipants", "Error: " + err.message);
  });
  page.send = (from, to, text) => messaging.send({ sender: from, dest: to, body: text }).then(
    () => set("statusMessages", "Successfully sent"),
    (err) => set("statusMessages", "Error: " + err.message));
  messaging.onParticipantMessage = (msg) => {
    set("ulMessages", page.ulMessages.concat([msg.sender + " to " + msg.dest + ": " + msg.body]));
  };
  return page;
}

test("0.1's chat demo logic: two pages register, list, message each other (SockJS-like socket, debug on)", async (t) => {
  // the page's SockJS class: any WebSocket-like constructor is accepted; this
  // one takes the demo's relative "/sockjs" address to the server's WebSocket
  const addresses = [];
  function SockJS(url) {
    addresses.push(url);
    return new WebSocket(server.wsUrl + "/ws");
  }
  const debugLines = [];
  const originalDebug = console.debug;
  console.debug = (...args) => debugLines.push(args.join(" "));
  t.after(() => { console.debug = originalDebug; });
  const alice = chatDemoPage(SockJS), bob = chatDemoPage(SockJS);
  open.push(alice.snorky, bob.snorky);
  assert.deepEqual(addresses, ["/sockjs", "/sockjs"]);
  assert.equal(alice.snorky.debug, true);

  // used before the connection opens, as the demo's user can
  await within(alice.register("demo-alice"));
  assert.equal(alice.statusRegister, "Successfully registered");
  assert.ok(debugLines.includes("Connected to Snorky server."));
  await bob.register("demo-bob");
  await bob.register("demo-alice");
  assert.equal(bob.statusRegister, "Register error: Name already registered");

  await bob.listParticipants();
  assert.equal(bob.statusParticipants, "Participants listed");
  assert.ok(["demo-alice", "demo-bob"].every((n) => bob.ulParticipants.includes(n)), bob.ulParticipants);

  const received = next(bob.changed, { filter: (key) => key === "ulMessages" });
  await alice.send("demo-alice", "demo-bob", "Hello, Bob");
  assert.equal(alice.statusMessages, "Successfully sent");
  await received;
  assert.deepEqual(bob.ulMessages, ["demo-alice to demo-bob: Hello, Bob"]);
  await alice.send("demo-bob", "demo-alice", "forged");
  assert.equal(alice.statusMessages, "Error: Invalid sender");
  await alice.send("demo-alice", "nobody-here", "x");
  assert.equal(alice.statusMessages, "Error: Unknown destination");
  assert.deepEqual(alice.ulMessages, []);

  await alice.unregister("demo-alice");
  assert.equal(alice.statusRegister, "Successfully unregistered");
  await alice.unregister("demo-alice");
  assert.equal(alice.statusRegister, "Unregister error: Unknown participant");
  await bob.listParticipants();
  assert.equal(bob.ulParticipants.includes("demo-alice"), false);
});

test("0.1's announcements demo: subscribe at once, onMessagePublished fed by the backend", async () => {
  const s = new Snorky(WebSocket, server.wsUrl + "/ws", { pubsub: Snorky.PubSub }, true);
  open.push(s);
  const announcements = [];
  const subscribed = s.services.pubsub.subscribe({ channel: "announcements" });
  const got = next(s.services.pubsub.messagePublished);
  s.services.pubsub.onMessagePublished = function (msg) { announcements.push(msg.message); };
  const originalDebug = console.debug;
  console.debug = () => {};
  try {
    await within(subscribed);
  } finally {
    console.debug = originalDebug;
  }
  const answer = await server.backend("pubsub_backend", {
    command: "publish", params: { channel: "announcements", message: "Server maintenance at 5" }, callId: 1,
  });
  assert.deepEqual(answer, { type: "response", callId: 1, data: null });
  await got;
  assert.deepEqual(announcements, ["Server maintenance at 5"]);
});

test("every connector through 0.1's API with Snorky.Promise replaced by a $q-style library", async (t) => {
  const { PromiseQAdapter, QPromise } = makeQ();
  const saved = Snorky.Promise;
  Snorky.Promise = PromiseQAdapter;
  t.after(() => { Snorky.Promise = saved; });
  const isQ = (p) => { assert.ok(p instanceof QPromise, "not from Snorky.Promise"); return p; };
  const services = { pubsub: Snorky.PubSub, chat: Snorky.Chat, cursors: Snorky.Cursors,
    messaging: Snorky.Messaging, datasync: Snorky.DataSync };
  const ann = await snorky(WebSocket, await tokenUrl("ann01"), services);
  const ben = await snorky(WebSocket, await tokenUrl("ben01"), services);

  // PubSub
  await isQ(ann.services.pubsub.subscribe({ channel: { room: "x" } }));
  const published = next(ann.services.pubsub.messagePublished);
  await isQ(ben.services.pubsub.publish({ channel: { room: "x" }, message: [1, 2] }));
  assert.deepEqual(await published, { type: "message", channel: { room: "x" }, message: [1, 2] });

  // Chat: join answers {members}; presence and messages as 0.1's signals
  const joinedAnn = await isQ(ann.services.chat.join({ channel: "lobby" }));
  assert.deepEqual(joinedAnn.members, [{ user: "ann01" }]);
  const presence = next(ann.services.chat.presenceReceived);
  const joinedBen = await isQ(ben.services.chat.join({ channel: "lobby" }));
  assert.deepEqual(joinedBen.members.map((m) => m.user).sort(), ["ann01", "ben01"]);
  assert.deepEqual([(await presence).from, (await presence).status], [{ user: "ben01" }, "joined"]);
  const chatMessage = next(ann.services.chat.messageReceived);
  await isQ(ben.services.chat.send({ channel: "lobby", body: "hi" }));
  assert.equal((await chatMessage).body, "hi");

  // Messaging: messageReceived
  await isQ(ben.services.messaging.registerParticipant({ name: "ben01-m" }));
  await isQ(ann.services.messaging.registerParticipant({ name: "ann01-m" }));
  const dm = next(ben.services.messaging.messageReceived);
  await isQ(ann.services.messaging.send({ sender: "ann01-m", dest: "ben01-m", body: { text: "yo" } }));
  assert.deepEqual(await dm, { type: "message", sender: "ann01-m", dest: "ben01-m", body: { text: "yo" } });
  assert.ok((await isQ(ben.services.messaging.listParticipants())).includes("ann01-m"));

  // Cursors: Document / OwnCursor / ForeignCursor
  const docAnn = await isQ(ann.services.cursors.join({ document: "Sheet1" }));
  assert.ok(docAnn instanceof Snorky.Cursors.Document);
  const [own, created] = docAnn.createCursor({ position: 12, status: "read" });
  assert.ok(own instanceof Snorky.Cursors.OwnCursor && own instanceof Snorky.Cursors.Cursor);
  await isQ(created);
  assert.equal(own.isSynchronized(), true);
  const docBen = await ben.services.cursors.join({ document: "Sheet1" });
  assert.equal(docBen.cursors.length, 1);
  const seen = docBen.cursors[0];
  assert.ok(seen instanceof Snorky.Cursors.ForeignCursor);
  assert.equal(seen.document, docBen);
  assert.deepEqual([seen.publicHandle, seen.position, seen.status, seen.owner], [own.publicHandle, 12, "read", { user: "ann01" }]);
  const updated = next(docBen.cursorUpdated);
  await isQ(own.update({ position: 13 }));
  assert.equal((await updated).position, 13);
  const removed = next(docBen.cursorRemoved);
  await isQ(own.remove());
  assert.equal((await removed).publicHandle, own.publicHandle);
  assert.equal(docBen.cursors.length, 0);

  // DataSync: a custom 0.1-style collection kept in sync by real deltas
  const Todos = Snorky.Class(Snorky.DataSync.Collection, {
    constructor: function () { this.byId = {}; },
    insert: function (item) { this.byId[item.id] = item.title; },
    getIterator: function () {
      const self = this, ids = Object.keys(this.byId);
      let i = -1;
      return { hasNext: () => i < ids.length - 1, next: () => ({ id: Number(ids[++i]) }),
        update: (v) => { self.byId[v.id] = v.title; }, remove: () => { delete self.byId[ids[i]]; } };
    },
  });
  const todos = new Todos();
  const processor = new Snorky.DataSync.CollectionDeltaProcessor({ Todo: todos });
  ann.services.datasync.deltaReceived.add(function (delta) { processor.processDelta(delta); });
  const token = (await server.backend("datasync_backend", {
    command: "authorizeSubscription", params: { items: [{ dealer: "todosByList", query: "l01" }] }, callId: 1 })).data;
  await isQ(ann.services.datasync.acquireSubscription({ token }));
  const lastDelta = next(processor.processed, { filter: (d) => d.type === "delete" });
  await server.backend("datasync_backend", { command: "publishDeltas", params: { deltas: [
    { type: "insert", model: "Todo", data: { id: 1, list: "l01", title: "one" } },
    { type: "insert", model: "Todo", data: { id: 2, list: "l01", title: "two" } },
    { type: "update", model: "Todo", oldData: { id: 1, list: "l01", title: "one" }, newData: { id: 1, list: "l01", title: "ONE" } },
    { type: "delete", model: "Todo", data: { id: 2, list: "l01", title: "two" } },
  ] } });
  await lastDelta;
  assert.deepEqual(todos.byId, { 1: "ONE" });
  await isQ(ann.services.datasync.cancelSubscription({ token }));
});
