// Reconnection against a real server that is restarted under the client.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, connect, next, within, test } from "./helpers.mjs";

let server;
const open = [];  // closed after the test even when it fails (no reconnect timers left behind)
before(async () => { server = await TestServer.start(); });
after(async () => {
  open.forEach((s) => s.close());
  await server.stop();
});

test("after a server restart the page resubscribes, rejoins, re-registers; pending calls fail clearly", async () => {
  class Calculator extends Snorky.RPCService {}
  Calculator.addRPCMethods(["slowSquare"]);
  const services = { pubsub: Snorky.PubSub, chat: Snorky.Chat, cursors: Snorky.Cursors,
    messaging: Snorky.Messaging, datasync: Snorky.DataSync, calc: Calculator };
  const tokenUrl = async () => server.wsUrl + "/ws-token?token=" + encodeURIComponent(await server.token("carol"));
  const page = await connect(tokenUrl, services);
  open.push(page);  // an address function answering a Promise: a fresh token per connection
  const { pubsub, chat, cursors, messaging, datasync, calc } = page.services;
  await pubsub.subscribe({ channel: "live" });
  await chat.join({ channel: "lobby" });
  const doc = await cursors.join({ document: "d" });
  const [own, created] = doc.createCursor({ position: 3, status: "here" });
  await created;
  await messaging.registerParticipant({ name: "carol-page" });
  const token = (await server.backend("datasync_backend", {
    command: "authorizeSubscription", params: { items: [{ dealer: "allTodos", query: null }] }, callId: 1 })).data;
  await datasync.acquireSubscription({ token });

  const pending = calc.slowSquare({ x: 3, delay: 60 }).then(() => null, (err) => err);
  const dropped = next(page.disconnected);
  const back = next(page.connected, { timeout: 30000 });
  const lost = next(datasync.subscriptionsLost, { timeout: 30000 });
  const rejoined = next(chat.membersChanged, { timeout: 30000 });
  await server.restart();
  assert.equal((await within(pending))?.message, "Connection lost");
  assert.equal((await dropped).willReconnect, true);
  assert.equal(await back, true);
  assert.deepEqual(await lost, [token]);
  assert.deepEqual((await rejoined)[1], [{ user: "carol" }]);

  // the page's restore calls went out before `connected`; a call of its own is
  // answered after them (one connection answers in order)
  await assert.rejects(pubsub.subscribe({ channel: "live" }), { message: "Already subscribed" });
  assert.ok((await messaging.listParticipants()).includes("carol-page"));

  // the restored state is real on the new server process, seen from other connections
  const watcher = await connect(server.wsUrl + "/ws", { pubsub: Snorky.PubSub, messaging: Snorky.Messaging });
  open.push(watcher);
  const got = next(pubsub.messagePublished);
  await watcher.services.pubsub.publish({ channel: "live", message: "after restart" });
  assert.equal((await got).message, "after restart");
  assert.ok((await watcher.services.messaging.listParticipants()).includes("carol-page"));
  const observer = await connect(await tokenUrl(), { cursors: Snorky.Cursors });
  open.push(observer);
  const seen = await observer.services.cursors.join({ document: "d" });
  if (seen.cursors.length === 0) await next(seen.cursorAdded);  // recreated after the rejoin's answer
  assert.deepEqual(seen.cursors.map((c) => [c.position, c.status]), [[3, "here"]]);
  await own.update({ status: "here" });  // answered after the recreation's answer
  assert.equal(own.publicHandle, seen.cursors[0].publicHandle);
  assert.equal(own.isSynchronized(), true);

  // close() stops reconnecting
  const closed = next(page.disconnected);
  page.close();
  const info = await closed;
  assert.equal(info.willReconnect, false);
  assert.equal(page.isConnecting, false);
  await assert.rejects(pubsub.publish({ channel: "live", message: 1 }), { message: "Connection closed" });
  watcher.close();
  observer.close();
});
