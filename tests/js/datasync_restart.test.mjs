// DataSync across a server restart: the new process numbers its deltas from 1
// in a new epoch; snorky.js must apply every one of them (issue #22 item 8).
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, connect, gather, next, test } from "./helpers.mjs";

let server;
const open = [];
before(async () => {
  server = await TestServer.start(undefined, { env: { SNORKY_DATASYNC_RESUME_WINDOW: "60" } });
});
after(async () => {
  open.forEach((s) => s.close());
  await server.stop();
});

const authorize = async () => (await server.backend("datasync_backend", {
  command: "authorizeSubscription", params: { items: [{ dealer: "allTodos", query: null }] }, callId: 1 })).data;
const insert = (title) => server.backend("datasync_backend", { command: "publishDeltas", callId: 2,
  params: { deltas: [{ type: "insert", model: "Todo", data: { id: title, title, list: "x" } }] } });

test("after a server restart every delta of the new process is applied", async () => {
  const page = await connect(server.wsUrl + "/ws", { datasync: Snorky.DataSync });
  open.push(page);
  const { datasync } = page.services;
  const titles = gather(datasync.deltaReceived, (d) => d.data.title);
  await datasync.acquireSubscription({ token: await authorize() });
  for (const t of ["a", "b", "c", "d", "e"]) await insert(t);
  await titles.atLeast(5);
  const oldEpoch = datasync.epoch;
  assert.equal(typeof oldEpoch, "string");
  assert.ok(datasync.lastSeq >= 5);

  const lost = next(datasync.subscriptionsLost, { timeout: 30000 });
  await server.restart();
  assert.equal((await lost).length, 1);          // the old process's token is gone with it
  assert.equal(datasync.lastSeq, null);          // its position too
  assert.notEqual(datasync.epoch, oldEpoch);     // the answer named the new process's epoch
  // as a page does on subscriptionsLost: fetch again, acquire the new token
  await datasync.acquireSubscription({ token: await authorize() });
  for (const t of ["f", "g", "h"]) await insert(t);  // seq 1, 2, 3 of the new process
  await titles.atLeast(8);
  assert.deepEqual([...titles], ["a", "b", "c", "d", "e", "f", "g", "h"]);
  assert.equal(datasync.lastSeq, 3);

  // and a drop now resumes in the new epoch, with what it missed
  const resumed = next(datasync.recovered, { timeout: 20000 });
  page._socket.close();
  await insert("i");
  await resumed;
  await insert("j");
  await titles.atLeast(10);
  assert.deepEqual(titles.slice(8), ["i", "j"]);
});

/** A DataSync service on a connection that never opens: messages fed by hand. */
function offline() {
  class FakeSocket { constructor() {} close() {} }
  const s = new Snorky(FakeSocket, "ws://unused", { datasync: Snorky.DataSync }, { reconnectDelay: 100000 });
  open.push(s);
  const { datasync } = s.services;
  const applied = [];
  datasync.deltaReceived.add((d) => applied.push(d.data.id));
  const delta = (id, seq, epoch) => datasync.onNotification(
    { type: "delta", delta: { type: "insert", model: "Todo", data: { id } }, seq, ...(epoch ? { epoch } : {}) });
  return { datasync, applied, delta };
}

test("deltas of another epoch start a new seq; repeats within an epoch are dropped", () => {
  const { datasync, applied, delta } = offline();
  delta(1, 1, "A");
  delta(2, 2, "A");
  delta(2, 2, "A");           // sent again (a resumption racing a live delta): once
  delta(3, 1, "B");           // a new process: seq 1 again, applied
  delta(4, 2, "B");
  delta(4, 2, "B");
  assert.deepEqual(applied, [1, 2, 3, 4]);
  assert.deepEqual([datasync.epoch, datasync.lastSeq], ["B", 2]);
});

test("a server without epochs: seq alone, as before", () => {
  const { datasync, applied, delta } = offline();
  delta(1, 1);
  delta(2, 2);
  delta(2, 2);
  assert.deepEqual(applied, [1, 2]);
  assert.deepEqual([datasync.epoch, datasync.lastSeq], [null, 2]);
});

test("restore() sends since and epoch; an answer of another epoch resets the position", async () => {
  const { datasync, applied, delta } = offline();
  const calls = [];
  let answer;
  datasync.rpcCall = (command, params) => { calls.push([command, params]); return answer(params); };
  datasync.acquired.add("t1");
  datasync.acquired.add("t2");
  delta(1, 7, "A");

  answer = () => Promise.resolve({ recovered: true, epoch: "A" });
  const recovered = [];
  datasync.recovered.add((t) => recovered.push(t));
  datasync.restore();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(calls, [["acquireSubscription", { token: "t1", since: 7, epoch: "A" }],
                           ["acquireSubscription", { token: "t2", since: 7, epoch: "A" }]]);
  assert.deepEqual(recovered, ["t1", "t2"]);
  assert.deepEqual([datasync.epoch, datasync.lastSeq], ["A", 7]);

  // the server restarted: not recovered, the answer names the new epoch
  answer = () => Promise.resolve({ recovered: false, epoch: "B" });
  const lost = next(datasync.subscriptionsLost);
  datasync.restore();
  assert.deepEqual((await lost).sort(), ["t1", "t2"]);
  assert.deepEqual([datasync.epoch, datasync.lastSeq], ["B", null]);
  assert.deepEqual(datasync.acquired.values(), []);
  delta(2, 1, "B");
  assert.deepEqual(applied, [1, 2]);
});

test("every subscription lost with an error (a server without epochs): the position starts over", async () => {
  const { datasync, applied, delta } = offline();
  datasync.rpcCall = (command, params) => (params.epoch === undefined
    ? Promise.reject(new Error("No such subscription")) : Promise.reject(new Error("unexpected epoch")));
  datasync.acquired.add("t1");
  delta(1, 9);
  const lost = next(datasync.subscriptionsLost);
  datasync.restore();
  assert.deepEqual(await lost, ["t1"]);
  assert.equal(datasync.lastSeq, null);
  delta(2, 1);                                   // the new process's first delta
  assert.deepEqual(applied, [1, 2]);
});
