// Snorky 0.1's demos/pubsub_backend/announcements.js with the Angular
// controller replaced by plain DOM code.  The Snorky calls are those of
// Snorky.js 0.1's final API (the messagePublished signal; the demo's
// onMessagePublished property predates it).
"use strict";

var snorky = new Snorky(WebSocket, "ws://" + location.host + "/ws", {
  "pubsub": Snorky.PubSub
}, true);

snorky.services.pubsub.subscribe({ channel: "announcements" }).then(function () {
  document.getElementById("connecting").textContent = "Subscribed";
});

snorky.services.pubsub.messagePublished.add(function (msg) {
  var li = document.createElement("li");
  li.textContent = msg.message;
  document.getElementById("announcements").appendChild(li);
});
