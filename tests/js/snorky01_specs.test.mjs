// Snorky.js 0.1's own specs (snorky/frontend/src/spec/*.spec.js), case by
// case, ported to node:test: a fake socket and fake RPC transports where 0.1's
// specs used them.  Each test names the 0.1 spec case it follows; cases marked
// "+" go beyond the spec (0.1 behaviour it did not test, or wrong use that
// must fail loudly).  The same API against a real server:
// snorky01_live.test.mjs.
import { test, describe, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Snorky, makeQ } from "./helpers.mjs";

/** A jasmine-like spy: records calls; `impl` (optional) does the work. */
function spy(impl) {
  const fn = function (...args) {
    fn.calls.push(args);
    return impl ? impl.apply(this, args) : undefined;
  };
  fn.calls = [];
  return fn;
}

/** 0.1's spec/utils/spy-signal.js: a spy listening to a signal. */
function spySignal(signal) {
  const s = spy();
  signal.add(s);
  return s;
}

/** Runs fn with console[method] captured; returns the captured calls. */
function capturing(method, fn) {
  const original = console[method];
  const seen = [];
  console[method] = (...args) => seen.push(args);
  try {
    fn();
  } finally {
    console[method] = original;
  }
  return seen;
}

describe("Classy classes (class.spec.js)", () => {
  const Class = Snorky.Class;

  test("creates simple classes", () => {
    const Car = Class({ constructor: function (color) { this.color = color || "red"; } });
    assert.equal(new Car().color, "red");
    assert.equal(new Car("blue").color, "blue");
  });

  test("creates classes with prototypical methods", () => {
    const Car = Class({
      constructor: function (color) { this.color = color || "red"; },
      tellMyColor: function () { return "My color is " + this.color; },
    });
    const car = new Car();
    assert.equal(car.tellMyColor(), "My color is red");
    assert.equal(car.tellMyColor, Car.prototype.tellMyColor);
    assert.equal(Object.prototype.hasOwnProperty.call(car, "tellMyColor"), false);
  });

  test("creates inherited classes", () => {
    const Vehicle = Class({
      constructor: function (color) { this.color = color || "red"; },
      vehicleFun: function () { return "I'm a vehicle"; },
    });
    const RoadVehicle = Class(Vehicle, {
      constructor: function (color, numWheels) {
        RoadVehicle.Super.call(this, color);
        this.numWheels = numWheels;
      },
      roadFun: function () { return "I'm a road vehicle"; },
    });
    const bike = new RoadVehicle("blue", 2);
    assert.equal(bike.color, "blue");
    assert.equal(bike.numWheels, 2);
    assert.equal(bike.vehicleFun(), "I'm a vehicle");
    assert.equal(bike.roadFun(), "I'm a road vehicle");
    assert.equal(RoadVehicle.Super, Vehicle);
    assert.ok(bike instanceof Vehicle);
    assert.equal(bike.constructor, RoadVehicle);
  });

  test("inherits constructors by default", () => {
    const A = Class({ constructor: function () { this.foo = "bar"; } });
    const B = Class(A, { getFoo: function () { return this.foo; } });
    const b = new B();
    assert.equal(b.foo, "bar");
    assert.equal(b.getFoo(), "bar");
  });

  test("works with instanceof (with and without new, with constructors)", () => {
    const A = Class({});
    assert.ok(new A() instanceof A);
    const B = new Class({});
    assert.ok(new B() instanceof B);
    const C = Class({ constructor: function () { this.foo = "bar"; } });
    const c = new C();
    assert.equal(c.foo, "bar");
    assert.ok(c instanceof C);
  });

  test("+ STATIC members, inherited by subclasses unless redefined", () => {
    const A = Class({ STATIC: { kind: "a", make() { return new this(); } }, hello() { return "A"; } });
    const B = Class(A, { STATIC: { kind: "b" } });
    assert.equal(A.kind, "a");
    assert.equal(B.kind, "b");
    assert.ok(B.make() instanceof B);
    assert.equal("STATIC" in A.prototype, false);
  });

  test("+ mixins: their members are added unless the class or its parent has them", () => {
    const Parent = Class({ who() { return "parent"; } });
    const Walks = Class({ walk() { return "walking " + this.name; }, who() { return "mixin"; } });
    const Talks = Class({ talk() { return "hi"; }, walk() { return "second mixin"; } });
    const Person = Class(Parent, Walks, Talks, {
      constructor: function (name) { this.name = name; },
      talk() { return "hello from " + this.name; },
    });
    const p = new Person("ann");
    assert.equal(p.walk(), "walking ann");        // first mixin wins over the second
    assert.equal(p.talk(), "hello from ann");     // the body wins over mixins
    assert.equal(p.who(), "parent");              // the parent wins over mixins
    assert.ok(p instanceof Parent);
    assert.equal(p instanceof Walks, false);      // mixins are copied, not inherited
  });

  test("+ my.Class and my.extendClass are Snorky.Class's (0.1's bundle defined the global)", () => {
    assert.equal(globalThis.my.Class, Snorky.Class);
    const A = Class({ a() { return 1; } });
    my.extendClass(A, { b() { return 2; }, STATIC: { s: 3 } });
    assert.equal(new A().b(), 2);
    assert.equal(A.s, 3);
  });

  test("+ wrong use fails loudly", () => {
    assert.throws(() => Class(), TypeError);
    assert.throws(() => Class("not a class", {}), { name: "TypeError", message: /parent class must be a constructor/ });
    assert.throws(() => Class(function () {}, 5, {}), { name: "TypeError", message: /mixin 1/ });
  });

  test("+ every Snorky class is a 0.1-style parent: Parent.call(this, ...) and Parent.prototype.m.call(this)", () => {
    const fakeSnorky = { isConnected: false, _sendServiceMessage() { return false; } };
    const classes = {
      Service: ["s", fakeSnorky], RPCService: ["s", fakeSnorky], PubSub: ["s", fakeSnorky],
      Chat: ["s", fakeSnorky], Cursors: ["s", fakeSnorky], Messaging: ["s", fakeSnorky],
      DataSync: ["s", fakeSnorky], Signal: [],
    };
    for (const [name, args] of Object.entries(classes)) {
      const Parent = Snorky[name];
      const Child = Snorky.Class(Parent, {
        constructor: function () { Parent.apply(this, args); this.child = true; },
      });
      const obj = new Child();
      assert.ok(obj instanceof Parent, name);
      assert.equal(obj.child, true);
    }
    const nested = {
      "Cursors.Cursor": [Snorky.Cursors.Cursor, []],
      "Cursors.ForeignCursor": [Snorky.Cursors.ForeignCursor, [{ publicHandle: 1 }]],
      "Cursors.OwnCursor": [Snorky.Cursors.OwnCursor, [{}, { privateHandle: 1 }]],
      "Cursors.Document": [Snorky.Cursors.Document, [{}, "doc", []]],
      "DataSync.Collection": [Snorky.DataSync.Collection, []],
      "DataSync.ArrayCollection": [Snorky.DataSync.ArrayCollection, [[]]],
      "DataSync.SingleItemCollection": [Snorky.DataSync.SingleItemCollection, [() => 1, () => {}]],
      "DataSync.ArrayIterator": [Snorky.DataSync.ArrayIterator, [[], {}]],
      "DataSync.SingleItemIterator": [Snorky.DataSync.SingleItemIterator, [{}]],
      "DataSync.CollectionDeltaProcessor": [Snorky.DataSync.CollectionDeltaProcessor, [{}]],
    };
    for (const [name, [Parent, args]] of Object.entries(nested)) {
      const obj = Object.create(Parent.prototype);
      assert.doesNotThrow(() => Parent.apply(obj, args), name);
    }
    // the connection itself
    class NeverOpens { close() {} }
    const MySnorky = Snorky.Class(Snorky, {
      constructor: function (url) { Snorky.call(this, NeverOpens, url, {}); this.mine = true; },
    });
    const s = new MySnorky("ws://unused");
    assert.equal(s.mine, true);
    assert.equal(s.isConnecting, true);
    s.close();
  });

  test("+ ES classes still extend the Snorky classes", () => {
    class Calc extends Snorky.RPCService {}
    Calc.addRPCMethods(["add"]);
    const fake = { isConnected: true, _sendServiceMessage: spy(() => true) };
    const c = new Calc("calc", fake);
    c.add({ a: 1 });
    assert.deepEqual(fake._sendServiceMessage.calls, [["calc", { command: "add", params: { a: 1 }, callId: 0 }]]);
  });
});

