// Test helpers for snorky.js under `node --test`: a real snorky_sync server
// (tests/integration/testapp.py, embedded gevent server) in a subprocess on a
// free port, and promise helpers that wait on events with a timeout.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { test as nodeTest, before, after } from "node:test";

/** Milliseconds a test may take (node:test's `test`, failing after this
 * unless the test gives its own `timeout`): a test that hangs fails under its
 * own name.  The runner's --test-timeout also times each file as a whole, and
 * a file that times out reports none of the tests it was running.  (Not
 * node's `timeout` option: under Node 20 its timer outlived a test that
 * restarted its server, holding the file's process TEST_TIMEOUT ms more.) */
export const TEST_TIMEOUT = 60000;

export function test(name, options, fn) {
  if (typeof options === "function") [options, fn] = [{}, options];
  if (options.timeout !== undefined) return nodeTest(name, options, fn);
  return nodeTest(name, options, async (t) => {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`test timed out after ${TEST_TIMEOUT} ms`)), TEST_TIMEOUT);
    });
    try {
      return await Promise.race([fn(t), expired]);
    } finally {
      clearTimeout(timer);
    }
  });
}
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const Snorky = require(path.join(ROOT, "snorky_sync/static/snorky.js"));
export const API_KEY = "test-backend-key-0123456789";

// Node 22+ (or 20 with --experimental-websocket) has a global WebSocket; older
// Nodes use the `ws` package (scripts/test.sh installs it into tests/js/).
if (typeof globalThis.WebSocket !== "function") {
  try {
    globalThis.WebSocket = require("ws").WebSocket;
  } catch {
    throw new Error("no WebSocket in this Node: use Node >= 22, Node 20 with --experimental-websocket, " +
      "or `npm install --prefix tests/js`");
  }
}

function python() {
  if (process.env.SNORKY_PYTHON) return process.env.SNORKY_PYTHON;
  const venv = path.join(ROOT, ".venv/bin/python");
  return existsSync(venv) ? venv : "python3";
}

/** One HTTP request on a connection of its own, failing after `ms` (a server
 * that never answers fails the test, named).  Resolves {ok, status, text(),
 * json()} once the whole body is in.  Not fetch: under Node 20 a fetch to a
 * server that had just restarted on the same port (a pooled connection to
 * the old process) now and then never settled, past its AbortSignal too,
 * and the test hung until the runner killed its file; AbortSignal.timeout
 * also kept the file's process alive for its whole delay. */
export function request(url, { method = "GET", headers = {}, body } = {}, ms = 15000) {
  return new Promise((resolve, reject) => {
    let timer;
    const fail = (err) => { clearTimeout(timer); reject(err); };
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("error", fail);
      res.on("end", () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString();
        resolve({ ok: res.statusCode >= 200 && res.statusCode < 300, status: res.statusCode,
                  text: async () => text, json: async () => JSON.parse(text) });
      });
    });
    timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`${method} ${url}: no answer within ${ms} ms`));
    }, ms);
    req.on("error", fail);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** A snorky_sync test server; `restart()` stops it and starts a new process on the same port. */
export class TestServer {
  /** `module`: the Python module whose `app` is served (default: the integration test app). */
  static async start(port, { module = "tests.integration.testapp", env = {} } = {}) {
    const s = new TestServer(port ?? await freePort(), module, env);
    await s._spawn();
    return s;
  }

