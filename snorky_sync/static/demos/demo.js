// Shared by the demo pages: this tab's name and a Snorky connection as that name.
(function () {
  "use strict";

  // One name per tab (two tabs can be two people): ?name=... or a random guest.
  function name() {
    var fromUrl = new URLSearchParams(location.search).get("name");
    var stored = sessionStorage.getItem("snorky-demo-name");
    var chosen = fromUrl || stored || "guest-" + Math.floor(1000 + Math.random() * 9000);
    sessionStorage.setItem("snorky-demo-name", chosen);
    return chosen;
  }

  // The demo app signs a connection token for the name (see /demos/token);
  // a real application would do that only for its logged-in user.
  // The address is a function: at every (re)connection it fetches a fresh
  // token, so a page outlives token expiry and server restarts.
  function connect(services, withIdentity) {
    var url = Snorky.defaultUrl("/ws");
    var address = !withIdentity ? url : function () {
      return fetch("/demos/token?name=" + encodeURIComponent(name()))
        .then(function (r) { return r.json(); })
        .then(function (body) { return url + "?token=" + encodeURIComponent(body.token); });
    };
    // ?transport=xhr-polling (or any sockjs-client transport) connects with
    // SockJS on that transport, when the page has sockjs-client
    var transport = new URLSearchParams(location.search).get("transport");
    // a call that gets no answer in 10 s rejects with an Error naming the
    // service and command instead of waiting for ever; #debug also warns
    var options = {debug: /debug/.test(location.hash), callTimeout: 10000};
    var snorky;
    if (transport && typeof SockJS === "function") {
      var sockjsUrl = function (u) { return u.replace(/^ws/, "http").replace("/ws", "/sockjs"); };
      var sockjsAddress = typeof address === "function"
        ? function () { return address().then(sockjsUrl); } : sockjsUrl(address);
      var Forced = function (u) { return new SockJS(u, null, {transports: [transport]}); };
      snorky = new Snorky(Forced, sockjsAddress, services, options);
    } else {
      snorky = new Snorky(WebSocket, address, services, options);
    }
    showStatus(snorky);
    return snorky;
  }

  function showStatus(snorky) {
    var el = document.getElementById("status");
    function set(state, text) {
      document.body.dataset.connection = state;
      if (el) { el.dataset.state = state; el.textContent = text; }
    }
    set("connecting", "connecting…");
    snorky.connected.add(function (again) { set("connected", again ? "reconnected" : "connected"); });
    snorky.disconnected.add(function (info) {
      set("disconnected", info.willReconnect ? "disconnected, reconnecting…" : "disconnected");
    });
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  window.demo = {name: name, connect: connect, el: el};
})();