describe("Snorky connector (snorky.spec.js)", () => {
  let snorky, socket, connected, disconnected, MockSocket, MockService;

  beforeEach(() => {
    MockSocket = spy(function () {
      if (!(this instanceof MockSocket)) throw Error("Not called as constructor.");
      this.send = spy();
      this.onopen = function () {};
      this.onmessage = function () {};
      this.onclose = function () {};
      this.close = spy();
    });
    MockService = Snorky.Class(Snorky.Service, {
      doSomething: function () { this.sendMessage({ do: "something" }); },
    });
  });
  afterEach(() => { if (snorky) snorky.close(); });

  function createsSocket() {
    snorky = new Snorky(MockSocket, "ws://localhost/", { mockService: MockService });
    connected = spySignal(snorky.connected);
    disconnected = spySignal(snorky.disconnected);
    assert.deepEqual(MockSocket.calls, [["ws://localhost/"]]);
    assert.equal(snorky.isConnected, false);
    assert.equal(snorky.isConnecting, true);
    socket = snorky._socket;
    assert.ok(socket instanceof MockSocket);
  }

  function connectionEstablished() {
    createsSocket();
    assert.equal(connected.calls.length, 0);
    socket.onopen();
    assert.equal(connected.calls.length, 1);
    assert.equal(snorky.isConnected, true);
    assert.equal(snorky.isConnecting, false);
  }

  test("creates a socket instance", createsSocket);

  test("acknowledges when the endpoint accepts the connection", connectionEstablished);

  test("sends messages to services", () => {
    connectionEstablished();
    assert.ok(snorky.services.mockService instanceof MockService);
    assert.equal(snorky.services.mockService.snorky, snorky);
    snorky.services.mockService.doSomething();
    assert.equal(socket.send.calls.length, 1);
    assert.deepEqual(JSON.parse(socket.send.calls[0][0]), { service: "mockService", message: { do: "something" } });
  });

  test("receives messages from services", () => {
    connectionEstablished();
    const packetReceived = spySignal(snorky.services.mockService.packetReceived);
    socket.onmessage({ data: JSON.stringify({ service: "mockService", message: "Hello World" }) });
    assert.deepEqual(packetReceived.calls, [["Hello World"]]);
  });

  test("acknowledges when the endpoint closes the connection", () => {
    connectionEstablished();
    assert.equal(disconnected.calls.length, 0);
    socket.onclose();
    assert.equal(disconnected.calls.length, 1);
    assert.equal(snorky.isConnected, false);
    assert.equal(snorky.isConnecting, false);
    assert.equal(snorky.isReconnecting, true);  // + snorky_sync reconnects (after a delay)
  });

  test("is set to disconnected when closed in the client side", () => {
    connectionEstablished();
    snorky.disconnect();
    assert.equal(snorky.isConnected, false);
    assert.equal(snorky.isConnecting, false);
    assert.equal(socket.close.calls.length, 1);
  });

  test("+ messages sent before the connection opens are queued, then sent in order", () => {
    createsSocket();
    snorky.services.mockService.sendMessage(1);
    snorky.services.mockService.sendMessage(2);
    assert.equal(socket.send.calls.length, 0);
    socket.onopen();
    assert.deepEqual(socket.send.calls.map((c) => JSON.parse(c[0]).message), [1, 2]);
  });

  test("+ the 4th argument true is debug mode, logging 0.1's texts; connect() after disconnect()", () => {
    const seen = capturing("debug", () => {
      snorky = new Snorky(MockSocket, "ws://localhost/", {}, true);
      snorky._socket.onopen();
    });
    assert.equal(snorky.debug, true);
    assert.deepEqual(seen, [["Connected to Snorky server."]]);
    snorky.disconnect();
    snorky.connect();
    assert.equal(MockSocket.calls.length, 2);
    assert.equal(snorky.isConnecting, true);
  });

  test("+ a services entry that is not a Service class throws a TypeError naming it", () => {
    assert.throws(() => new Snorky(MockSocket, "ws://x/", { pubsub: Snorky.PubSub, bogus: {} }),
      { name: "TypeError", message: /service "bogus" is not a Snorky.Service class/ });
    assert.throws(() => new Snorky(MockSocket, "ws://x/", { calc: function Calc() {} }),
      { name: "TypeError", message: /service "calc" is not a Snorky.Service class \(got function Calc\)/ });
    assert.throws(() => new Snorky(MockSocket, "ws://x/", { p: "PubSub" }), { name: "TypeError", message: /"p"/ });
    assert.equal(MockSocket.calls.length, 0, "no socket is opened for a wrong services map");
    assert.throws(() => new Snorky("ws://x/", {}), TypeError);
    assert.throws(() => new Snorky.Service(), { message: "Bad arguments for service constructor" });
  });
});

