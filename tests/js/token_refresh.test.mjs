// snorky.js's getToken: the in-band token refresh (docs/protocol.md section 6)
// against a real server whose JWT tokens end connections when they expire
// (4001). "Past the first token's expiry" is proven by a witness page whose
// token expires a second later and which is closed with 4001, not by a clock.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { Snorky, TestServer, connect, next, within, request, test } from "./helpers.mjs";

let server;
const open = [];
before(async () => {
  server = await TestServer.start(undefined, { module: "tests.js.token_refresh_app" });
});
after(async () => {
  open.forEach((s) => s.close());
  await server.stop();
});

async function jwtFor(user, ttl) {
  const r = await request(`${server.url}/jwt/${user}?ttl=${ttl}`);
  if (!r.ok) throw new Error(`jwt: HTTP ${r.status}`);
  return r.text();
}

test("getToken keeps a page connected past its token's expiry, subscribed, offsets continuing", async () => {
  const calls = [];
  const getToken = () => { calls.push(Date.now()); return jwtFor("ann", 120); };
  const page = await connect(`${server.wsUrl}/ws?token=${await jwtFor("ann", 2)}`,
                             { pubsub: Snorky.PubSub }, { getToken, tokenRefreshMargin: 1 });
  const witness = await connect(`${server.wsUrl}/ws?token=${await jwtFor("wit", 3)}`, {},
                                { reconnect: false });
  const publisher = await connect(`${server.wsUrl}/ws?token=${await jwtFor("pub", 120)}`,
                                  { pubsub: Snorky.PubSub });
  open.push(page, witness, publisher);
  const { pubsub } = page.services;
  const first = await pubsub.subscribe({ channel: "news" });
  let got = next(pubsub.messagePublished);
  await publisher.services.pubsub.publish({ channel: "news", message: "one" });
  assert.equal((await got).offset, first.offset + 1);

  const closed = await next(witness.disconnected, { timeout: 15000 });
  assert.equal(closed.code, 4001);                 // the first token's expiry has passed
  got = next(pubsub.messagePublished);
  await publisher.services.pubsub.publish({ channel: "news", message: "two" });
  const two = await got;
  assert.deepEqual([two.message, two.offset, two.epoch], ["two", first.offset + 2, first.epoch]);
  assert.equal(page.connectionCount, 1);           // never reconnected
  assert.equal(page.isConnected, true);
  assert.equal(calls.length, 1);                   // once after the open; the next is 119 s away

  // a reconnection uses the refreshed token (the first one would be refused: expired)
  const firstToken = page.address.split("token=")[1];
  const back = next(page.connected, { timeout: 15000 });
  page._socket.close();
  assert.equal(await within(back, 15000), true);
  assert.equal(page._socket.url, page.address.replace(firstToken, page._token));
  assert.notEqual(page._token, firstToken);
  assert.equal(calls.length, 1);                   // its expiry is far: no new token needed
});

test("a token of another identity is refused: the connection ends at its old expiry (4001)", async () => {
  const page = await connect(`${server.wsUrl}/ws?token=${await jwtFor("bob", 2)}`, {},
                             { getToken: () => jwtFor("mallory", 120), tokenRefreshMargin: 1,
                               reconnect: false });
  open.push(page);
  const info = await next(page.disconnected, { timeout: 15000 });
  assert.equal(info.code, 4001);
  assert.equal(info.reason, "Token expired");
});

test("after a 4001 the page reconnects with a fresh token from getToken", async () => {
  const tokensGiven = [jwtFor("cy-other", 120), jwtFor("cy", 120)];  // the first is refused
  const tokens = [...tokensGiven];
  const first = await jwtFor("cy", 2);
  const page = await connect(`${server.wsUrl}/ws?token=${first}`, {},
                             { getToken: () => tokens.shift(), tokenRefreshMargin: 1 });
  open.push(page);
  const back = next(page.connected, { timeout: 20000 });
  const info = await next(page.disconnected, { timeout: 15000 });
  assert.deepEqual([info.code, info.willReconnect], [4001, true]);
  assert.equal(await back, true);                  // reconnected: the expired token was not reused
  assert.equal(tokens.length, 0);
  assert.equal(page._socket.url, page.address.replace(first, await tokensGiven[1]));
});
