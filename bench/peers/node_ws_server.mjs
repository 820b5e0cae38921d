// Node.js on the npm `ws` package, for the benchmark: the subset of the Snorky
// protocol (docs/protocol.md) that bench/loadgen.c drives.
//
//     node bench/peers/node_ws_server.mjs PORT NPM_PREFIX
//
// NPM_PREFIX is where bench/peer_env.py installed `ws` (bench/.peers-node).
// One process, one thread: the "one core" comparison.  Only 127.0.0.1.
//
//   * Envelope {"service", "message"} at /ws; a text or binary frame of JSON.
//     Invalid JSON, a non-object, a missing key or an unknown service: nothing
//     is sent back (no log either).  permessage-deflate off, 10 MiB frames.
//   * RPC as in protocol.md §2: {"command", "params", "callId"}; callId echoed
//     (no callId key when absent or null), "Unknown command", "Invalid params"
//     (params not an object, a missing or an unexpected name).
//   * "pubsub": subscribe / unsubscribe / publish (§3).  A notification is
//     encoded once and the same Buffer is sent to every subscriber, the
//     publisher included if subscribed, before the publisher's reply.
//   * "cursors": join / leave / createCursor / updateCursor / removeCursor
//     (§3, like snorky_sync's CursorsService: public handles unique within a
//     document, 16 cursors per connection, notifications encoded once and sent
//     to every other connection of the document, never to the owner).
//   * Identity: the `token` query parameter taken verbatim as the identity
//     (no signature: the bench hands out one per client), none without it.
//   * A ping every 90 s; a connection that did not answer the last one is
//     dropped.
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const [port, prefix] = [Number(process.argv[2]), process.argv[3]];
const require = createRequire(join(resolve(prefix), "package.json"));
const { WebSocketServer } = require("ws");

class RPCError extends Error {}

// channels, documents and private handles are JSON values compared by value
function canonical(v) {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}
const keyOf = (v) => (typeof v === "string" ? "s" + v : "j" + canonical(v));

const frame = (service, message) => Buffer.from(JSON.stringify({ service, message }));
function sendFrame(conn, buf) {
  conn.ws.send(buf, { binary: false });
}
function broadcast(conns, service, message) {
  let buf = null;
  for (const conn of conns) {
    buf ??= frame(service, message);
    sendFrame(conn, buf);
  }
}

// ---- PubSub ----------------------------------------------------------------
const channels = new Map(); // channel key -> Set<conn>
const pubsub = {
  subscribe(conn, { channel }) {
    const key = keyOf(channel);
    if (conn.subs.has(key)) throw new RPCError("Already subscribed");
    conn.subs.add(key);
    let set = channels.get(key);
    if (!set) channels.set(key, (set = new Set()));
    set.add(conn);
    return null;
  },
  unsubscribe(conn, { channel }) {
    const key = keyOf(channel);
    if (!conn.subs.delete(key)) throw new RPCError("Not subscribed");
    drop(key, conn);
    return null;
  },
  publish(conn, { channel, message }) {
    const set = channels.get(keyOf(channel));
    if (set) broadcast(set, "pubsub", { type: "message", channel, message });
    return null;
  },
};
const pubsubParams = { subscribe: ["channel"], unsubscribe: ["channel"], publish: ["channel", "message"] };
function drop(key, conn) {
  const set = channels.get(key);
  if (set && set.delete(conn) && set.size === 0) channels.delete(key);
}