describe("A Snorky RPC service (rpc.spec.js)", () => {
  let MockService, mockService;

  beforeEach(() => {
    MockService = Snorky.Class(Snorky.RPCService, {
      constructor: function () {
        // Do not initialize snorky and name: mock sendMessage with a spy
        Snorky.RPCService.call(this, "mock", {});
        this.sendMessage = spy();
      },
    });
    MockService.addRPCMethods(["sum"]);
    mockService = new MockService();
  });

  test("can not overwrite methods with .addRPCMethods()", () => {
    assert.throws(() => MockService.addRPCMethods(["sum"]),
      { message: 'Method "sum" already exists in the class. Refusing to overwrite it.' });
    assert.throws(() => MockService.addRPCMethods(["sendMessage"]),
      { message: 'Method "sendMessage" already exists in the class. Refusing to overwrite it.' });
  });

  test("can call known methods by their name", () => {
    assert.equal(typeof mockService.sum, "function");
  });

  test("can be requested commands", async () => {
    const promise = mockService.sum({ a: 1, b: 2 });
    assert.deepEqual(mockService.sendMessage.calls, [[{ command: "sum", params: { a: 1, b: 2 }, callId: 0 }]]);
    mockService.onPacket({ type: "response", data: 3, callId: 0 });
    assert.equal(await promise, 3);
  });

  test("allows requesting commands without parameters", () => {
    mockService.sum();
    assert.deepEqual(mockService.sendMessage.calls, [[{ command: "sum", callId: 0, params: {} }]]);
  });

  test("+ call ids count from 0 per service; errors reject with the server's text", async () => {
    const first = mockService.sum({ a: 1 });
    const second = mockService.rpcCall("sum", { a: 2 });
    assert.deepEqual(mockService.sendMessage.calls.map((c) => c[0].callId), [0, 1]);
    assert.equal(new MockService().nextCallId, 0);
    mockService.onPacket({ type: "error", callId: 1, message: "Invalid params" });
    mockService.onPacket({ type: "response", callId: 0, data: 1 });
    await assert.rejects(second, (err) => err instanceof Error && err.message === "Invalid params");
    assert.equal(await first, 1);
  });

  test("+ unknown call ids and non-RPC messages are reported with 0.1's texts", () => {
    const seen = capturing("error", () => {
      mockService.onPacket({ type: "response", callId: 99, data: 1 });
      mockService.onPacket({ no: "type" });
      mockService.packetReceived.dispatch("Hello");
    });
    assert.deepEqual(seen, [
      ['Response for unknown call with id "%s" from service "%s"', 99, "mock"],
      ['Non-RPC message received from service "%s"', "mock"],
      ['Non-RPC message received from service "%s"', "mock"],
    ]);
  });

  test("+ notifications go to notificationReceived, and to onNotification", () => {
    const received = spySignal(mockService.notificationReceived);
    mockService.packetReceived.dispatch({ type: "hello", n: 1 });
    assert.deepEqual(received.calls, [[{ type: "hello", n: 1 }]]);
    const Sub = Snorky.Class(MockService, { onNotification: spy() });
    const sub = new Sub();
    sub.onPacket({ type: "x" });
    assert.deepEqual(Sub.prototype.onNotification.calls, [[{ type: "x" }]]);
  });

  test("+ addRPCMethods refuses what is not a list of names", () => {
    assert.throws(() => MockService.addRPCMethods("sum2"), TypeError);
    assert.throws(() => MockService.addRPCMethods([3]), TypeError);
  });
});

