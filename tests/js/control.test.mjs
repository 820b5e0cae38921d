// The backend's control.disconnect (issue #24 item 2) seen from snorky.js:
// close code 4003 ("do not reconnect") stops the page's reconnection, 4002 does not.
import assert from "node:assert/strict";
import { Snorky, controlApp, next, test } from "./helpers.mjs";

const app = controlApp();

const disconnect = (params) => app.server.backend("control", { command: "disconnect", params, callId: 1 });

test("disconnect(reconnect=false) closes with 4003 and the page stays disconnected", async () => {
  const page = await app.page("u42", { pubsub: Snorky.PubSub });
  const other = await app.page("u7", { pubsub: Snorky.PubSub });

  const dropped = next(page.disconnected);
  const answer = await disconnect({ identity: "u42", reconnect: false, reason: "banned" });
  assert.deepEqual(answer.data, { closed: 1 });
  assert.deepEqual(await dropped, { code: 4003, reason: "banned", willReconnect: false });
  assert.equal(page.isReconnecting, false);
  assert.equal(page.isConnecting, false);

  // u7 is disconnected with reconnection allowed (4002): it comes back, meanwhile u42's page stays down
  const otherDropped = next(other.disconnected);
  const otherBack = next(other.connected);
  await disconnect({ identity: "u7" });
  assert.deepEqual(await otherDropped, { code: 4002, reason: "Disconnected", willReconnect: true });
  assert.equal(await otherBack, true);
  assert.equal(page.isConnected, false);
  assert.equal(page.isConnecting, false);
  assert.equal(page.isReconnecting, false);
});
