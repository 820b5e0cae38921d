/*! snorky.js — the browser (and Node) client of snorky_sync.
 *
 * Speaks the Snorky 0.1 wire protocol (PROTOCOL.md): every frame is
 * {"service": name, "message": ...}.  No dependencies, no build step:
 *
 *   <script src="/static/snorky.js"></script>            defines window.Snorky
 *   import Snorky from "/static/snorky.mjs";              ES module
 *   const Snorky = require("snorky_sync/static/snorky.js") CommonJS / Node
 *
 *   var snorky = new Snorky(WebSocket, "ws://host/ws", {
 *     pubsub: Snorky.PubSub, chat: Snorky.Chat}, {debug: true});
 *   snorky.services.pubsub.messagePublished.add(function (msg) { ... });
 *   snorky.services.pubsub.subscribe({channel: "news"});
 *
 * Beyond Snorky 0.1: reconnection with exponential backoff and jitter; after
 * reconnecting, connectors restore what the page had (pubsub subscriptions,
 * chat channels, cursor documents and own cursors, messaging names); RPC
 * calls in flight when the connection drops reject with "Connection lost";
 * close() stops reconnecting.
 *
 * This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0.
 */
(function (root, factory) {
  "use strict";
  var Snorky = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = Snorky;
  }
  if (root) {
    root.Snorky = Snorky;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  var root = typeof globalThis !== "undefined" ? globalThis : {};

  function logError() {
    if (typeof console !== "undefined" && console.error) {
      console.error.apply(console, arguments);
    }
  }

  /* JSON with sorted object keys: the client-side identity of a channel or
   * document (the server compares them by value). */
  function stableStringify(value) {
    if (value === null || typeof value !== "object") {
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) {
      return "[" + value.map(stableStringify).join(",") + "]";
    }
    return "{" + Object.keys(value).sort().map(function (k) {
      return JSON.stringify(k) + ":" + stableStringify(value[k]);
    }).join(",") + "}";
  }

  /* ------------------------------------------------------------------ */
  /* Signals: small event objects (add / addOnce / remove / dispatch).   */

  class Signal {
    constructor() {
      this._listeners = [];
    }

    add(fn, ctx) {
      if (typeof fn !== "function") {
        throw new TypeError("Signal.add: listener must be a function");
      }
      this._listeners.push({fn: fn, ctx: ctx, once: false});
      return this;
    }

    addOnce(fn, ctx) {
      this.add(fn, ctx);
      this._listeners[this._listeners.length - 1].once = true;
      return this;
    }

    remove(fn, ctx) {
      this._listeners = this._listeners.filter(function (l) {
        return !(l.fn === fn && (ctx === undefined || l.ctx === ctx));
      });
      return this;
    }

    removeAll() {
      this._listeners = [];
      return this;
    }

    getNumListeners() {
      return this._listeners.length;
    }

    /* Calls every listener with the arguments.  A listener that throws is
     * reported on the console and does not stop the others. */
    dispatch() {
      var args = arguments;
      var listeners = this._listeners.slice();
      this._listeners = this._listeners.filter(function (l) { return !l.once; });
      listeners.forEach(function (l) {
        try {
          l.fn.apply(l.ctx, args);
        } catch (err) {
          logError("snorky: a signal listener threw", err);
        }
      });
    }
  }

  /* ------------------------------------------------------------------ */
  /* The connection.                                                     */

  var DEFAULTS = {
    debug: false,
    reconnect: true,          // reconnect after an unexpected close
    reconnectDelay: 500,      // ms before the first retry
    maxReconnectDelay: 15000, // cap of the exponential backoff
    protocols: undefined      // WebSocket sub-protocols, if any
  };

  class Snorky {
    /* new Snorky(WebSocketClass, url, {name: ServiceClass, ...}, options)
     *  url: a ws:// or wss:// address, or a function returning one or a
     *       Promise of one (called at every (re)connection, e.g. to fetch a
     *       fresh connection token).
     *  options: {debug, reconnect, reconnectDelay, maxReconnectDelay,
     *       protocols}; a boolean is taken as `debug` (Snorky 0.1). */
    constructor(socketClass, address, services, options) {
      if (typeof socketClass !== "function") {
        throw new TypeError("Snorky: the first argument is the WebSocket class");
      }
      if (typeof options === "boolean") {
        options = {debug: options};
      }
      this.options = Object.assign({}, DEFAULTS, options || {});
      this.socketClass = socketClass;
      this.address = address;
      this.debug = !!this.options.debug;

      this.connected = new Signal();     // dispatch(isReconnection)
      this.disconnected = new Signal();  // dispatch({code, reason, willReconnect})

      this.isConnected = false;
      this.isConnecting = false;
      this.closed = false;               // close() was called
      this.reconnectAttempts = 0;
      this.connectionCount = 0;          // successful opens so far

      this._socket = null;
      this._queue = [];
      this._timer = null;

      this.services = {};
      for (var name in services || {}) {
        if (Object.prototype.hasOwnProperty.call(services, name)) {
          this.services[name] = new services[name](name, this);
        }
      }
      this.connect();
    }

    logDebug() {
      if (this.debug && typeof console !== "undefined") {
        var out = console.debug || console.log;
        out.apply(console, ["snorky:"].concat(Array.prototype.slice.call(arguments)));
      }
    }

    /* Opens the socket (the constructor calls it; so does reconnection). */
    connect() {
      if (this._socket || this.closed) {
        return;
      }
      if (this._timer) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      var url = typeof this.address === "function" ? this.address() : this.address;
      var self = this;
      this.isConnecting = true;
      if (url && typeof url.then === "function") {
        // an address function may answer later, e.g. after fetching a fresh token
        this._socket = {pending: true, close: function () {}};
        var placeholder = this._socket;
        url.then(function (resolved) {
          if (self._socket !== placeholder) { return; }  // closed meanwhile
          self._socket = null;
          self._open(resolved);
        }, function (err) {
          if (self._socket !== placeholder) { return; }
          self.logDebug("the address function failed", err);
          self._socket = null;
          self._onClose({code: 1006, reason: "no address: " + (err && err.message)});
        });
        return;
      }
      this._open(url);
    }

    _open(url) {
      var self = this;
      this.logDebug("connecting to", url);
      var socket = this.options.protocols === undefined
        ? new this.socketClass(url)
        : new this.socketClass(url, this.options.protocols);
      this._socket = socket;
      socket.onopen = function () {
        if (self._socket === socket) { self._onOpen(); }
      };
      socket.onmessage = function (event) {
        if (self._socket === socket) { self._onMessage(event); }
      };
      socket.onclose = function (event) {
        if (self._socket === socket) { self._onClose(event || {}); }
      };
      socket.onerror = function () {
        self.logDebug("socket error");
        // A connection that fails before opening: some WebSocket
        // implementations (Node 20's) fire no close event after it.
        if (self._socket === socket && !self.isConnected) {
          try { socket.close(); } catch (err) { /* never opened */ }
          self._onClose({code: 1006, reason: "connection failed"});
        }
      };
    }

    /* Closes the connection for good: no reconnection, queued messages and
     * pending calls are rejected with "Connection closed". */
    close() {
      this.closed = true;
      if (this._timer) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      var socket = this._socket;
      if (socket) {
        this._socket = null;
        try { socket.close(1000); } catch (err) { /* already closing */ }
        this._lost({code: 1000, reason: "closed by the client", willReconnect: false},
                   "Connection closed");
      }
      this._failQueued("Connection closed");
    }

    disconnect() {  // Snorky 0.1 name
      this.close();
    }

    _onOpen() {
      var isReconnection = this.connectionCount > 0;
      this.isConnected = true;
      this.isConnecting = false;
      this.reconnectAttempts = 0;
      this.connectionCount += 1;
      this.logDebug(isReconnection ? "reconnected" : "connected");
      var name;
      // Restore first (pubsub subscriptions, chat channels, ...), then send
      // what the page queued while offline, in order.
      for (name in this.services) {
        try {
          this.services[name]._connectionOpened(isReconnection);
        } catch (err) {
          logError("snorky: service " + name + " failed to restore", err);
        }
      }
      var queue = this._queue;
      this._queue = [];
      for (var i = 0; i < queue.length; i++) {
        this._socket.send(queue[i].raw);
        if (queue[i].onSent) { queue[i].onSent(); }
      }
      this.connected.dispatch(isReconnection);
      if (typeof this.onConnected === "function") { this.onConnected(); }
    }

    _onMessage(event) {
      var packet;
      try {
        packet = JSON.parse(event.data);
      } catch (err) {
        logError("snorky: frame is not JSON", event.data);
        return;
      }
      if (!packet || typeof packet !== "object") {
        logError("snorky: frame is not an envelope", packet);
        return;
      }
      this.logDebug("received", packet);
      var service = this.services[packet.service];
      if (service) {
        service.packetReceived.dispatch(packet.message);
      } else {
        this.logDebug("frame for an unknown service", packet.service);
      }
    }

    _onClose(event) {
      this._socket = null;
      var willReconnect = !this.closed && this.options.reconnect;
      this._lost({code: event.code, reason: event.reason, willReconnect: willReconnect},
                 "Connection lost");
      if (willReconnect) {
        this._scheduleReconnect();
      } else {
        this._failQueued("Connection closed");
      }
    }

    _lost(info, errorText) {
      var wasConnected = this.isConnected;
      this.isConnected = false;
      this.isConnecting = false;
      for (var name in this.services) {
        this.services[name]._connectionLost(errorText);
      }
      this.logDebug("disconnected", info);
      // a failed reconnection attempt is not news; the end of a connection,
      // or of trying, is
      if (wasConnected || !info.willReconnect) {
        this.disconnected.dispatch(info);
        if (typeof this.onDisconnected === "function") { this.onDisconnected(); }
      }
    }

    _failQueued(errorText) {
      var queue = this._queue;
      this._queue = [];
      queue.forEach(function (item) {
        if (item.reject) { item.reject(new Error(errorText)); }
      });
    }

    /* Delay before reconnection attempt n: exponential, capped, with jitter
     * (half fixed, half random) so that thousands of pages reconnecting
     * after a restart do not arrive in one burst. */
    nextReconnectDelay() {
      var base = this.options.reconnectDelay * Math.pow(2, this.reconnectAttempts);
      var capped = Math.min(this.options.maxReconnectDelay, base);
      return Math.round(capped / 2 + Math.random() * capped / 2);
    }

    _scheduleReconnect() {
      var delay = this.nextReconnectDelay();
      var self = this;
      this.reconnectAttempts += 1;
      this.isConnecting = true;
      this.logDebug("reconnecting in", delay, "ms");
      this._timer = setTimeout(function () {
        self._timer = null;
        self.connect();
      }, delay);
    }

    /* Sends an envelope now, or queues it until the socket is open.
     * `reject` (optional) is called if the message can never be sent. */
    _sendServiceMessage(serviceName, message, reject, onSent) {
      var raw = JSON.stringify({service: serviceName, message: message});
      if (this.isConnected) {
        this.logDebug("sending", raw);
        this._socket.send(raw);
        return true;
      }
      if (this.closed) {
        if (reject) { reject(new Error("Connection closed")); }
        return false;
      }
      this._queue.push({raw: raw, reject: reject, onSent: onSent});
      return false;
    }

    /* ws(s)://<this page's host><path>: the usual address in a browser. */
    static defaultUrl(path) {
      var loc = root.location;
      return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + (path || "/ws");
    }
  }

  /* ------------------------------------------------------------------ */
  /* Services.                                                           */

  class Service {
    constructor(name, snorky) {
      if (typeof name !== "string" || !snorky) {
        throw new TypeError("Service(name, snorky): bad arguments");
      }
      this.name = name;
      this.snorky = snorky;
      this.packetReceived = new Signal();
      this.packetReceived.add(this.onMessage, this);
      this.init();
    }

    init() {}

    sendMessage(message) {
      return this.snorky._sendServiceMessage(this.name, message);
    }

    onMessage(message) {}

    /* Called on every open; isReconnection is true after a reconnection.
     * Connectors override it to restore their state. */
    _connectionOpened(isReconnection) {
      if (isReconnection) { this.restore(); }
    }

    restore() {}

    _connectionLost(errorText) {}
  }

  class RPCService extends Service {
    init() {
      this.nextCallId = 0;
      this.calls = {};  // callId -> {resolve, reject, command}
      this.notificationReceived = new Signal();
      this.notificationReceived.add(this.onNotification, this);
    }

    /* Calls `command` with `params` (an object); the Promise resolves with
     * the response's data or rejects with an Error whose message is the
     * server's error text (e.g. "Already subscribed"), or "Connection lost"
     * when the connection drops before the answer.  A call made while
     * offline is queued and sent when the connection opens. */
    rpcCall(command, params) {
      var self = this;
      return new Promise(function (resolve, reject) {
        var callId = self.nextCallId++;
        var entry = {resolve: resolve, command: command, sent: false};
        entry.reject = function (err) {
          delete self.calls[callId];
          reject(err);
        };
        self.calls[callId] = entry;
        entry.sent = self.snorky._sendServiceMessage(self.name, {
          command: command,
          params: params || {},
          callId: callId
        }, entry.reject, function () { entry.sent = true; });
      });
    }

    /* rpcCall, then `onSuccess(data)` once it succeeded (connectors track
     * what the page has, to restore it after a reconnection). */
    _callThen(command, params, onSuccess) {
      return this.rpcCall(command, params).then(function (data) {
        onSuccess(data);
        return data;
      });
    }

    /* After a reconnection: call `command` again for every value of
     * `tracked` (a ValueSet); a value the server refuses is forgotten. */
    _replay(tracked, command, paramName, onSuccess) {
      var self = this;
      tracked.values().forEach(function (value) {
        var params = {};
        params[paramName] = value;
        self.rpcCall(command, params).then(function (data) {
          if (onSuccess) { onSuccess(value, data); }
        }, function (err) {
          tracked.delete(value);
          logError("snorky: " + self.name + ": " + command + " after reconnecting failed for",
                   value, err.message);
        });
      });
    }

    call(command, params) {  // Snorky 0.1 name
      return this.rpcCall(command, params);
    }

    onMessage(message) {
      if (!message || typeof message !== "object" || !("type" in message)) {
        logError('snorky: non-RPC message from service "' + this.name + '"', message);
        return;
      }
      if (message.type === "response" || message.type === "error") {
        var call = this.calls[message.callId];
        if (!call) {
          logError('snorky: answer to an unknown call from service "' + this.name + '"', message);
          return;
        }
        delete this.calls[message.callId];
        if (message.type === "response") {
          call.resolve(message.data);
        } else {
          var err = new Error(message.message);
          err.command = call.command;
          call.reject(err);
        }
      } else {
        this.notificationReceived.dispatch(message);
      }
    }

    onNotification(message) {}

    _connectionLost(errorText) {
      var calls = this.calls;
      var pending = [];
      for (var id in calls) { pending.push(calls[id]); }
      // calls still queued (never sent) stay queued for the next connection
      pending.forEach(function (call) {
        if (call.sent) { call.reject(new Error(errorText)); }
      });
    }

    static addRPCMethods(methods) {
      var cls = this;
      methods.forEach(function (method) {
        if (method in cls.prototype) {
          throw new Error('Method "' + method + '" already exists; refusing to overwrite it');
        }
        cls.prototype[method] = function (params) {
          return this.rpcCall(method, params || {});
        };
      });
    }
  }

  /* Tracks values (channels, documents) by value, as the server does. */
  class ValueSet {
    constructor() { this.map = new Map(); }
    add(value, extra) { this.map.set(stableStringify(value), {value: value, extra: extra}); }
    delete(value) { this.map.delete(stableStringify(value)); }
    has(value) { return this.map.has(stableStringify(value)); }
    get(value) { var e = this.map.get(stableStringify(value)); return e && e.extra; }
    values() { return Array.from(this.map.values()).map(function (e) { return e.value; }); }
    get size() { return this.map.size; }
    clear() { this.map.clear(); }
  }

  /* PubSub ------------------------------------------------------------ */

  class PubSub extends RPCService {
    init() {
      super.init();
      this.messagePublished = new Signal();  // dispatch({type, channel, message})
      this.subscriptions = new ValueSet();
    }

    subscribe(params) {
      var subs = this.subscriptions;
      return this._callThen("subscribe", params, function () { subs.add(params.channel); });
    }

    unsubscribe(params) {
      var subs = this.subscriptions;
      return this._callThen("unsubscribe", params, function () { subs.delete(params.channel); });
    }

    onNotification(message) {
      if (message.type === "message") {
        this.messagePublished.dispatch(message);
        if (typeof this.onMessagePublished === "function") { this.onMessagePublished(message); }
      } else {
        logError("snorky: unknown pubsub notification " + message.type);
      }
    }

    restore() {
      this._replay(this.subscriptions, "subscribe", "channel");
    }
  }
  PubSub.addRPCMethods(["publish"]);

  /* Chat --------------------------------------------------------------- */

  class Chat extends RPCService {
    init() {
      super.init();
      this.messageReceived = new Signal();   // {from, channel, body, timestamp}
      this.presenceReceived = new Signal();  // {from, channel, status, timestamp}
      this.readReceived = new Signal();      // {channel, timestamp}
      this.membersChanged = new Signal();    // (channel, members): join, presence, rejoin
      this.channels = new ValueSet();        // joined channel -> members array
    }

    join(params) {
      var self = this;
      return this._callThen("join", params, function (data) { self._joined(params.channel, data); });
    }

    leave(params) {
      var channels = this.channels;
      return this._callThen("leave", params, function () { channels.delete(params.channel); });
    }

    _joined(channel, data) {
      this.channels.add(channel, data.members.slice());
      this.membersChanged.dispatch(channel, data.members.slice());
    }

    /* The members of a joined channel as this page knows them. */
    members(channel) {
      return (this.channels.get(channel) || []).slice();
    }

    onNotification(message) {
      if (message.type === "message") {
        this.messageReceived.dispatch(message);
      } else if (message.type === "presence") {
        var members = this.channels.get(message.channel);
        if (members) {
          var key = stableStringify(message.from);
          var i = members.findIndex(function (m) { return stableStringify(m) === key; });
          if (message.status === "joined" && i < 0) { members.push(message.from); }
          if (message.status === "left" && i >= 0) { members.splice(i, 1); }
        }
        this.presenceReceived.dispatch(message);
        if (members) { this.membersChanged.dispatch(message.channel, members.slice()); }
      } else if (message.type === "read") {
        this.readReceived.dispatch(message);
      } else {
        logError("snorky: unknown chat notification " + message.type);
      }
    }

    restore() {
      this._replay(this.channels, "join", "channel", this._joined.bind(this));
    }
  }
  Chat.addRPCMethods(["send", "read"]);

  /* Cursors ------------------------------------------------------------ */

  class ForeignCursor {
    constructor(data) { Object.assign(this, data); }
  }
  ForeignCursor.prototype.isMine = false;

  class OwnCursor {
    constructor(document, data) {
      this.document = document;
      this.removed = false;
      this.publicHandle = null;
      this.pendingPromiseCount = 1;  // the create call
      Object.assign(this, data);
    }

    /* newData: {position, status} (either); resolves when the server has it. */
    update(newData) {
      var service = this.document.service;
      var self = this;
      Object.keys(newData).forEach(function (key) {
        if (key !== "position" && key !== "status") {
          throw new Error("Can't update '" + key + "' of a cursor");
        }
      });
      Object.assign(this, newData);
      this.pendingPromiseCount += 1;
      return service.rpcCall("updateCursor", {
        privateHandle: this.privateHandle, newData: newData
      }).finally(function () { self.pendingPromiseCount -= 1; });
    }

    remove() {
      var service = this.document.service;
      var self = this;
      this.removed = true;
      this.pendingPromiseCount += 1;
      delete service.ownCursors[this.privateHandle];
      this.document._forget(function (c) { return c === self; });
      return service.rpcCall("removeCursor", {privateHandle: this.privateHandle})
        .finally(function () { self.pendingPromiseCount -= 1; });
    }

    isSynchronized() {
      return this.pendingPromiseCount === 0;
    }
  }
  OwnCursor.prototype.isMine = true;

  class CursorDocument {
    constructor(service, name, cursors) {
      this.service = service;
      this.name = name;
      this.cursors = (cursors || []).map(function (c) { return new ForeignCursor(c); });
      this.cursorAdded = new Signal();    // (cursor)
      this.cursorUpdated = new Signal();  // (cursor)
      this.cursorRemoved = new Signal();  // ({publicHandle, document})
    }

    foreignCursors() {
      return this.cursors.filter(function (c) { return !c.isMine; });
    }

    _forget(predicate) {
      this.cursors = this.cursors.filter(function (c) { return !predicate(c); });
    }

    /* createCursor({position, status}) -> [cursor, promise of its publicHandle] */
    createCursor(params) {
      var service = this.service;
      var handle = service.getFreePrivateHandle();
      var cursor = new OwnCursor(this, {
        privateHandle: handle, position: params.position, status: params.status
      });
      service.ownCursors[handle] = cursor;
      this.cursors.push(cursor);
      var promise = service.rpcCall("createCursor", {
        privateHandle: handle, document: this.name,
        position: params.position, status: params.status
      }).then(function (publicHandle) {
        cursor.publicHandle = publicHandle;
        return publicHandle;
      }).finally(function () { cursor.pendingPromiseCount -= 1; });
      return [cursor, promise];
    }

    leave() {
      return this.service.leave({document: this.name});
    }

    _onAdded(data) {
      var cursor = new ForeignCursor(data);
      this.cursors.push(cursor);
      this.cursorAdded.dispatch(cursor);
    }

    _onUpdated(data) {
      var found = null;
      this.cursors.forEach(function (c) {
        if (!c.isMine && c.publicHandle === data.publicHandle) {
          Object.assign(c, data);
          found = c;
        }
      });
      if (!found) {
        found = new ForeignCursor(data);
        this.cursors.push(found);
      }
      this.cursorUpdated.dispatch(found);
    }

    _onRemoved(data) {
      this._forget(function (c) { return !c.isMine && c.publicHandle === data.publicHandle; });
      this.cursorRemoved.dispatch(data);
    }

    /* After a reconnection: the server's current cursors replace the old
     * foreign ones (listeners see removals and additions); own cursors are
     * created again with their last position and status. */
    _rejoined(cursors) {
      var self = this;
      this.foreignCursors().forEach(function (c) {
        self._forget(function (x) { return x === c; });
        self.cursorRemoved.dispatch({publicHandle: c.publicHandle, document: c.document});
      });
      cursors.forEach(function (c) { self._onAdded(c); });
      this.cursors.filter(function (c) { return c.isMine && !c.removed; }).forEach(function (own) {
        own.pendingPromiseCount += 1;
        self.service.rpcCall("createCursor", {
          privateHandle: own.privateHandle, document: self.name,
          position: own.position, status: own.status
        }).then(function (publicHandle) {
          own.publicHandle = publicHandle;
        }, function (err) {
          logError("snorky: could not recreate cursor", err.message);
        }).finally(function () { own.pendingPromiseCount -= 1; });
      });
    }
  }

  class Cursors extends RPCService {
    init() {
      super.init();
      this.documents = new ValueSet();  // name -> CursorDocument
      this.ownCursors = {};             // privateHandle -> OwnCursor
    }

    /* join({document}) -> Promise of a CursorDocument */
    join(params) {
      var self = this;
      return this.rpcCall("join", params).then(function (data) {
        var doc = new CursorDocument(self, params.document, data.cursors);
        self.documents.add(params.document, doc);
        return doc;
      });
    }

    leave(params) {
      var self = this;
      return this.rpcCall("leave", params).then(function (data) {
        var doc = self.documents.get(params.document);
        if (doc) {
          doc.cursors.forEach(function (c) {
            if (c.isMine) { delete self.ownCursors[c.privateHandle]; }
          });
          self.documents.delete(params.document);
        }
        return data;
      });
    }

    onNotification(message) {
      var cursor = message.cursor || {};
      var doc = this.documents.get(cursor.document);
      if (!doc) {
        logError("snorky: cursor notification for an unknown document", message);
        return;
      }
      if (message.type === "cursorAdded") { doc._onAdded(cursor); }
      else if (message.type === "cursorUpdated") { doc._onUpdated(cursor); }
      else if (message.type === "cursorRemoved") { doc._onRemoved(cursor); }
      else { logError("snorky: unknown cursors notification " + message.type); }
    }

    getFreePrivateHandle() {
      for (var h = 0; h < 1 << 30; h++) {
        if (!(h in this.ownCursors)) { return h; }
      }
      throw new Error("No free cursor handle");
    }

    restore() {
      var documents = this.documents;
      this._replay(documents, "join", "document", function (name, data) {
        documents.get(name)._rejoined(data.cursors);
      });
    }
  }
  Cursors.Document = CursorDocument;
  Cursors.OwnCursor = OwnCursor;
  Cursors.ForeignCursor = ForeignCursor;

  /* Messaging ---------------------------------------------------------- */

  class Messaging extends RPCService {
    init() {
      super.init();
      this.participantMessage = new Signal();  // {sender, dest, body}
      this.participants = new ValueSet();      // names registered by this page
    }

    registerParticipant(params) {
      var names = this.participants;
      return this._callThen("registerParticipant", params, function () { names.add(params.name); });
    }

    unregisterParticipant(params) {
      var names = this.participants;
      return this._callThen("unregisterParticipant", params, function () { names.delete(params.name); });
    }

    onNotification(message) {
      if (message.type === "message") {
        this.participantMessage.dispatch(message);
        if (typeof this.onParticipantMessage === "function") { this.onParticipantMessage(message); }
      } else {
        logError("snorky: unknown messaging notification " + message.type);
      }
    }

    restore() {
      this._replay(this.participants, "registerParticipant", "name");
    }
  }
  Messaging.addRPCMethods(["listParticipants", "send"]);

  /* DataSync ----------------------------------------------------------- */

  class DataSync extends RPCService {
    init() {
      super.init();
      this.deltaReceived = new Signal();      // (delta)
      this.subscriptionsLost = new Signal();  // (tokens) after a reconnection
      this.acquired = new Set();
    }

    acquireSubscription(params) {
      var self = this;
      return this.rpcCall("acquireSubscription", params).then(function (data) {
        self.acquired.add(params.token);
        return data;
      });
    }

    cancelSubscription(params) {
      var self = this;
      self.acquired.delete(params.token);
      return this.rpcCall("cancelSubscription", params);
    }

    onNotification(message) {
      if (message.type === "delta") {
        this.deltaReceived.dispatch(message.delta);
        if (typeof this.onDelta === "function") { this.onDelta(message.delta); }
      } else {
        logError("snorky: unknown datasync notification " + message.type);
      }
    }

    /* The server cancels a connection's subscriptions when it drops, and a
     * token is single-use: the page must fetch its data and a new token
     * again (listen to subscriptionsLost). */
    restore() {
      var tokens = Array.from(this.acquired);
      this.acquired.clear();
      if (tokens.length) { this.subscriptionsLost.dispatch(tokens); }
    }
  }

  /* Collections kept up to date by deltas. */

  class Collection {}

  class ArrayIterator {
    constructor(array, options) {
      this.array = array;
      this.options = options;
      this.index = -1;
      this.deleted = false;
    }
    hasNext() { return this.index < this.array.length - 1; }
    next() {
      if (!this.hasNext()) { throw new Error("Busted iterator"); }
      this.deleted = false;
      return this.array[++this.index];
    }
    _check() {
      if (this.deleted) { throw new Error("Iterator points to a deleted item (call next())"); }
      if (this.index < 0) { throw new Error("Iterator points to no item (call next())"); }
    }
    remove() { this._check(); this.array.splice(this.index--, 1); this.deleted = true; }
    update(value) { this._check(); this.array[this.index] = this.options.transformItem(value); }
  }

  /* An array (yours, e.g. bound to a view) that deltas insert into, update
   * and delete from.  options.transformItem(data) turns delta data into the
   * item stored (e.g. a model object). */
  class ArrayCollection extends Collection {
    constructor(array, options) {
      super();
      this.array = array || [];
      this.options = Object.assign({transformItem: function (item) { return item; }}, options || {});
    }
    insert(value) { this.array.push(this.options.transformItem(value)); }
    getIterator() { return new ArrayIterator(this.array, this.options); }
  }

  class SingleItemIterator {
    constructor(collection) { this.collection = collection; this.fetched = false; }
    hasNext() { return !this.fetched; }
    next() {
      if (this.fetched) { throw new Error("Busted iterator"); }
      this.fetched = true;
      return this.collection.readHandler();
    }
    remove() {
      if (!this.fetched) { throw new Error("Iterator points to no item (call next())"); }
      this.collection.removeHandler();
    }
    update(value) {
      if (!this.fetched) { throw new Error("Iterator points to no item (call next())"); }
      this.collection.updateHandler(value);
    }
  }

  /* One item (e.g. the record a detail page shows), read, updated and
   * removed through your handlers. */
  class SingleItemCollection extends Collection {
    constructor(readHandler, updateHandler, removeHandler) {
      super();
      this.readHandler = readHandler;
      this.updateHandler = updateHandler;
      this.removeHandler = removeHandler || function () {};
    }
    insert() { logError("snorky: insert delta for a SingleItemCollection ignored"); }
    getIterator() { return new SingleItemIterator(this); }
  }

  /* Applies deltas to collections: {ModelName: collection, ...}.
   * Items are matched by options.itemsAreEqual(item, data), default by `id`.
   * Use: datasync.deltaReceived.add(processor.processDelta, processor) */
  class CollectionDeltaProcessor {
    constructor(collections, options) {
      this.collections = collections || {};
      this.processed = new Signal();  // (delta, collection) after each delta
      if (options && options.itemsAreEqual) { this.itemsAreEqual = options.itemsAreEqual; }
    }

    itemsAreEqual(item, other) {
      return item.id === other.id;
    }

    _find(iter, data) {
      while (iter.hasNext()) {
        if (this.itemsAreEqual(iter.next(), data)) { return true; }
      }
      return false;
    }

    processDelta(delta) {
      var collection = this.collections[delta.model];
      if (!collection) {
        logError("snorky: delta for an unregistered model: " + delta.model);
        return;
      }
      var iter;
      if (delta.type === "insert") {
        collection.insert(delta.data);
      } else if (delta.type === "update") {
        iter = collection.getIterator();
        if (this._find(iter, delta.oldData)) { iter.update(delta.newData); }
      } else if (delta.type === "delete") {
        iter = collection.getIterator();
        if (this._find(iter, delta.data)) { iter.remove(); }
      } else {
        logError("snorky: delta of unknown type: " + delta.type);
        return;
      }
      this.processed.dispatch(delta, collection);
    }
  }

  DataSync.Collection = Collection;
  DataSync.ArrayCollection = ArrayCollection;
  DataSync.ArrayIterator = ArrayIterator;
  DataSync.SingleItemCollection = SingleItemCollection;
  DataSync.SingleItemIterator = SingleItemIterator;
  DataSync.CollectionDeltaProcessor = CollectionDeltaProcessor;

  Snorky.Signal = Signal;
  Snorky.Service = Service;
  Snorky.RPCService = RPCService;
  Snorky.PubSub = PubSub;
  Snorky.Chat = Chat;
  Snorky.Cursors = Cursors;
  Snorky.Messaging = Messaging;
  Snorky.DataSync = DataSync;
  Snorky.stableStringify = stableStringify;
  Snorky.version = "0.2.0";
  return Snorky;
});