describe("Promises (promises.spec.js) and a replaced Snorky.Promise", () => {
  let promise, success, error;
  beforeEach(() => {
    promise = new Snorky.Promise((s, e) => { success = s; error = e; });
  });

  test("call then callbacks on success", async () => {
    const done = promise.then((v) => v);
    success(42);
    assert.equal(await done, 42);
  });

  test("call catch callbacks on error", async () => {
    const done = promise.catch((e) => e.message);
    error(new Error("foo error"));
    assert.equal(await done, "foo error");
  });

  test("call then callbacks on error (also when rejected first)", async () => {
    error(new Error("foo error"));
    assert.equal(await promise.then(undefined, (e) => e.message), "foo error");
  });

  test("can resolve with rejected promises; reject when chained but not handled", async () => {
    success(new Snorky.Promise((s, e) => e(new Error("foo error"))));
    await assert.rejects(promise.then(() => "fulfilled"), { message: "foo error" });
  });

  test("+ every promise Snorky returns comes from Snorky.Promise as it is at call time", async (t) => {
    const { PromiseQAdapter, QPromise } = makeQ();
    const saved = Snorky.Promise;
    t.after(() => { Snorky.Promise = saved; });
    const sent = [];
    const fakeSnorky = { isConnected: true, _sendServiceMessage: (name, msg) => { sent.push([name, msg]); return true; } };
    const make = (Cls, name) => new Cls(name, fakeSnorky);   // made before the switch: read at call time
    const pubsub = make(Snorky.PubSub, "pubsub"), chat = make(Snorky.Chat, "chat");
    const cursors = make(Snorky.Cursors, "cursors"), messaging = make(Snorky.Messaging, "messaging");
    const datasync = make(Snorky.DataSync, "datasync");
    Snorky.Promise = PromiseQAdapter;

    /** Calls fn, answers its RPC with `data`, checks the promise's kind, returns its value. */
    async function answered(service, fn, data) {
      const before = sent.length;
      const p = fn();
      assert.ok(p instanceof QPromise, "not a Snorky.Promise: " + fn);
      assert.equal(typeof p.finally, "undefined");
      const [name, msg] = sent[before];
      assert.equal(name, service.name);
      service.onPacket({ type: "response", callId: msg.callId, data });
      return p;
    }
    assert.equal(await answered(pubsub, () => pubsub.rpcCall("publish", { channel: 1, message: 2 }), null), null);
    assert.equal(await answered(pubsub, () => pubsub.publish({ channel: 1, message: 2 }), null), null);
    await answered(pubsub, () => pubsub.subscribe({ channel: "c" }), null);
    assert.deepEqual(pubsub.subscriptions.values(), ["c"]);
    assert.deepEqual(await answered(chat, () => chat.join({ channel: "r" }), { members: ["me"] }), { members: ["me"] });
    await answered(messaging, () => messaging.registerParticipant({ name: "n" }), null);
    await answered(datasync, () => datasync.acquireSubscription({ token: "t" }), null);
    const doc = await answered(cursors, () => cursors.join({ document: "d" }), { cursors: [] });
    assert.ok(doc instanceof Snorky.Cursors.Document);
    const before = sent.length;
    const [cursor, created] = doc.createCursor({ position: 1, status: "s" });
    assert.ok(created instanceof QPromise);
    cursors.onPacket({ type: "response", callId: sent[before][1].callId, data: 7 });
    await created;
    assert.equal(cursor.publicHandle, 7);
    const same = cursor.update({ position: 1 });  // unchanged: not sent, still a Snorky.Promise
    assert.ok(same instanceof QPromise);
    assert.equal(sent.length, before + 1);
    await same;
    await answered(cursors, () => cursor.update({ position: 2 }), null);
    await answered(cursors, () => cursor.remove(), null);
    assert.equal(cursor.isSynchronized(), true);
    // a rejected call through the replacement
    const failing = pubsub.rpcCall("nope", {});
    pubsub.onPacket({ type: "error", callId: sent[sent.length - 1][1].callId, message: "Unknown command" });
    await assert.rejects(async () => { await failing; }, { message: "Unknown command" });
    Snorky.Promise = saved;
    assert.ok(pubsub.rpcCall("x", {}) instanceof Promise);
  });
});

