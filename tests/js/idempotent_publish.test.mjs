// publish({channel, message, idempotencyKey}) and Chat send({..., idempotencyKey})
// from snorky.js (issue #25 item 2): a page that retries with the same
// options object (after "Connection lost", a timeout) is delivered once and
// answered as the first time, also on a new connection.  Against the default
// app with history.
import assert from "node:assert/strict";
import { Snorky, controlApp, gather, test } from "./helpers.mjs";

const app = controlApp({ SNORKY_PUBSUB_HISTORY_SIZE: "100" });

const page = async (user) => (await app.page(user, { pubsub: Snorky.PubSub, chat: Snorky.Chat })).services;

test("a publish retried with the same idempotencyKey is delivered once, answered the same", async () => {
  const ann = await page("ann");
  const bob = await page("bob");
  const got = gather(bob.pubsub.messagePublished, (m) => [m.message, m.offset]);
  await ann.pubsub.subscribe({ channel: "orders" });
  await bob.pubsub.subscribe({ channel: "orders" });
  const options = { channel: "orders", message: { id: 7 }, excludeSender: true,
                    idempotencyKey: "order-7-" + Date.now() };
  const first = await ann.pubsub.publish(options);
  assert.deepEqual(await ann.pubsub.publish(options), first);
  const annAgain = await page("ann");                  // the same page after a reconnection
  await annAgain.pubsub.subscribe({ channel: "orders" });
  assert.deepEqual(await annAgain.pubsub.publish(options), first);
  await ann.pubsub.publish({ channel: "orders", message: "marker" });
  await got.atLeast(2);
  assert.deepEqual([...got], [[{ id: 7 }, first.offset], ["marker", first.offset + 1]]);
  await assert.rejects(ann.pubsub.publish({ channel: "orders", message: 1, idempotencyKey: "k".repeat(257) }),
                       /Idempotency key too long/);
});

test("a Chat send retried with the same idempotencyKey is delivered once", async () => {
  const ann = await page("ann");
  const bob = await page("bob");
  const got = gather(bob.chat.messageReceived, (m) => m.body);
  await ann.chat.join({ channel: "room" });
  await bob.chat.join({ channel: "room" });
  const options = { channel: "room", body: "hello", idempotencyKey: "msg-" + Date.now() };
  await ann.chat.send(options);
  await ann.chat.send(options);
  await ann.chat.send({ channel: "room", body: "marker" });
  await got.atLeast(2);
  assert.deepEqual([...got], ["hello", "marker"]);
});