// ---- Cursors -----------------------------------------------------------------
const MAX_CURSORS = 16;
const documents = new Map(); // doc key -> {clients: Set<conn>, cursors: Map<handle, cursor>}
function others(doc, conn) {
  const out = [];
  for (const c of doc.clients) if (c !== conn) out.push(c);
  return out;
}
function owned(conn, privateHandle) {
  const found = conn.cursors.get(keyOf(privateHandle));
  if (!found) throw new RPCError("No such cursor");
  return found;
}
function removeCursor(conn, pkey, { dkey, handle }) {
  conn.cursors.delete(pkey);
  const doc = documents.get(dkey);
  const cursor = doc.cursors.get(handle);
  doc.cursors.delete(handle);
  broadcast(others(doc, conn), "cursors",
    { type: "cursorRemoved", cursor: { publicHandle: handle, document: cursor.document } });
}
function leave(conn, dkey) {
  for (const [pkey, where] of [...conn.cursors]) if (where.dkey === dkey) removeCursor(conn, pkey, where);
  conn.docs.delete(dkey);
  const doc = documents.get(dkey);
  doc.clients.delete(conn);
  if (doc.clients.size === 0) documents.delete(dkey);
}
const cursors = {
  join(conn, { document }) {
    if (conn.identity === null) throw new RPCError("Not authenticated");
    const dkey = keyOf(document);
    if (conn.docs.has(dkey)) throw new RPCError("Already joined");
    let doc = documents.get(dkey);
    if (!doc) documents.set(dkey, (doc = { clients: new Set(), cursors: new Map() }));
    doc.clients.add(conn);
    conn.docs.set(dkey, document);
    return { cursors: [...doc.cursors.values()] };
  },
  leave(conn, { document }) {
    const dkey = keyOf(document);
    if (!conn.docs.has(dkey)) throw new RPCError("Not joined");
    leave(conn, dkey);
    return null;
  },
  createCursor(conn, { privateHandle, document, position, status }) {
    const dkey = keyOf(document);
    if (!conn.docs.has(dkey)) throw new RPCError("Not joined");
    const pkey = keyOf(privateHandle);
    if (conn.cursors.has(pkey)) throw new RPCError("Reused handle");
    if (conn.cursors.size >= MAX_CURSORS) throw new RPCError("Too many cursors");
    const doc = documents.get(dkey);
    if (doc.cursors.size >= 65536) throw new RPCError("Too many cursors");
    let handle;
    do handle = Math.floor(Math.random() * 65536); while (doc.cursors.has(handle));
    const cursor = { publicHandle: handle, document: conn.docs.get(dkey), position, status, owner: conn.identity };
    doc.cursors.set(handle, cursor);
    conn.cursors.set(pkey, { dkey, handle });
    broadcast(others(doc, conn), "cursors", { type: "cursorAdded", cursor });
    return handle;
  },
  updateCursor(conn, { privateHandle, newData }) {
    const { dkey, handle } = owned(conn, privateHandle);
    if (newData === null || typeof newData !== "object" || Array.isArray(newData)) {
      throw new RPCError("Invalid params");
    }
    const doc = documents.get(dkey);
    const cursor = doc.cursors.get(handle);
    if ("position" in newData) cursor.position = newData.position;
    if ("status" in newData) cursor.status = newData.status;
    broadcast(others(doc, conn), "cursors", { type: "cursorUpdated", cursor });
    return null;
  },
  removeCursor(conn, { privateHandle }) {
    const pkey = keyOf(privateHandle);
    removeCursor(conn, pkey, owned(conn, privateHandle));
    return null;
  },
};
const cursorsParams = {
  join: ["document"], leave: ["document"], createCursor: ["privateHandle", "document", "position", "status"],
  updateCursor: ["privateHandle", "newData"], removeCursor: ["privateHandle"],
};

// ---- registry and RPC ----------------------------------------------------------
const services = {
  pubsub: { commands: pubsub, params: pubsubParams },
  cursors: { commands: cursors, params: cursorsParams },
};
const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

function binds(params, names) {
  if (params === null || typeof params !== "object" || Array.isArray(params)) return false;
  const keys = Object.keys(params);
  return keys.length === names.length && names.every((n) => own(params, n));
}

function onMessage(conn, data) {
  let env;
  try {
    env = JSON.parse(data.toString());
  } catch {
    return;
  }
  if (env === null || typeof env !== "object" || Array.isArray(env) || !own(env, "service") || !own(env, "message")) return;
  const service = typeof env.service === "string" && own(services, env.service) ? services[env.service] : null;
  const msg = env.message;
  if (!service || msg === null || typeof msg !== "object" || !own(msg, "command") || !own(msg, "params")) return;
  const callId = own(msg, "callId") ? msg.callId : null;
  let reply;
  try {
    const { command, params } = msg;
    if (typeof command !== "string" || !own(service.params, command)) throw new RPCError("Unknown command");
    if (!binds(params, service.params[command])) throw new RPCError("Invalid params");
    const data = service.commands[command](conn, params);
    reply = callId === null ? { type: "response", data } : { type: "response", callId, data };
  } catch (exc) {
    const text = exc instanceof RPCError ? exc.message || "Exception" : "Internal error";
    if (!(exc instanceof RPCError)) console.error(exc);
    reply = { type: "error", callId, message: text };
  }
  sendFrame(conn, frame(env.service, reply));
}

function onClose(conn) {
  for (const key of conn.subs) drop(key, conn);
  conn.subs.clear();
  for (const dkey of [...conn.docs.keys()]) leave(conn, dkey);
}

// ---- server ----------------------------------------------------------------------
const live = new Set();
const wss = new WebSocketServer({
  host: "127.0.0.1", port, backlog: 4096, path: "/ws", perMessageDeflate: false, clientTracking: false,
  maxPayload: 10 * 1024 * 1024,
});
wss.on("connection", (ws, req) => {
  const q = req.url.indexOf("?");
  const token = q < 0 ? null : new URLSearchParams(req.url.slice(q + 1)).get("token");
  const conn = { ws, identity: token || null, subs: new Set(), docs: new Map(), cursors: new Map(), alive: true };
  live.add(conn);
  ws.on("message", (data) => onMessage(conn, data));
  ws.on("pong", () => { conn.alive = true; });
  ws.on("error", () => {});
  ws.on("close", () => { live.delete(conn); onClose(conn); });
});
setInterval(() => {
  for (const conn of live) {
    if (!conn.alive) { conn.ws.terminate(); continue; }
    conn.alive = false;
    conn.ws.ping();
  }
}, 90_000).unref();
wss.on("listening", () => console.log(`node ws listening on 127.0.0.1:${port}`));
wss.on("error", (err) => { console.error(err); process.exit(1); });