describe("Cursors service (cursors.spec.js)", () => {
  const { Cursors } = Snorky;
  const { Document, Cursor, OwnCursor, ForeignCursor } = Snorky.Cursors;
  let service, callPromise, document, cursor;

  beforeEach(() => {
    service = new Cursors("cursors", {});
    service.rpcCall = spy(() => new Promise((success, error) => { callPromise = { success, error }; }));
  });

  async function joinDocument() {
    const promise = service.join({ document: "Sheet1" });
    assert.deepEqual(service.rpcCall.calls, [["join", { document: "Sheet1" }]]);
    callPromise.success({ cursors: [{ handle: 1, document: "Sheet1", position: 12, status: "read" }] });
    const doc = await promise;
    assert.ok(doc instanceof Document);
    assert.equal(doc.service, service);
    assert.equal(doc.name, "Sheet1");
    assert.equal(doc.cursors.length, 1);
    const c = doc.cursors[0];
    assert.ok(c instanceof Cursor);
    assert.ok(c instanceof ForeignCursor);
    assert.equal(c.handle, 1);
    assert.equal(c.position, 12);
    assert.equal(c.status, "read");
    assert.equal(c.document, doc);
    assert.equal(c.isMine, false);
    document = doc;
  }

  async function createCursor() {
    await joinDocument();
    service.rpcCall.calls.length = 0;
    const [c, promise] = document.createCursor({ position: 23, status: "read" });
    // The cursor is created immediately
    assert.ok(c instanceof Cursor);
    assert.ok(c instanceof OwnCursor);
    assert.equal(c.position, 23);
    assert.equal(c.status, "read");
    assert.equal(c.pendingPromiseCount, 1);
    assert.equal(c.isSynchronized(), false);
    assert.equal(c.isMine, true);
    assert.equal(c.removed, false);
    assert.equal(c.publicHandle, undefined);
    assert.notEqual(c.privateHandle, undefined);
    assert.equal(service.ownCursors[c.privateHandle], c);
    assert.equal(document.cursors.length, 2);
    assert.equal(document.cursors[1], c);
    cursor = c;
    assert.deepEqual(service.rpcCall.calls, [["createCursor", {
      privateHandle: c.privateHandle, document: "Sheet1", position: c.position, status: c.status,
    }]]);
    // Snorky creates the cursor and replies with the public handle
    callPromise.success(50);
    // 0.1 fulfilled this promise with undefined; snorky_sync with the handle
    assert.equal(await promise, 50);
    assert.equal(c.publicHandle, 50);
    assert.equal(c.pendingPromiseCount, 0);
  }

  async function updateCursor() {
    await createCursor();
    service.rpcCall.calls.length = 0;
    const promise = cursor.update({ position: 24 });
    assert.equal(cursor.position, 24);          // changed immediately
    assert.equal(cursor.status, "read");        // unchanged
    assert.equal(cursor.pendingPromiseCount, 1);
    assert.equal(document.cursors[1], cursor);
    assert.deepEqual(service.rpcCall.calls, [["updateCursor", {
      privateHandle: cursor.privateHandle, newData: { position: 24 },
    }]]);
    callPromise.success(null);
    await promise;
    assert.equal(cursor.pendingPromiseCount, 0);
  }

  test("can be constructed", () => assert.ok(service));
  test("can join documents", joinDocument);
  test("can create cursors", createCursor);
  test("can update cursor", updateCursor);

  test("optimizes empty updates (same values)", async () => {
    await updateCursor();
    service.rpcCall.calls.length = 0;
    await cursor.update({ position: 24, status: "read" });
    assert.equal(service.rpcCall.calls.length, 0);
    assert.equal(cursor.position, 24);
    assert.equal(cursor.status, "read");
    assert.equal(cursor.isSynchronized(), true);
  });

  test("optimizes empty updates (no elements)", async () => {
    await updateCursor();
    service.rpcCall.calls.length = 0;
    await cursor.update({});
    assert.equal(service.rpcCall.calls.length, 0);
    assert.equal(cursor.position, 24);
  });

  test("can delete cursor", async () => {
    await createCursor();
    service.rpcCall.calls.length = 0;
    const promise = cursor.remove();
    assert.equal(cursor.pendingPromiseCount, 1);
    assert.equal(cursor.removed, true);
    assert.equal(service.ownCursors[cursor.privateHandle], undefined);
    assert.equal(document.cursors.length, 1);
    assert.equal(document.cursors[1], undefined);
    assert.deepEqual(service.rpcCall.calls, [["removeCursor", { privateHandle: cursor.privateHandle }]]);
    callPromise.success();
    await promise;
    assert.equal(cursor.pendingPromiseCount, 0);
  });

  test("+ only position and status can be updated (0.1's text)", async () => {
    await createCursor();
    assert.throws(() => cursor.update({ owner: "x" }), { message: "Can't update 'owner' of cursor." });
    assert.equal(cursor.pendingPromiseCount, 0);
  });

  test("+ notifications add, update and remove foreign cursors; unknown documents are refused", async () => {
    await joinDocument();
    const real = new Cursors("cursors", {});  // the notification path, on a service without a fake rpcCall
    real.documents[Snorky.stableStringify("Sheet1")] = document;
    document.service = real;
    const added = spySignal(document.cursorAdded), updated = spySignal(document.cursorUpdated);
    const removed = spySignal(document.cursorRemoved);
    real.packetReceived.dispatch({ type: "cursorAdded", cursor: { publicHandle: 9, document: "Sheet1", position: 1 } });
    assert.ok(added.calls[0][0] instanceof ForeignCursor);
    real.packetReceived.dispatch({ type: "cursorUpdated", cursor: { publicHandle: 9, document: "Sheet1", position: 2 } });
    assert.equal(updated.calls[0][0].position, 2);
    assert.equal(document.cursors.find((c) => c.publicHandle === 9).position, 2);
    real.packetReceived.dispatch({ type: "cursorRemoved", cursor: { publicHandle: 9, document: "Sheet1" } });
    assert.deepEqual(removed.calls, [[{ publicHandle: 9, document: "Sheet1" }]]);
    assert.equal(document.cursors.some((c) => c.publicHandle === 9), false);
    assert.throws(() => real.onNotification({ type: "cursorAdded", cursor: { document: "Nope" } }),
      { message: 'Notification for unknown document: "Nope"' });
  });

  test("+ more than 100 own cursors is refused at the client side (0.1's text)", () => {
    for (let i = 0; i <= 100; i++) service.ownCursors[i] = {};
    assert.throws(() => service.getFreePrivateHandle(), { message: "Too many cursors (thrown at client side)" });
  });
});

