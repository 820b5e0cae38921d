// Continuity of history channels (issue #25 item 1, client): a live message
// whose offset does not follow the page's position, or the server's "gap"
// notification, makes snorky.js ask the channel again with `since`; the
// page gets every message once, in order, or pubsub.recovered(channel, false).
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { Snorky, TestServer, connect, freePort, gather, next, within, test } from "./helpers.mjs";

let lossy;
const open = [];
before(async () => {
  lossy = await TestServer.start(undefined, { module: "tests.js.lossy_history_app" });
});
after(async () => {
  open.forEach((s) => s.close());
  await lossy.stop();
});

async function page(server) {
  const p = await connect(server.wsUrl + "/ws", { pubsub: Snorky.PubSub });
  open.push(p);
  return p;
}

test("a jump in the offsets is filled from the history, in order, once", async () => {
  const { pubsub } = (await page(lossy)).services;
  const got = gather(pubsub.messagePublished, (m) => [m.offset, m.message]);
  const recovered = gather(pubsub.recovered);
  await pubsub.subscribe({ channel: "j" });
  await pubsub.publish({ channel: "j", message: "a" });
  await pubsub.rpcCall("lose", { channel: "j", message: "lost on its way" });
  await pubsub.publish({ channel: "j", message: "c" });      // offset 3 after 1
  await recovered.atLeast(1);
  assert.deepEqual(recovered[0], ["j", true]);
  await pubsub.publish({ channel: "j", message: "d" });
  await got.atLeast(4);
  assert.deepEqual([...got], [[1, "a"], [2, "lost on its way"], [3, "c"], [4, "d"]]);
});

test("a jump the history no longer covers is reported: recovered false, then live again", async () => {
  const { pubsub } = (await page(lossy)).services;
  const got = gather(pubsub.messagePublished, (m) => m.message);
  const told = next(pubsub.recovered);
  await pubsub.subscribe({ channel: "e" });
  await pubsub.publish({ channel: "e", message: "first" });
  await got.atLeast(1);
  await pubsub.rpcCall("renew", { channel: "e" });           // the channel's history is lost
  await pubsub.rpcCall("lose", { channel: "e", message: "gone" });
  await pubsub.publish({ channel: "e", message: "third" });  // offset 2 of another epoch
  assert.deepEqual(await within(told), ["e", false]);
  await pubsub.publish({ channel: "e", message: "fourth" });
  await got.atLeast(2);
  assert.deepEqual([...got], ["first", "fourth"]);
});

test("a new epoch from its first message is accepted as it is", async () => {
  const { pubsub } = (await page(lossy)).services;
  const got = gather(pubsub.messagePublished, (m) => m.message);
  const recovered = gather(pubsub.recovered);
  await pubsub.subscribe({ channel: "n" });
  await pubsub.publish({ channel: "n", message: 1 });
  await pubsub.rpcCall("renew", { channel: "n" });           // idle longer than history_ttl, say
  await pubsub.publish({ channel: "n", message: 2 });
  await got.atLeast(2);
  assert.deepEqual([...got], [1, 2]);
  assert.deepEqual([...recovered], []);
});

function redisServer(port) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], { stdio: "ignore" });
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  const ready = (async () => {
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const up = await new Promise((resolve) => {
        const s = net.connect(port, "127.0.0.1", () => { s.end(); resolve(true); });
        s.on("error", () => resolve(false));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 50));  // polling the port to open
    }
    throw new Error("redis-server did not start");
  })();
  return { proc, exited, ready };
}

test("a Redis restart: the server's gap notification, then recovered false", async () => {
  const port = await freePort();
  let redis = redisServer(port);
  await redis.ready;
  const server = await TestServer.start(undefined, { module: "tests.js.redis_testapp", env: {
    SNORKY_REDIS_URL: `redis://127.0.0.1:${port}/0`, SNORKY_PUBSUB_HISTORY_SIZE: "100" } });
  try {
    const { pubsub } = (await page(server)).services;
    const got = gather(pubsub.messagePublished, (m) => m.message);
    await pubsub.subscribe({ channel: "r" });
    await pubsub.publish({ channel: "r", message: "before" });
    await got.atLeast(1);
    const told = next(pubsub.recovered, { timeout: 30000 });
    redis.proc.kill("SIGKILL");                              // everything in Redis is lost
    await redis.exited;
    redis = redisServer(port);
    await redis.ready;
    assert.deepEqual(await told, ["r", false]);              // the page stayed connected
    await pubsub.publish({ channel: "r", message: "after" });
    await got.atLeast(2);
    assert.deepEqual([...got], ["before", "after"]);
  } finally {
    await server.stop();
    redis.proc.kill("SIGKILL");
  }
});
