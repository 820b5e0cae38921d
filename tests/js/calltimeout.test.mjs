// snorky.js's call timeout (issue #22 item 6) against a real server
// (tests/integration/testapp.py): a call to a service the server does not
// have is never answered (Snorky 0.1's protocol).  Off by default, as 0.1
// pages expect; with `callTimeout` the call rejects with an Error naming the
// service and command; in debug mode a console warning says so.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, connect, within, test } from "./helpers.mjs";

let server;
const open = [];

before(async () => { server = await TestServer.start(); });
after(async () => {
  open.forEach((s) => s.close());
  await server.stop();
});

class Calc extends Snorky.RPCService {}
Calc.addRPCMethods(["add", "slowSquare"]);
class Missing extends Snorky.RPCService {}  // no such service on the server
Missing.addRPCMethods(["hello"]);

async function client(options) {
  const s = await connect(server.wsUrl + "/ws", { calc: Calc, missing: Missing }, options);
  open.push(s);
  return s;
}

/** Runs `fn` with console.warn / console.error recorded. */
async function recordingConsole(fn) {
  const seen = { warn: [], error: [] };
  const saved = { warn: console.warn, error: console.error };
  console.warn = (...args) => seen.warn.push(args.join(" "));
  console.error = (...args) => seen.error.push(args.join(" "));
  try {
    await fn(seen);
  } finally {
    Object.assign(console, saved);
  }
  return seen;
}

test("off by default: a call to an unknown service stays pending, as in 0.1", async () => {
  const s = await client();
  assert.equal(s.options.callTimeout, 0);
  assert.equal(s.services.missing.getCallTimeout(), 0);
  let settled = false;
  const call = s.services.missing.hello({});
  call.then(() => { settled = true; }, () => { settled = true; });
  // the server's answer to a later call on the same connection has come: the
  // unknown service's call got nothing, and is still waiting
  assert.equal(await s.services.calc.add({ a: 1, b: 2 }), 3);
  await assert.rejects(within(call, 500, "still pending"), { message: "still pending" });
  assert.equal(settled, false);
  assert.equal(Object.keys(s.services.missing.calls).length, 1);
  s.close();
  await assert.rejects(call, { message: "Connection closed" });
});

test("callTimeout rejects with an Error naming the service and command", async () => {
  const s = await client({ callTimeout: 300 });
  const started = Date.now();
  const err = await within(s.services.missing.hello({ who: "me" }).then(
    () => assert.fail("resolved"), (e) => e), 5000);
  const waited = Date.now() - started;
  assert.ok(err instanceof Error);
  assert.equal(err.message, 'Snorky: no answer from service "missing" to "hello" within 300 ms');
  assert.deepEqual([err.service, err.command, err.timeout], ["missing", "hello", true]);
  assert.ok(waited >= 290 && waited < 3000, `rejected after ${waited} ms`);
  assert.deepEqual(Object.keys(s.services.missing.calls), []);
  // answered calls are not affected
  assert.equal(await s.services.calc.add({ a: 2, b: 2 }), 4);
});

test("a service's own callTimeout wins over the option (0: no limit for it)", async () => {
  const s = await client({ callTimeout: 200 });
  s.services.calc.callTimeout = 0;
  assert.equal(await s.services.calc.slowSquare({ x: 3, delay: 0.5 }), 9);  // longer than 200 ms
  s.services.calc.callTimeout = 100;
  s.services.missing.callTimeout = 0;
  await assert.rejects(s.services.calc.slowSquare({ x: 4, delay: 1 }),
                       { message: 'Snorky: no answer from service "calc" to "slowSquare" within 100 ms' });
  assert.equal(s.services.missing.getCallTimeout(), 0);
});

test("the late answer to a timed-out call is dropped quietly; the service carries on", async () => {
  const s = await client({ callTimeout: 150 });
  const seen = await recordingConsole(async () => {
    await assert.rejects(s.services.calc.slowSquare({ x: 5, delay: 0.4 }), { timeout: true });
    assert.equal(await within(s.services.calc.slowSquare({ x: 6, delay: 0 })), 36);
    // the late answer (due 0.4 s after its call) comes on this connection before this one's
    s.services.calc.callTimeout = 0;
    assert.equal(await s.services.calc.slowSquare({ x: 7, delay: 0.5 }), 49);
  });
  assert.deepEqual(seen.error, []);
});

test("a call queued while offline is timed from when it is sent, not before", async () => {
  // the address comes 600 ms late: the call waits in the queue meanwhile
  const address = () => new Promise((resolve) => setTimeout(() => resolve(server.wsUrl + "/ws"), 600));
  const s = new Snorky(WebSocket, address, { missing: Missing }, { callTimeout: 400 });
  open.push(s);
  const started = Date.now();
  const err = await within(s.services.missing.hello({}).then(() => assert.fail("resolved"), (e) => e), 5000);
  const waited = Date.now() - started;
  assert.equal(err.timeout, true);
  assert.equal(s.isConnected, true);  // it was sent, then timed out
  assert.ok(waited >= 950, `rejected after ${waited} ms: counted from the call, not from the send`);
});

test("debug mode warns on the console when a call gets no answer", async () => {
  const s = await client({ debug: true, callTimeout: 200 });
  s.logDebug = () => {};  // only the warnings here
  const seen = await recordingConsole(async () => {
    await assert.rejects(s.services.missing.hello({}), { timeout: true });
  });
  assert.equal(seen.warn.length, 1, seen.warn.join("\n"));
  assert.match(seen.warn[0], /no answer from service "missing" to "hello" within 200 ms/);
  assert.match(seen.warn[0], /is "missing" registered on the server\?/);
});
