// Units of snorky.js that need no server: signals, stable keys, backoff,
// generated RPC methods, delta processing on collections.
import assert from "node:assert/strict";
import { Snorky, test } from "./helpers.mjs";

test("Signal: add with context, addOnce, remove, a throwing listener does not stop others", () => {
  const s = new Snorky.Signal();
  const seen = [];
  const ctx = { tag: "ctx" };
  function withCtx(x) { seen.push([this.tag, x]); }
  s.add(withCtx, ctx);
  s.addOnce((x) => seen.push(["once", x]));
  s.add(() => { throw new Error("boom"); });
  const origError = console.error;
  console.error = () => {};
  try {
    s.dispatch(1);
    s.remove(withCtx, ctx);
    s.dispatch(2);
  } finally {
    console.error = origError;
  }
  assert.deepEqual(seen, [["ctx", 1], ["once", 1]]);
  assert.equal(s.getNumListeners(), 1);
});

test("stableStringify compares channels by value", () => {
  assert.equal(Snorky.stableStringify({ b: 1, a: [1, { d: 2, c: 3 }] }),
    Snorky.stableStringify({ a: [1, { c: 3, d: 2 }], b: 1 }));
  assert.notEqual(Snorky.stableStringify(1), Snorky.stableStringify("1"));
});

test("addRPCMethods generates one method per command and refuses to overwrite", () => {
  class Calc extends Snorky.RPCService {}
  Calc.addRPCMethods(["add", "divide"]);
  assert.equal(typeof Calc.prototype.add, "function");
  assert.throws(() => Calc.addRPCMethods(["rpcCall"]), /already exists/);
});

test("reconnection delay grows exponentially with jitter and is capped", () => {
  class FakeSocket { constructor() {} close() {} }
  const s = new Snorky(FakeSocket, "ws://unused", {}, { reconnectDelay: 100, maxReconnectDelay: 1000 });
  const bounds = [[50, 100], [100, 200], [200, 400], [400, 800], [500, 1000], [500, 1000]];
  bounds.forEach(([lo, hi], attempt) => {
    s.reconnectAttempts = attempt;
    for (let i = 0; i < 50; i++) {
      const d = s.nextReconnectDelay();
      assert.ok(d >= lo && d <= hi, `attempt ${attempt}: ${d} not in [${lo}, ${hi}]`);
    }
  });
  s.close();
});

test("messages sent before open are queued; close() rejects them", async () => {
  class NeverOpens { constructor() {} close() {} }
  const s = new Snorky(NeverOpens, "ws://unused", { pubsub: Snorky.PubSub });
  assert.equal(s.isConnecting, true);
  assert.equal(s.isConnected, false);
  const call = s.services.pubsub.subscribe({ channel: "x" });
  assert.equal(s._queue.length, 1);
  s.close();
  await assert.rejects(call, { message: "Connection closed" });
  await assert.rejects(s.services.pubsub.publish({ channel: "x", message: 1 }), { message: "Connection closed" });
});

test("CollectionDeltaProcessor applies insert / update / delete to an ArrayCollection", () => {
  const todos = [];
  const coll = new Snorky.DataSync.ArrayCollection(todos, {
    transformItem: (d) => ({ ...d, label: d.title.toUpperCase() }),
  });
  const p = new Snorky.DataSync.CollectionDeltaProcessor({ Todo: coll });
  p.processDelta({ type: "insert", model: "Todo", data: { id: 1, title: "a" } });
  p.processDelta({ type: "insert", model: "Todo", data: { id: 2, title: "b" } });
  p.processDelta({ type: "update", model: "Todo", oldData: { id: 1, title: "a" }, newData: { id: 1, title: "c" } });
  p.processDelta({ type: "delete", model: "Todo", data: { id: 2, title: "b" } });
  assert.deepEqual(todos, [{ id: 1, title: "c", label: "C" }]);
});

test("CollectionDeltaProcessor: custom equality, SingleItemCollection, unknown model ignored", () => {
  let item = { key: "k", v: 1 };
  let removed = false;
  const single = new Snorky.DataSync.SingleItemCollection(
    () => item, (n) => { item = n; }, () => { removed = true; });
  const p = new Snorky.DataSync.CollectionDeltaProcessor(
    { Doc: single }, { itemsAreEqual: (a, b) => a.key === b.key });
  p.processDelta({ type: "update", model: "Doc", oldData: { key: "k", v: 1 }, newData: { key: "k", v: 2 } });
  assert.deepEqual(item, { key: "k", v: 2 });
  p.processDelta({ type: "update", model: "Doc", oldData: { key: "other" }, newData: { key: "other", v: 9 } });
  assert.deepEqual(item, { key: "k", v: 2 });
  p.processDelta({ type: "delete", model: "Doc", data: { key: "k" } });
  assert.equal(removed, true);
  const origError = console.error;
  console.error = () => {};
  try {
    p.processDelta({ type: "insert", model: "Nope", data: {} });
  } finally {
    console.error = origError;
  }
});