describe("DataSync service and CollectionDeltaProcessor (datasync.spec.js)", () => {
  const { DataSync } = Snorky;
  let proc, players;

  beforeEach(() => {
    players = [{ id: 1, name: "Alice", color: "red" }];
    proc = new DataSync.CollectionDeltaProcessor({ Player: new DataSync.ArrayCollection(players) });
  });

  test("has RPC methods", () => {
    assert.equal(typeof DataSync.prototype.acquireSubscription, "function");
    assert.equal(typeof DataSync.prototype.cancelSubscription, "function");
    const datasync = new DataSync("datasync", {});
    assert.equal(typeof datasync.acquireSubscription, "function");
    assert.equal(typeof datasync.cancelSubscription, "function");
  });

  test("has correct collections", () => {
    assert.ok(proc.collections.Player instanceof DataSync.ArrayCollection);
    assert.ok(proc.collections.Player instanceof DataSync.Collection);
  });

  test("handles insertion deltas", () => {
    proc.processDelta({ type: "insert", model: "Player", data: { id: 2, name: "Ted", color: "black" } });
    assert.deepEqual(players, [{ id: 1, name: "Alice", color: "red" }, { id: 2, name: "Ted", color: "black" }]);
  });

  test("handles deletion deltas", () => {
    proc.processDelta({ type: "delete", model: "Player", data: { id: 1, name: "Alice", color: "red" } });
    assert.deepEqual(players, []);
  });

  test("handles update deltas", () => {
    proc.processDelta({ type: "update", model: "Player", oldData: { id: 1, name: "Alice", color: "red" },
      newData: { id: 1, name: "Alice", color: "blue" } });
    assert.deepEqual(players, [{ id: 1, name: "Alice", color: "blue" }]);
  });

  test("handles tagged deltas", () => {
    const red = [];
    proc = new DataSync.CollectionDeltaProcessor({
      Player: { bluePlayers: new DataSync.ArrayCollection(players), redPlayers: new DataSync.ArrayCollection(red) },
    });
    proc.processDelta({ type: "insert", model: "Player", tag: "bluePlayers", data: { id: 2, name: "Bob", color: "blue" } });
    assert.deepEqual(players, [{ id: 1, name: "Alice", color: "red" }, { id: 2, name: "Bob", color: "blue" }]);
    assert.deepEqual(red, []);
  });

  test("+ unregistered model, unregistered tag, strange type: 0.1's console texts, nothing applied", () => {
    const tagged = new DataSync.CollectionDeltaProcessor({ Player: { blue: new DataSync.ArrayCollection(players) } });
    const seen = capturing("error", () => {
      proc.processDelta({ type: "insert", model: "Team", data: {} });
      tagged.processDelta({ type: "insert", model: "Player", tag: "green", data: {} });
      proc.processDelta({ type: "upsert", model: "Player", data: {} });
    });
    assert.deepEqual(seen, [
      ["Received delta for unregistered model: Team"],
      ["Received delta with unregistered tag: green (model: Player)"],
      ["Received delta of strange type: upsert"],
    ]);
    assert.deepEqual(players, [{ id: 1, name: "Alice", color: "red" }]);
  });

  test("+ a custom collection (0.1-style subclass of Collection) gets insert and iterator update/remove", () => {
    // a Map-backed collection keyed by id, with its own iterator
    const MapIterator = Snorky.Class(DataSync.Iterator, {
      constructor: function (map) { this.map = map; this.keys = [...map.keys()]; this.i = -1; },
      hasNext() { return this.i < this.keys.length - 1; },
      next() { return this.map.get(this.keys[++this.i]); },
      update(value) { this.map.set(this.keys[this.i], { ...value, updated: true }); },
      remove() { this.map.delete(this.keys[this.i]); },
    });
    const MapCollection = Snorky.Class(DataSync.Collection, {
      constructor: function () { this.map = new Map(); this.log = []; },
      insert(value) { this.log.push("insert"); this.map.set(value.id, value); },
      getIterator() { this.log.push("iterate"); return new MapIterator(this.map); },
    });
    const coll = new MapCollection();
    const equal = spy((item, other) => item.key === other.key);
    const p = new DataSync.CollectionDeltaProcessor({ Doc: coll }, { itemsAreEqual: equal });
    const applied = spySignal(p.processed);
    p.processDelta({ type: "insert", model: "Doc", data: { id: 1, key: "a" } });
    p.processDelta({ type: "insert", model: "Doc", data: { id: 2, key: "b" } });
    const update = { type: "update", model: "Doc", oldData: { key: "b" }, newData: { id: 2, key: "b", v: 2 } };
    p.processDelta(update);
    assert.deepEqual(coll.map.get(2), { id: 2, key: "b", v: 2, updated: true });
    assert.deepEqual(equal.calls.at(-1), [{ id: 2, key: "b" }, { key: "b" }, update]);
    p.processDelta({ type: "delete", model: "Doc", data: { key: "a" } });
    assert.deepEqual([...coll.map.keys()], [2]);
    assert.deepEqual(coll.log, ["insert", "insert", "iterate", "iterate"]);
    assert.equal(applied.calls.length, 4);
  });

  test("+ items are matched on id with 0.1's loose equality by default", () => {
    proc.processDelta({ type: "delete", model: "Player", data: { id: "1" } });
    assert.deepEqual(players, []);
  });
});

describe("Collections (collections.spec.js)", () => {
  const { DataSync } = Snorky;

  describe("ArrayCollection", () => {
    let array, collection, iter;
    beforeEach(() => {
      array = ["red", "blue"];
      collection = new DataSync.ArrayCollection(array);
      iter = collection.getIterator();
    });

    test("can insert elements", () => {
      collection.insert("orange");
      assert.deepEqual(array, ["red", "blue", "orange"]);
    });
    test("iterator can read elements", () => {
      assert.equal(iter.hasNext(), true);
      assert.equal(iter.next(), "red");
      assert.equal(iter.hasNext(), true);
      assert.equal(iter.next(), "blue");
      assert.equal(iter.hasNext(), false);
    });
    test("iterator throws if read too far", () => {
      iter.next();
      iter.next();
      assert.throws(() => iter.next(), { message: "Busted iterator" });
    });
    test("iterator can update elements", () => {
      iter.next();
      iter.update("black");
      assert.deepEqual(array, ["black", "blue"]);
    });
    test("iterator throws if updated too soon", () => {
      assert.throws(() => iter.update("black"), { message: "Iterator not pointing to an item! (call next())" });
    });
    test("iterator can delete elements", () => {
      iter.next();
      iter.remove();
      assert.deepEqual(array, ["blue"]);
      assert.equal(iter.hasNext(), true);
      assert.equal(iter.next(), "blue");
      iter.remove();
      assert.deepEqual(array, []);
      assert.equal(iter.hasNext(), false);
    });
    test("iterator throws if deleted too soon", () => {
      assert.throws(() => iter.remove(), { message: "Iterator not pointing to an item! (call next())" });
    });
    test("iterator throws if deleted twice, or deleted then updated", () => {
      iter.next();
      iter.remove();
      assert.throws(() => iter.remove(), { message: "Iterator pointing to a deleted item! (call next())" });
      assert.throws(() => iter.update("black"), { message: "Iterator pointing to a deleted item! (call next())" });
    });
  });

  describe("SingleItemCollection", () => {
    let value, collection, iter, remove;
    beforeEach(() => {
      value = "red";
      remove = spy();
      collection = new DataSync.SingleItemCollection(() => value, (v) => { value = v; }, remove);
      iter = collection.getIterator();
    });

    test("cannot insert elements", () => {
      const seen = capturing("error", () => collection.insert("orange"));
      assert.deepEqual(seen, [["Received insert() request in SingleItemCollection"]]);
      assert.equal(value, "red");
    });
    test("iterator can read element", () => {
      assert.equal(iter.hasNext(), true);
      assert.equal(iter.next(), "red");
      assert.equal(iter.hasNext(), false);
    });
    test("iterator throws if read too far", () => {
      iter.next();
      assert.throws(() => iter.next(), { message: "Busted iterator" });
    });
    test("iterator can update elements", () => {
      iter.next();
      iter.update("black");
      assert.equal(value, "black");
    });
    test("iterator throws if updated or deleted too soon", () => {
      assert.throws(() => iter.update("black"), { message: "Iterator not pointing to an item! (call next())" });
      assert.throws(() => iter.remove(), { message: "Iterator not pointing to an item! (call next())" });
    });
    test("iterator can delete elements", () => {
      iter.next();
      iter.remove();
      assert.equal(remove.calls.length, 1);
      assert.equal(iter.hasNext(), false);
    });
  });

  describe("ArrayCollection options", () => {
    const Person = (item) => ({ name: item.name, whoAmI: () => "I am " + item.name });
    let array, collection;
    beforeEach(() => {
      array = [Person({ name: "Alice" })];
      collection = new DataSync.ArrayCollection(array, { transformItem: Person });
    });

    test("adds transformed items", () => {
      collection.insert({ name: "Bob" });
      assert.equal(array.length, 2);
      assert.equal(array[1].whoAmI(), "I am Bob");
    });
    test("applies transformation on updated items", () => {
      const iter = collection.getIterator();
      iter.next();
      iter.update({ name: "Bob" });
      assert.equal(array.length, 1);
      assert.equal(array[0].whoAmI(), "I am Bob");
    });
  });
});

