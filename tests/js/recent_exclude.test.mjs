// PubSub subscribe({channel, recent: n}), a latest-value namespace and
// publish({channel, message, excludeSender: true}) seen from snorky.js
// (issue #25 items 5-6), against the default app with history and
// SNORKY_NAMESPACES {"price": {"recent": 1}}.
import assert from "node:assert/strict";
import { Snorky, controlApp, gather, test } from "./helpers.mjs";

const app = controlApp({ SNORKY_PUBSUB_HISTORY_SIZE: "100", SNORKY_CHAT_HISTORY_SIZE: "100",
                        SNORKY_NAMESPACES: JSON.stringify({ price: { recent: 1 } }) });

const page = async (user) => (await app.page(user, { pubsub: Snorky.PubSub })).services.pubsub;
const { publish } = app;

test("subscribe with recent: the last n before the answer, then live from the next offset", async () => {
  for (let i = 0; i < 5; i++) await publish("news", i);
  const pubsub = await page("ann");
  const got = gather(pubsub.messagePublished, (m) => [m.message, m.offset]);
  const answer = await pubsub.subscribe({ channel: "news", recent: 2 });
  assert.deepEqual([...got], [[3, 4], [4, 5]]);        // before the promise resolved
  assert.equal(answer.offset, 5);
  await publish("news", 5);
  await got.atLeast(3);
  assert.deepEqual(got[2], [5, 6]);
  await assert.rejects(pubsub.subscribe({ channel: "other", recent: 1000 }), /Recent too large/);
});

test("a latest-value namespace: a subscribe gets the channel's last message", async () => {
  await publish("price:eur", 1.1);
  await publish("price:eur", 1.2);
  const pubsub = await page("bob");
  const got = gather(pubsub.messagePublished, (m) => m.message);
  await pubsub.subscribe({ channel: "price:eur" });
  assert.deepEqual([...got], [1.2]);
});

test("publish with excludeSender: not to this connection, and its position moves past it", async () => {
  const ann = await page("ann");
  const annTab = await page("ann");
  const bob = await page("bob");
  const mine = gather(ann.messagePublished, (m) => [m.message, m.offset]);
  const tab = gather(annTab.messagePublished, (m) => m.message);
  const recovered = gather(ann.recovered);
  for (const p of [ann, annTab, bob]) await p.subscribe({ channel: "room" });
  await bob.publish({ channel: "room", message: "b1" });
  await mine.atLeast(1);
  const answer = await ann.publish({ channel: "room", message: "a1", excludeSender: true });
  assert.equal(answer.offset, 2);
  assert.deepEqual(ann.positions.get("room"), { offset: 2, epoch: answer.epoch });
  await bob.publish({ channel: "room", message: "b2" });
  await ann.publish({ channel: "room", message: "a2", excludeSender: true });
  await bob.publish({ channel: "room", message: "b3" });
  await mine.atLeast(3);
  await tab.atLeast(5);
  assert.deepEqual([...mine], [["b1", 1], ["b2", 3], ["b3", 5]]);   // never its own
  assert.deepEqual([...tab], ["b1", "a1", "b2", "a2", "b3"]);      // its other tab gets them
  assert.deepEqual([...recovered], []);                             // no gap seen, nothing asked again
  assert.deepEqual(ann.positions.get("room").offset, 5);
  // without the option: 0.1's publish, answered null, its own message comes back
  assert.equal(await ann.publish({ channel: "room", message: "a3" }), null);
  await mine.atLeast(4);
  assert.deepEqual(mine[3], ["a3", 6]);
});
