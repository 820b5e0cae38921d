// Server-side subscriptions (issue #24 item 2) seen from snorky.js: the
// backend's control.subscribe makes the page's PubSub dispatch
// serverSubscribed(channel) and then the channel's messages through
// messagePublished; control.unsubscribe dispatches serverUnsubscribed(channel)
// and the page no longer restores that channel; after a reconnection the old
// connection's server subscriptions are gone.
import assert from "node:assert/strict";
import { Snorky, controlApp, next, test } from "./helpers.mjs";

const app = controlApp();

const { control, publish } = app;

test("control.subscribe/unsubscribe reach the page's signals", async () => {
  const page = await app.page("u88", { pubsub: Snorky.PubSub });
  const pubsub = page.services.pubsub;
  await pubsub.subscribe({ channel: "own-88" });

  const told = next(pubsub.serverSubscribed);
  assert.deepEqual(await control("subscribe", { identity: "u88", service: "pubsub", channel: "alerts-88" }),
                   { subscribed: 1, refused: 0, processes: 1 });
  assert.equal(await told, "alerts-88");
  assert.equal(pubsub.serverSubscriptions.has("alerts-88"), true);
  assert.equal(pubsub.subscriptions.has("alerts-88"), false);  // not the page's own: not restored by it

  const got = next(pubsub.messagePublished);
  await publish("alerts-88", "hello");
  assert.deepEqual(await got, { type: "message", channel: "alerts-88", message: "hello" });

  // the server takes the page out of a channel it subscribed itself: no longer restored
  const out = [];
  pubsub.serverUnsubscribed.add((channel) => out.push(channel));
  await control("unsubscribe", { identity: "u88", service: "pubsub", channel: "own-88" });
  await control("unsubscribe", { identity: "u88", service: "pubsub", channel: "alerts-88" });
  const marker = next(pubsub.serverSubscribed);
  await control("subscribe", { identity: "u88", service: "pubsub", channel: "marker-88" });
  await marker;  // after both unsubscribed notifications (one connection, in order)
  assert.deepEqual(out, ["own-88", "alerts-88"]);
  assert.equal(pubsub.subscriptions.has("own-88"), false);
  assert.equal(pubsub.serverSubscriptions.has("alerts-88"), false);

  // a reconnection: the old connection's server subscriptions are gone
  const back = next(page.connected);
  await control("disconnect", { identity: "u88" });
  await back;
  assert.deepEqual(pubsub.serverSubscriptions.values(), []);
  const channels = (await control("channels", { service: "pubsub" })).channels.map((c) => c.channel);
  assert.equal(channels.includes("marker-88") || channels.includes("own-88"), false);
});

test("a personal channel of others is refused and the page is told nothing", async () => {
  const page = await app.page("carol", { pubsub: Snorky.PubSub });
  const told = [];
  page.services.pubsub.serverSubscribed.add((channel) => told.push(channel));
  assert.deepEqual(await control("subscribe", { identity: "carol", service: "pubsub", channel: "dialog#alice,bob" }),
                   { subscribed: 0, refused: 1, processes: 1 });
  const marker = next(page.services.pubsub.serverSubscribed);
  await control("subscribe", { identity: "carol", service: "pubsub", channel: "dialog#carol,dave" });
  assert.equal(await marker, "dialog#carol,dave");
  assert.deepEqual(told, ["dialog#carol,dave"]);
});