  constructor(port, module = "tests.integration.testapp", env = {}) {
    this.port = port;
    this.module = module;
    this.env = env;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}`;
    this.log = "";
  }

  async _spawn() {
    // PR_SET_PDEATHSIG (Linux): the server ends with this node process, even
    // when the runner kills a file that timed out before its after() hook ran
    const code = "import ctypes, signal, sys; sys.path.insert(0, '.');" +
      "ctypes.CDLL(None).prctl(1, signal.SIGTERM);" +
      `from snorky_sync import serve; import ${this.module} as m;` +
      `serve(m.app, '127.0.0.1', ${this.port})`;
    this.proc = spawn(python(), ["-c", code], {
      cwd: ROOT,
      env: { ...process.env, SNORKY_API_KEY: API_KEY, SNORKY_SHUTDOWN_TIMEOUT: "1", PYTHONUNBUFFERED: "1",
             ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (chunk) => { this.log = (this.log + chunk).slice(-20000); };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    this.exited = new Promise((resolve) => this.proc.on("exit", resolve));
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`server exited early:\n${this.log}`);
      try {
        if ((await request(this.url + "/healthz", {}, 5000)).ok) return;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 50)); // polling the port to open
    }
    throw new Error(`server not ready:\n${this.log}`);
  }

  async stop() {
    if (this.proc.exitCode === null) {
      this.proc.kill("SIGTERM");
      const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
      await this.exited;
      clearTimeout(timer);
    }
  }

  async restart() {
    await this.stop();
    await this._spawn();
  }

  /** An identity token for /ws-token (the test app signs it). */
  async token(user) {
    const r = await request(`${this.url}/token/${encodeURIComponent(user)}`);
    if (!r.ok) throw new Error(`token: HTTP ${r.status}`);
    return r.text();
  }

  /** One backend call (protocol.md §4); returns the reply's `message`. */
  async backend(service, message) {
    const r = await request(this.url + "/backend", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Backend-Key": API_KEY },
      body: JSON.stringify({ service, message }),
    });
    if (!r.ok) throw new Error(`backend: HTTP ${r.status}`);
    return (await r.json()).message;
  }
}

/** The server of tests/js/control_app.py (the default app's services and
 * `control` in its backend) for one test file: started before its tests,
 * stopped after them, with `env` added to its environment.
 * `page(identity, services)`: a page connected with that identity's token
 * (closed after the tests, even failed ones: no reconnect timers left);
 * `control(command, params)`: the data of a backend control call, which must
 * be a response; `publish(channel, message)`: a backend PubSub publish. */
export function controlApp(env = {}) {
  const app = { server: null, open: [] };
  before(async () => {
    app.server = await TestServer.start(undefined, { module: "tests.js.control_app",
      env: { SNORKY_TOKEN_SECRET: "js-control-app-secret-0123456789abcdef", ...env } });
  });
  after(async () => {
    app.open.forEach((s) => s.close());
    await app.server?.stop();
  });
  app.page = async (identity, services) => {
    const s = await connect(app.server.wsUrl + "/ws?token=" + await app.server.token(identity), services);
    app.open.push(s);
    return s;
  };
  app.control = async (command, params) => {
    const answer = await app.server.backend("control", { command, params, callId: 1 });
    assert.equal(answer.type, "response", JSON.stringify(answer));
    return answer.data;
  };
  app.publish = (channel, message) =>
    app.server.backend("pubsub_backend", { command: "publish", params: { channel, message }, callId: 1 });
  return app;
}

/** Resolves with the arguments of the next dispatch of `signal` (first one if single). */
export function next(signal, { timeout = 10000, filter = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.remove(listener);
      reject(new Error("timed out waiting for a signal"));
    }, timeout);
    function listener(...args) {
      if (!filter(...args)) return;
      clearTimeout(timer);
      signal.remove(listener);
      resolve(args.length === 1 ? args[0] : args);
    }
    signal.add(listener);
  });
}

/** Collects every dispatch of `signal` into an array. */
export function collect(signal) {
  const seen = [];
  signal.add((...args) => seen.push(args.length === 1 ? args[0] : args));
  return seen;
}

/** Every dispatch of `signal`, mapped (default: the single argument, or the
 * argument list); `.atLeast(n)` resolves once n have come, fails after `timeout`. */
export function gather(signal, map = (...args) => (args.length === 1 ? args[0] : args)) {
  const seen = [];
  let waiting = [];
  signal.add((...args) => {
    seen.push(map(...args));
    waiting = waiting.filter(([n, resolve]) => (seen.length >= n ? (resolve(), false) : true));
  });
  seen.atLeast = (n, timeout = 10000) => (seen.length >= n ? Promise.resolve()
    : within(new Promise((resolve) => waiting.push([n, resolve])), timeout, `only ${seen.length} of ${n}`));
  return seen;
}

/** A connected client; resolves once open. */
export async function connect(url, services, options = {}) {
  const s = new Snorky(WebSocket, url, services, { reconnectDelay: 100, maxReconnectDelay: 500, ...options });
  await next(s.connected);
  return s;
}

/** Fails with `message` if `promise` does not settle within `timeout` ms. */
export function within(promise, timeout = 10000, message = "timed out") {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(message)), timeout); }),
  ]);
}

/** A Promises/A+-style deferred library without catch/finally, like the
 * Angular $q that 0.1's Angular addon put in Snorky.Promise. */
export function makeQ() {
  const created = [];
  function QPromise() { this._state = 0; this._value = undefined; this._handlers = []; created.push(this); }
  QPromise.prototype.then = function (onOk, onErr) {
    const d = defer();
    this._handlers.push({ onOk, onErr, d });
    if (this._state) this._flush();
    return d.promise;
  };
  QPromise.prototype._settle = function (state, value) {
    if (this._state) return;
    if (state === 1 && value && typeof value.then === "function") {
      value.then((v) => this._settle(1, v), (e) => this._settle(2, e));
      return;
    }
    this._state = state;
    this._value = value;
    this._flush();
  };
  QPromise.prototype._flush = function () {
    const handlers = this._handlers;
    this._handlers = [];
    queueMicrotask(() => handlers.forEach(({ onOk, onErr, d }) => {
      const fn = this._state === 1 ? onOk : onErr;
      if (typeof fn !== "function") {
        (this._state === 1 ? d.resolve : d.reject)(this._value);
        return;
      }
      try { d.resolve(fn(this._value)); } catch (err) { d.reject(err); }
    }));
  };
  function defer() {
    const promise = new QPromise();
    return { promise, resolve: (v) => promise._settle(1, v), reject: (e) => promise._settle(2, e) };
  }
  // angular-snorky.js's adapter, in the same shape
  function PromiseQAdapter(callback) {
    const q = defer();
    callback((value) => q.resolve(value), (reason) => q.reject(reason));
    return q.promise;
  }
  return { PromiseQAdapter, QPromise, created };
}