describe("Messaging service (messaging.spec.js)", () => {
  let messagingService, messageReceived;
  beforeEach(() => {
    const MockService = Snorky.Class(Snorky.Messaging, {
      constructor: function () { Snorky.Messaging.call(this, "mock", {}); },
    });
    messagingService = new MockService();
    messagingService.sendMessage = spy();
    messageReceived = spySignal(messagingService.messageReceived);
  });

  test("sends messages", () => {
    messagingService.send({ sender: "Alice", dest: "Bob", body: "Hello" });
    assert.deepEqual(messagingService.sendMessage.calls, [[{
      command: "send", callId: 0, params: { sender: "Alice", dest: "Bob", body: "Hello" },
    }]]);
  });

  test("receives messages (and onParticipantMessage, 0.1's earlier callback, is called too)", () => {
    const msg = { type: "message", sender: "Bob", dest: "Alice", body: "Hi, Alice" };
    messagingService.onParticipantMessage = spy();
    messagingService.packetReceived.dispatch(msg);
    assert.deepEqual(messageReceived.calls, [[msg]]);
    assert.deepEqual(messagingService.onParticipantMessage.calls, [[msg]]);
    const seen = capturing("error", () => messagingService.onMessage({ type: "other" }));
    assert.deepEqual(seen, [["Unknown message type in messaging service: other"]]);
  });
});

describe("stableStringify (stringify.spec.js)", () => {
  const stringify = globalThis.stableStringify;

  test("is Snorky.stableStringify, a global as in 0.1's bundle", () => {
    assert.equal(stringify, Snorky.stableStringify);
    assert.equal(globalThis.CycleError, Snorky.CycleError);
  });

  test("should be stable", () => {
    const left = { a: "foo" }; left.b = "bar";
    const right = { b: "bar" }; right.a = "foo";
    assert.notEqual(JSON.stringify(left), JSON.stringify(right));
    assert.equal(stringify(left), stringify(right));
  });

  test("matches JSON for strings, numbers, null, {}, [], lists and nested values", () => {
    for (const v of ["string", 15, -3, null, {}, [], [1, 2, 3, 4], ["a", "b", { c: { d: 4 } }]]) {
      assert.equal(stringify(v), JSON.stringify(v));
    }
  });

  test("should not dirty", () => {
    const obj = { a: "foo" };
    stringify(obj);
    assert.deepEqual(Object.keys(obj), ["a"]);
  });

  test("should not allow cycles", () => {
    const obj = { a: "foo" };
    obj.b = obj;
    assert.throws(() => stringify(obj), (err) => err instanceof CycleError && err instanceof Error &&
      err.name === "CycleError" && err.message === "Cycles are not allowed");
    assert.deepEqual(Object.keys(obj), ["a", "b"]);
    const shared = { x: 1 };
    assert.equal(stringify([shared, shared]), '[{"x":1},{"x":1}]');  // + repeated is not a cycle
  });
});

describe("_ (pseudo-lodash.spec.js)", () => {
  const _ = Snorky._;

  test("_.replace finds and replaces elements", () => {
    const array = [{ id: 1, color: "red" }, { id: 2, color: "blue" }];
    const updated = { id: 1, color: "green" };
    _.replace(array, updated, (e) => e.id === updated.id);
    assert.deepEqual(array, [{ id: 1, color: "green" }, { id: 2, color: "blue" }]);
  });

  test("_.field makes replace searches a bit shorter", () => {
    const array = [{ id: 1, color: "red" }, { id: 2, color: "blue" }];
    const updated = { id: 1, color: "green" };
    _.replace(array, updated, _.field("id", updated));
    assert.deepEqual(array, [{ id: 1, color: "green" }, { id: 2, color: "blue" }]);
  });

  test("_.replaceOnField makes replace searches even shorter", () => {
    const array = [{ id: 1, color: "red" }, { id: 2, color: "blue" }];
    const old = array[0];
    assert.equal(_.replaceOnField("id", array, { id: 1, color: "green" }), old);
    assert.deepEqual(array, [{ id: 1, color: "green" }, { id: 2, color: "blue" }]);
  });

  test("_.removeOnField removes objects matching a needle in a certain field", () => {
    const array = [{ id: 1, color: "red" }, { id: 2, color: "blue" }];
    _.removeOnField("id", array, { id: 1 });
    assert.deepEqual(array, [{ id: 2, color: "blue" }]);
  });

  test("+ the other helpers 0.1's code used", () => {
    assert.deepEqual(_.defaults({ a: 1 }, { a: 2, b: 3 }), { a: 1, b: 3 });
    assert.deepEqual(_.map([1, 2], (x) => x * 2), [2, 4]);
    assert.equal(_.find([1, 2, 3], (x) => x > 1), 2);
    assert.equal(_.findIndex([1, 2, 3], (x) => x > 5), undefined);
    assert.equal(_.in([1, 2], 2), true);
    assert.equal(_.in({ k: 1 }, "k"), true);
    assert.equal(_.isEqualRight({ a: 1, b: 2 }, { a: 1 }), true);
    assert.equal(_.isEqualRight({ a: 1 }, { a: 2 }), false);
    const bad = [];
    _.subset({ position: 1, owner: 2 }, ["position"], (key) => bad.push(key));
    assert.deepEqual(bad, ["owner"]);
  });
});

