// The Snorky operator page (docs/operator.md).  Every value it shows comes from
// the backend's control service and is put in the page as text (textContent),
// never as HTML: identities and channel names are client data.
(function () {
  "use strict";

  const BACKEND = document.body.dataset.backend;   // the backend endpoint's URL (path)
  const CONTROL = document.body.dataset.control;   // the control service's name
  const KEY_ITEM = "snorky-operator-key";          // sessionStorage: this tab only
  const REFRESH_MS = 3000;
  const LIMIT = 200;                               // connections listed per worker
  const PRESENCE_CHANNELS = 50;                    // channels whose presence counts are asked

  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY_ITEM);
  let generation = 0;        // a new key or a stop makes older refreshes moot
  let timer = null;
  let callIds = 0;
  let presenceOn = true;     // false once presenceStats answers an error: the column is hidden
  let presenceChannel;       // the channel whose presence list is shown (undefined: none)
  let target;                // the identity the disconnect panel is for

  class KeyRefused extends Error {}

  function show(value) {     // a JSON value as text
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function cell(row, value, cls) {
    const td = document.createElement("td");
    td.textContent = value === undefined || value === null ? "" : String(value);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fill(table, rows) {
    const body = $(table).tBodies[0];
    body.replaceChildren(...rows);
  }

  function message(id, text) {
    $(id).textContent = text || "";
    $(id).hidden = !text;
  }

  async function call(command, params) {
    let response;
    try {
      response = await fetch(BACKEND, {
        method: "POST", credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
        headers: {"Content-Type": "application/json", "X-Backend-Key": key},
        body: JSON.stringify({service: CONTROL, message: {command, params, callId: ++callIds}}),
      });
    } catch (err) {
      throw new Error(`the backend did not answer (${err.message})`);
    }
    if (response.status === 401) throw new KeyRefused();
    let body;
    try {
      body = await response.json();
    } catch (err) {
      throw new Error(`the backend answered HTTP ${response.status}`);
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${show(body.error)}`);
    const answer = body.message;
    if (answer.type === "error") {
      const err = new Error(`${command}: ${show(answer.message)}`);
      err.rpc = answer.message;
      throw err;
    }
    return answer.data;
  }

  // -- key ----------------------------------------------------------------------------
  function stop() {
    generation++;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function clearData() {
    for (const table of ["workers", "identities", "connections", "channels", "presence"]) fill(table, []);
    $("presence-panel").hidden = true;
    $("disconnect-panel").hidden = true;
    message("notice", "");
    message("result", "");
    message("status", "");
  }

  function askKey(error) {
    stop();
    key = null;
    sessionStorage.removeItem(KEY_ITEM);
    clearData();
    $("main").hidden = true;
    $("login").hidden = false;
    message("error", error);
    $("key").focus();
  }

  function start() {
    stop();
    message("error", "");
    $("login").hidden = true;
    $("main").hidden = false;
    refresh(generation);
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();   // never a form submission: the key stays out of every URL
    const given = $("key").value;
    $("key").value = "";
    if (!/^[\x20-\x7e]+$/.test(given)) {
      askKey("A backend key is printable ASCII: this one cannot be sent in a header.");
      return;
    }
    key = given;
    sessionStorage.setItem(KEY_ITEM, key);
    start();
  });
  $("forget").addEventListener("click", () => askKey(""));
  $("refresh").addEventListener("click", () => { stop(); refresh(generation); });
  $("service").addEventListener("change", () => { presenceOn = true; presenceChannel = undefined; });

  // -- refresh -------------------------------------------------------------------------
  async function refresh(mine) {
    try {
      await load(mine);
      if (mine !== generation) return;
      message("error", "");
      message("status", `updated ${new Date().toLocaleTimeString()}, every ${REFRESH_MS / 1000} s`);
    } catch (err) {
      if (mine !== generation) return;
      if (err instanceof KeyRefused) {
        askKey("The backend refused this key (wrong or missing X-Backend-Key): nothing is shown.");
        return;
      }
      message("error", err.message);
    }
    if (mine === generation) timer = setTimeout(() => refresh(mine), REFRESH_MS);
  }

  async function load(mine) {
    const service = $("service").value.trim() || "pubsub";
    let listing, channels = [], notice = "";
    try {
      listing = await call("connections", {service, limit: LIMIT});
      channels = (await call("channels", {service})).channels;
    } catch (err) {
      if (err.rpc !== "Unknown service") throw err;
      notice = `The app has no PubSub service named ${show(service)}: channels are not shown.`;
      listing = await call("connections", {limit: LIMIT});
    }
    const counts = new Map();
    if (presenceOn) {
      for (const entry of channels.slice(0, PRESENCE_CHANNELS)) {
        try {
          counts.set(entry, await call("presenceStats", {service, channel: entry.channel}));
        } catch (err) {
          if (err.rpc === undefined) throw err;
          presenceOn = false;   // "Presence not enabled", "Unknown command": no presence here
          break;
        }
      }
    }
    let present = null;
    if (presenceOn && presenceChannel !== undefined) {
      present = (await call("presence", {service, channel: presenceChannel})).presence;
    }
    if (mine !== generation) return;
    message("notice", notice);
    render(listing.processes, channels, counts, present);
  }

  // -- rendering (text only) -----------------------------------------------------------
  function render(processes, channels, counts, present) {
    fill("workers", processes.map((p) => {
      const row = document.createElement("tr");
      if (p.slow) row.className = "slow";
      cell(row, p.pid, "number");
      cell(row, p.host);
      cell(row, p.origin === null ? "(one process)" : p.origin);
      cell(row, p.more ? `${p.connections} (${p.more} not listed)` : p.connections, "number");
      cell(row, p.identities, "number");
      cell(row, p.slow, "number");
      cell(row, p.slowDisconnects, "number");
      return row;
    }));

    const identities = new Map();
    const connectionRows = [];
    for (const p of processes) {
      for (const c of p.clients) {
        const row = document.createElement("tr");
        if (c.slow) row.className = "slow";
        cell(row, p.pid, "number");
        cell(row, c.id, "number");
        cell(row, c.identity === null ? "(anonymous)" : show(c.identity), "identity");
        cell(row, c.remote);
        cell(row, (c.channels || []).map(show).join("\n"), "channel");
        cell(row, c.owed, "number");
        cell(row, c.slow ? "yes" : "");
        connectionRows.push(row);
        if (c.identity === null) continue;
        const id = JSON.stringify(c.identity);
        const seen = identities.get(id) ||
          {identity: c.identity, connections: 0, workers: new Set(), channels: new Set(), slow: false};
        seen.connections++;
        seen.workers.add(p.pid);
        for (const channel of c.channels || []) seen.channels.add(show(channel));
        seen.slow = seen.slow || c.slow;
        identities.set(id, seen);
      }
    }
    fill("connections", connectionRows);
    fill("identities", [...identities.values()].map((seen) => {
      const row = document.createElement("tr");
      if (seen.slow) row.className = "slow";
      cell(row, show(seen.identity), "identity");
      cell(row, seen.connections, "number");
      cell(row, [...seen.workers].join(", "));
      cell(row, [...seen.channels].join("\n"), "channel");
      cell(row, seen.slow ? "yes" : "");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "disconnect";
      button.textContent = "Disconnect";
      button.addEventListener("click", () => openDisconnect(seen.identity));
      cell(row, "").appendChild(button);
      return row;
    }));

    $("channels").classList.toggle("hide-presence", !presenceOn);
    fill("channels", channels.map((entry) => {
      const row = document.createElement("tr");
      cell(row, show(entry.channel), "channel");
      cell(row, entry.subscribers, "number");
      const stats = counts.get(entry);
      cell(row, stats ? stats.clients : "", "number presence");
      cell(row, stats ? stats.users : "", "number presence");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "who";
      button.textContent = "Who";
      button.addEventListener("click", () => {
        presenceChannel = entry.channel;
        stop();
        refresh(generation);
      });
      cell(row, "", "presence").appendChild(button);
      return row;
    }));

    $("presence-panel").hidden = present === null;
    if (present !== null) {
      $("presence-channel").textContent = show(presenceChannel);
      fill("presence", present.map((entry) => {
        const row = document.createElement("tr");
        cell(row, show(entry.identity), "identity");
        cell(row, entry.client);
        cell(row, JSON.stringify(entry.meta), "meta");
        return row;
      }));
    }
  }

  // -- disconnect ----------------------------------------------------------------------
  function openDisconnect(identity) {
    target = identity;
    $("disconnect-who").textContent = show(identity);
    $("reconnect").checked = true;
    $("reason").value = "";
    message("result", "");
    $("disconnect-panel").hidden = false;
    $("reason").focus();
  }

  $("cancel").addEventListener("click", () => { $("disconnect-panel").hidden = true; });
  $("disconnect-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = {identity: target, reconnect: $("reconnect").checked, reason: $("reason").value};
    $("disconnect-panel").hidden = true;
    try {
      const answer = await call("disconnect", params);
      message("result", `Disconnected ${show(params.identity)}: ${answer.closed} connection(s) closed ` +
        "by the worker that answered; the other workers close theirs as the broker tells them.");
    } catch (err) {
      if (err instanceof KeyRefused) {
        askKey("The backend refused this key (wrong or missing X-Backend-Key): nothing is shown.");
        return;
      }
      message("result", `Disconnect failed: ${err.message}`);
    }
    stop();
    refresh(generation);
  });

  if (key) start(); else askKey("");
})();