describe("Snorky.Signal (js-signals, 0.1's event library)", () => {
  test("add returns a binding; the same listener and context are added once; has/remove", () => {
    const s = new Snorky.Signal();
    const seen = [];
    const ctx = { tag: "c" };
    function l(x) { seen.push([this && this.tag, x]); }
    const binding = s.add(l, ctx);
    assert.equal(s.add(l, ctx), binding);
    assert.equal(binding.getListener(), l);
    assert.equal(binding.getSignal(), s);
    assert.equal(binding.context, ctx);
    s.add(l);  // another context: another binding
    assert.equal(s.getNumListeners(), 2);
    assert.equal(s.has(l, ctx), true);
    s.dispatch(1);
    assert.deepEqual(seen, [["c", 1], [undefined, 1]]);
    assert.equal(s.remove(l, ctx), l);
    assert.equal(s.has(l, ctx), false);
    assert.equal(s.getNumListeners(), 1);
  });

  test("priorities, a listener returning false, halt(), active, memorize, detached dispatch", () => {
    const s = new Snorky.Signal();
    const order = [];
    s.add(() => order.push("low"), null, -1);
    s.add(() => order.push("first"));
    s.add(() => order.push("high"), null, 5);
    s.add(() => order.push("second"));
    s.dispatch();
    assert.deepEqual(order, ["high", "first", "second", "low"]);
    const stop = new Snorky.Signal();
    const got = [];
    stop.add(() => { got.push(1); return false; });
    stop.add(() => got.push(2));
    const dispatch = stop.dispatch;  // bound to its signal
    dispatch();
    const halting = new Snorky.Signal();
    halting.add(() => { got.push(3); halting.halt(); });
    halting.add(() => got.push(4));
    halting.dispatch();
    halting.active = false;
    halting.dispatch();
    assert.deepEqual(got, [1, 3]);
    const mem = new Snorky.Signal();
    mem.memorize = true;
    mem.dispatch("x");
    const late = [];
    mem.add((v) => late.push(v));
    assert.deepEqual(late, ["x"]);
    mem.forget();
    mem.addOnce((v) => late.push("again " + v));
    assert.deepEqual(late, ["x"]);
  });

  test("addOnce, binding.detach, params, removeAll, dispose, toString", () => {
    const s = new Snorky.Signal();
    const got = [];
    s.addOnce((v) => got.push("once " + v));
    const b = s.add((...args) => got.push(args.join(",")));
    b.params = ["p"];
    s.dispatch(1);
    s.dispatch(2);
    assert.deepEqual(got, ["once 1", "p,1", "p,2"]);
    b.detach();
    assert.equal(s.getNumListeners(), 0);
    s.add(() => {}); s.add(() => {});
    s.removeAll();
    assert.equal(s.getNumListeners(), 0);
    assert.equal(String(s), "[Signal active:true numListeners:0]");
    s.dispose();
    assert.throws(() => s.getNumListeners());
  });

  test("js-signals' error texts", () => {
    const s = new Snorky.Signal();
    assert.throws(() => s.add("nope"), { message: "listener is a required param of add() and should be a Function." });
    assert.throws(() => s.addOnce(), { message: "listener is a required param of addOnce() and should be a Function." });
    const l = () => {};
    s.add(l);
    assert.throws(() => s.addOnce(l),
      { message: "You cannot add() then addOnce() the same listener without removing the relationship first." });
    assert.equal(Snorky.Signal.Signal, Snorky.Signal);
    assert.equal(globalThis.signals.Signal, Snorky.Signal);
  });

  test("+ Snorky.Signal is replaceable as 0.1's Angular addon did; services use the replacement", async (t) => {
    const OldSignal = Snorky.Signal;
    t.after(() => { Snorky.Signal = OldSignal; });
    let digests = 0;
    Snorky.Signal = function () {
      OldSignal.apply(this, arguments);
      const oldDispatch = this.dispatch;
      this.dispatch = function () {
        const args = arguments;
        queueMicrotask(() => { digests++; oldDispatch.apply(this, args); });  // as $timeout(fn, 0)
      };
    };
    Snorky.Signal.prototype = new OldSignal();
    Snorky.Signal.prototype.constructor = Snorky.Signal;

    const pubsub = new Snorky.PubSub("pubsub", {});
    assert.ok(pubsub.messagePublished instanceof Snorky.Signal);
    assert.ok(pubsub.packetReceived instanceof Snorky.Signal);
    const got = new Promise((resolve) => pubsub.messagePublished.add(resolve));
    pubsub.packetReceived.dispatch({ type: "message", channel: "c", message: "m" });
    assert.deepEqual(await got, { type: "message", channel: "c", message: "m" });
    assert.ok(digests >= 3, "packetReceived, notificationReceived and messagePublished went through it");
  });

  test("+ Snorky.emitEvent wraps the callbacks (onMessagePublished, onConnected)", (t) => {
    const saved = Snorky.emitEvent;
    t.after(() => { Snorky.emitEvent = saved; });
    const wrapped = [];
    Snorky.emitEvent = function (callback, ...args) { wrapped.push(args); callback(...args); };
    const pubsub = new Snorky.PubSub("pubsub", {});
    const seen = [];
    pubsub.onMessagePublished = function (msg) { seen.push([this === pubsub, msg.message]); };
    pubsub.packetReceived.dispatch({ type: "message", channel: "c", message: "m" });
    assert.deepEqual(seen, [[true, "m"]]);
    assert.deepEqual(wrapped, [[{ type: "message", channel: "c", message: "m" }]]);
  });
});

describe("+ module forms (0.1 was a plain script defining the global Snorky)", () => {
  test("CommonJS, the global and the ES module are one Snorky", async () => {
    assert.equal(globalThis.Snorky, Snorky);
    const mod = await import("../../snorky_sync/static/snorky.mjs");
    assert.equal(mod.default, Snorky);
    assert.equal(mod.Snorky, Snorky);
  });
});
