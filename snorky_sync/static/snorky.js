/*! snorky.js — the browser (and Node) client of snorky_sync.
 *
 * Speaks the Snorky 0.1 wire protocol (docs/protocol.md): every frame is
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
 * Snorky.js 0.1's whole public API is here, and code written for 0.1 runs
 * unchanged: Snorky.Class (my.class semantics: constructor, STATIC, parent,
 * mixins), Snorky.Signal (js-signals' API), a replaceable Snorky.Promise,
 * Snorky.Service / RPCService (plain constructor functions, so
 * `Snorky.RPCService.call(this, ...)` and
 * `Snorky.RPCService.prototype.init.call(this)` work), the connectors
 * PubSub, Chat, Messaging, Cursors (Document, Cursor, OwnCursor,
 * ForeignCursor) and DataSync (CollectionDeltaProcessor, Collection,
 * ArrayCollection, SingleItemCollection and their iterators), Snorky._,
 * stableStringify / CycleError, with 0.1's error and warning texts.
 *
 * Beyond Snorky 0.1: reconnection with exponential backoff and jitter; after
 * reconnecting, connectors restore what the page had (pubsub subscriptions,
 * chat channels, cursor documents and own cursors, messaging names); RPC
 * calls in flight when the connection drops reject with "Connection lost";
 * an optional call timeout (`callTimeout`, off by default as in 0.1);
 * close() stops reconnecting; a listener that throws does not stop the other
 * listeners of a signal.
 *
 * This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0.
 */
(function (root, factory) {
  "use strict";
  var Snorky = factory(root);
  if (typeof module === "object" && module && module.exports) {
    module.exports = Snorky;
  }
  if (root) {
    root.Snorky = Snorky;
    // Snorky 0.1's bundle also defined these globals (my.class, js-signals,
    // its stable stringify); pages written for it may use them.
    if (root.my === undefined) { root.my = {Class: Snorky.Class, extendClass: Snorky.Class.extendClass}; }
    if (root.signals === undefined) { root.signals = Snorky.Signal; }
    if (root.stableStringify === undefined) { root.stableStringify = Snorky.stableStringify; }
    if (root.CycleError === undefined) { root.CycleError = Snorky.CycleError; }
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function (root) {
  "use strict";

  root = root || {};
  var hasOwn = Object.prototype.hasOwnProperty;

  function logError() {
    if (typeof console !== "undefined" && console.error) {
      console.error.apply(console, arguments);
    }
  }

  /* ------------------------------------------------------------------ */
  /* Class: my.class semantics (Snorky 0.1's class library).             */
  /*                                                                     */
  /*   Class(body) / Class(Parent, body) / Class(Parent, Mixin..., body)  */
  /* body.constructor is the constructor (default: call the parent's);   */
  /* body.STATIC holds static members; the parent's statics are copied   */
  /* (unless redefined), and so are the mixins' prototype members that   */
  /* the class does not already have.  Klass.Super is the parent.        */

  function extend(target, source, override) {
    var prop;
    if (override === false) {
      for (prop in source) {
        if (!(prop in target)) { target[prop] = source[prop]; }
      }
    } else {
      for (prop in source) { target[prop] = source[prop]; }
      if (source.toString !== Object.prototype.toString) { target.toString = source.toString; }
    }
  }

  function extendClass(Klass, extension, override) {
    var members = {};
    for (var key in extension) {
      if (key !== "STATIC" && key !== "constructor") { members[key] = extension[key]; }
    }
    if (hasOwn.call(extension, "toString")) { members.toString = extension.toString; }
    if (extension.STATIC) { extend(Klass, extension.STATIC, override); }
    extend(Klass.prototype, members, override);
  }

  function describe(value) {
    if (value === null) { return "null"; }
    if (typeof value === "function") { return "function " + (value.name || "(anonymous)"); }
    if (typeof value === "string") { return JSON.stringify(value); }
    return typeof value;
  }

  function Class() {
    var len = arguments.length;
    var body = arguments[len - 1];
    var Parent = len > 1 ? arguments[0] : null;
    if (!body || typeof body !== "object") {
      throw new TypeError("Snorky.Class: the last argument must be the class body (an object), got " +
                          describe(body));
    }
    if (len > 1 && typeof Parent !== "function") {
      throw new TypeError("Snorky.Class: the parent class must be a constructor function, got " +
                          describe(Parent));
    }
    var Klass;
    if (hasOwn.call(body, "constructor") && body.constructor !== Object) {
      Klass = body.constructor;
      if (typeof Klass !== "function") {
        throw new TypeError("Snorky.Class: constructor must be a function, got " + describe(Klass));
      }
    } else if (Parent) {
      Klass = function () { return Parent.apply(this, arguments); };
    } else {
      Klass = function () {};
    }
    if (Parent) {
      Klass.prototype = Object.create(Parent.prototype);
      Object.defineProperty(Klass.prototype, "constructor",
                            {value: Klass, writable: true, configurable: true});
      Klass.Super = Parent;
      extend(Klass, Parent, false);  // inherit static members
    }
    for (var i = 1; i < len - 1; i++) {
      if (typeof arguments[i] !== "function") {
        throw new TypeError("Snorky.Class: mixin " + i + " must be a class, got " + describe(arguments[i]));
      }
      extend(Klass.prototype, arguments[i].prototype, false);
    }
    extendClass(Klass, body);
    return Klass;
  }
  Class.extendClass = extendClass;

  /* true when `self` is a class's prototype object rather than an instance
   * (0.1's docs call `Snorky.RPCService.prototype.init()` without .call). */
  function isPrototypeObject(self) {
    return !self || (typeof self.constructor === "function" && self.constructor.prototype === self);
  }

  /* ------------------------------------------------------------------ */
  /* Snorky._: 0.1's minimal lodash-style helpers.                        */

  var _ = {
    each: function (collection, callback, thisArg) {
      for (var key in collection) {
        if (callback.call(thisArg, collection[key], key, collection) === false) { break; }
      }
    },
    assign: function (object, source) {
      for (var key in source) { object[key] = source[key]; }
      return object;
    },
    defaults: function (object, source) {
      object = object || {};
      for (var key in source) {
        if (!(key in object)) { object[key] = source[key]; }
      }
      return object;
    },
    map: function (array, callback, thisArg) {
      var out = [];
      _.each(array, function (value) { out.push(callback.call(thisArg, value)); });
      return out;
    },
    keys: function (object) {
      var out = [];
      for (var key in object) { out.push(key); }
      return out;
    },
    findIndex: function (array, callback, thisArg) {
      var found;
      _.each(array, function (value, index) {
        if (callback.call(thisArg, value)) { found = index; return false; }
      });
      return found;
    },
    find: function (array, callback, thisArg) {
      var index = _.findIndex(array, callback, thisArg);
      return index === undefined ? undefined : array[index];
    },
    remove: function (array, callback, thisArg) {
      var removed = [];
      for (var i = 0; i < array.length; i++) {
        if (callback.call(thisArg, array[i])) {
          removed.push(array[i]);
          array.splice(i--, 1);
        }
      }
      return removed;
    },
    isArray: function (thing) {
      return Object.prototype.toString.call(thing) === "[object Array]";
    },
    indexOf: function (haystack, needle) {
      for (var i = 0; i < haystack.length; i++) {
        if (haystack[i] === needle) { return i; }
      }
      return -1;
    },
    "in": function (haystack, needle) {
      return _.isArray(haystack) ? _.indexOf(haystack, needle) !== -1 : (needle in haystack);
    },
    subset: function (object, allowedKeys, errorFn) {
      errorFn = errorFn || function () {};
      _.each(object, function (value, key) {
        if (!_["in"](allowedKeys, key)) { errorFn(key, value); }
      });
    },
    /* Replaces the elements for which callback() is true with newValue;
     * returns the (last) element replaced. */
    replace: function (array, newValue, callback, thisArg) {
      var replaced;
      _.each(array, function (value, index) {
        if (callback.call(thisArg, value)) {
          array[index] = newValue;
          replaced = value;
        }
      });
      return replaced;
    },
    /* A predicate: does an object have the same `fieldName` as `object`? */
    field: function (fieldName, object) {
      return function (other) {
        return other[fieldName] == object[fieldName];  // eslint-disable-line eqeqeq
      };
    },
    replaceOnField: function (fieldName, array, newValue) {
      return _.replace(array, newValue, _.field(fieldName, newValue));
    },
    removeOnField: function (fieldName, array, needle) {
      return _.remove(array, _.field(fieldName, needle));
    },
    /* true if every key of smallObject has the same value in bigObject */
    isEqualRight: function (bigObject, smallObject) {
      for (var key in smallObject) {
        if (bigObject[key] !== smallObject[key]) { return false; }
      }
      return true;
    }
  };

  /* ------------------------------------------------------------------ */
  /* stableStringify: JSON with sorted object keys, the client-side      */
  /* identity of a channel or document (the server compares by value).   */

  function CycleError() {
    this.name = "CycleError";
    this.message = "Cycles are not allowed";
    this.stack = (new Error(this.message)).stack;
  }
  CycleError.prototype = Object.create(Error.prototype);
  CycleError.prototype.constructor = CycleError;

  function stableStringify(value) {
    var ancestors = [];
    function walk(node, inArray) {
      if (node && typeof node.toJSON === "function") { node = node.toJSON(); }
      if (node === undefined || typeof node === "function" || typeof node === "symbol") {
        return inArray ? "null" : undefined;
      }
      if (node === null || typeof node !== "object") { return JSON.stringify(node); }
      if (ancestors.indexOf(node) !== -1) { throw new CycleError(); }
      ancestors.push(node);
      try {
        if (Array.isArray(node)) {
          return "[" + node.map(function (item) { return walk(item, true); }).join(",") + "]";
        }
        var items = [];
        Object.keys(node).sort().forEach(function (key) {
          var text = walk(node[key], false);
          if (text !== undefined) { items.push(JSON.stringify(key) + ":" + text); }
        });
        return "{" + items.join(",") + "}";
      } finally {
        ancestors.pop();
      }
    }
    return walk(value, false);
  }

  /* ------------------------------------------------------------------ */
  /* Signals: js-signals' API (what Snorky 0.1 used).                    */

  function validateListener(listener, fnName) {
    if (typeof listener !== "function") {
      throw new Error("listener is a required param of {fn}() and should be a Function.".replace("{fn}", fnName));
    }
  }

  function SignalBinding(signal, listener, isOnce, listenerContext, priority) {
    this._listener = listener;
    this._isOnce = isOnce;
    this.context = listenerContext;
    this._signal = signal;
    this._priority = priority || 0;
  }
  SignalBinding.prototype = {
    constructor: SignalBinding,
    active: true,
    params: null,
    /* Calls the listener.  A listener that throws is reported on the
     * console and does not stop the signal's other listeners. */
    execute: function (paramsArr) {
      var result;
      if (this.active && this._listener) {
        var params = this.params ? this.params.concat(paramsArr) : paramsArr;
        var listener = this._listener;
        var context = this.context;
        if (this._isOnce) { this.detach(); }
        try {
          result = listener.apply(context, params);
        } catch (err) {
          logError("snorky: a signal listener threw", err);
        }
      }
      return result;
    },
    detach: function () {
      return this.isBound() ? this._signal.remove(this._listener, this.context) : null;
    },
    isBound: function () { return !!this._signal && !!this._listener; },
    isOnce: function () { return this._isOnce; },
    getListener: function () { return this._listener; },
    getSignal: function () { return this._signal; },
    _destroy: function () {
      delete this._signal;
      delete this._listener;
      delete this.context;
    },
    toString: function () {
      return "[SignalBinding isOnce:" + this._isOnce + ", isBound:" + this.isBound() +
        ", active:" + this.active + "]";
    }
  };

  function Signal() {
    this._bindings = [];
    this._prevParams = null;
    // dispatch always works on this signal, even passed around as a callback
    var self = this;
    this.dispatch = function () { Signal.prototype.dispatch.apply(self, arguments); };
  }
  Signal.prototype = {
    constructor: Signal,
    VERSION: "1.0.0",
    memorize: false,
    _shouldPropagate: true,
    active: true,

    _registerListener: function (listener, isOnce, listenerContext, priority) {
      var index = this._indexOfListener(listener, listenerContext);
      var binding;
      if (index !== -1) {
        binding = this._bindings[index];
        if (binding.isOnce() !== isOnce) {
          throw new Error("You cannot add" + (isOnce ? "" : "Once") + "() then add" + (!isOnce ? "" : "Once") +
                          "() the same listener without removing the relationship first.");
        }
      } else {
        binding = new SignalBinding(this, listener, isOnce, listenerContext, priority);
        this._addBinding(binding);
      }
      if (this.memorize && this._prevParams) { binding.execute(this._prevParams); }
      return binding;
    },

    _addBinding: function (binding) {
      // higher priority first; equal priorities in the order they were added
      var i = this._bindings.length;
      while (i > 0 && this._bindings[i - 1]._priority < binding._priority) { i--; }
      this._bindings.splice(i, 0, binding);
    },

    _indexOfListener: function (listener, context) {
      for (var i = this._bindings.length - 1; i >= 0; i--) {
        var b = this._bindings[i];
        if (b._listener === listener && b.context === context) { return i; }
      }
      return -1;
    },

    has: function (listener, context) {
      return this._indexOfListener(listener, context) !== -1;
    },

    /* add(listener, context, priority) -> SignalBinding */
    add: function (listener, listenerContext, priority) {
      validateListener(listener, "add");
      return this._registerListener(listener, false, listenerContext, priority);
    },

    addOnce: function (listener, listenerContext, priority) {
      validateListener(listener, "addOnce");
      return this._registerListener(listener, true, listenerContext, priority);
    },

    remove: function (listener, context) {
      validateListener(listener, "remove");
      var i = this._indexOfListener(listener, context);
      if (i !== -1) {
        this._bindings[i]._destroy();
        this._bindings.splice(i, 1);
      }
      return listener;
    },

    removeAll: function () {
      for (var i = this._bindings.length - 1; i >= 0; i--) { this._bindings[i]._destroy(); }
      this._bindings.length = 0;
    },

    getNumListeners: function () { return this._bindings.length; },

    /* Stops the dispatch in progress (the remaining listeners are skipped). */
    halt: function () { this._shouldPropagate = false; },

    /* Calls every listener with the arguments, highest priority first; a
     * listener returning false stops the dispatch. */
    dispatch: function () {
      if (!this.active) { return; }
      var params = Array.prototype.slice.call(arguments);
      if (this.memorize) { this._prevParams = params; }
      var bindings = this._bindings.slice();
      this._shouldPropagate = true;
      for (var i = 0; i < bindings.length && this._shouldPropagate; i++) {
        if (bindings[i].execute(params) === false) { break; }
      }
    },

    forget: function () { this._prevParams = null; },

    dispose: function () {
      this.removeAll();
      delete this._bindings;
      delete this._prevParams;
    },

    toString: function () {
      return "[Signal active:" + this.active + " numListeners:" + this.getNumListeners() + "]";
    }
  };
  Signal.Signal = Signal;  // js-signals' namespace alias (signals.Signal)

  /* ------------------------------------------------------------------ */
  /* The connection.                                                     */

  var DEFAULTS = {
    debug: false,
    reconnect: true,          // reconnect after an unexpected close
    reconnectDelay: 500,      // ms before the first retry
    maxReconnectDelay: 15000, // cap of the exponential backoff
    protocols: undefined,     // WebSocket sub-protocols, if any
    // ms an RPC call waits for its answer once sent, then rejects with an
    // Error naming the service and command (0: it waits for ever, as in 0.1).
    // A service's own `callTimeout` property wins.  With debug on, a call
    // still unanswered after callTimeout (or 10 s when 0) is also warned about.
    callTimeout: 0,
    openTimeout: 10000,       // ms a socket may take to open before it counts as failed
    // SockJS fallback, used when a WebSocket cannot be opened (refused, or no
    // open within openTimeout): the SockJS class (default: the page's
    // sockjs-client, window.SockJS) and its address (a string, or a function
    // of the WebSocket address; default: same host, "/sockjs", same query
    // string).  fallback: false turns it off.
    fallback: true,
    sockjsClass: undefined,
    sockjsAddress: undefined,
    sockjsOptions: undefined, // options for new SockJS(url, null, options), e.g. {transports: [...]}
    // In-band token refresh (docs/protocol.md section 6), for endpoints that
    // close expired connections (4001): getToken() returns a fresh token (a
    // string, or a Promise of one); snorky.js sends it tokenRefreshMargin
    // seconds before the connection's token expires (and once after an open
    // whose expiry it does not know yet), and puts the newest token in the
    // ?token= (tokenParam) of a string address for reconnections.
    getToken: undefined,
    tokenRefreshMargin: 30,
    tokenParam: "token"
  };

  /* getToken()'s answer as something with .then (a token string answers at once) */
  function tokenOf(getToken) {
    var value;
    try {
      value = getToken();
    } catch (err) {
      return {then: function (onOk, onErr) { if (onErr) { onErr(err); } return this; }};
    }
    if (value && typeof value.then === "function") { return value; }
    return {then: function (onOk) {
      var result = onOk(value);
      return {then: function (f) { f(result); return this; }};
    }};
  }

  /* url with ?param=token (replacing one already there) */
  function withToken(url, param, token) {
    var s = String(url), hash = "", at = s.indexOf("#");
    if (at >= 0) { hash = s.slice(at); s = s.slice(0, at); }
    var q = s.indexOf("?"), name = encodeURIComponent(param);
    var kept = q < 0 ? [] : s.slice(q + 1).split("&").filter(function (kv) {
      return kv !== "" && kv.split("=")[0] !== name;
    });
    kept.push(name + "=" + encodeURIComponent(token));
    return (q < 0 ? s : s.slice(0, q)) + "?" + kept.join("&") + hash;
  }

  /* ws(s)://host/path?query -> http(s)://host/sockjs?query */
  function sockjsAddressFor(url) {
    var m = /^(wss?):\/\/([^\/?#]+)[^?#]*(\?[^#]*)?/.exec(String(url));
    if (!m) { return url; }
    return (m[1] === "wss" ? "https://" : "http://") + m[2] + "/sockjs" + (m[3] || "");
  }

  function isServiceClass(value) {
    var Base = Snorky.Service;
    return typeof value === "function" && (value === Base || value.prototype instanceof Base);
  }

  var Snorky = Class({
    /* new Snorky(socketClass, address, {name: ServiceClass, ...}, options)
     *  socketClass: WebSocket, SockJS, or any class with that interface.
     *  address: a ws:// or wss:// address (http(s):// for SockJS), or a
     *       function returning one or a Promise of one (called at every
     *       (re)connection, e.g. to fetch a fresh connection token).
     *  options: {debug, reconnect, reconnectDelay, maxReconnectDelay,
     *       protocols, callTimeout, ...: see DEFAULTS}; a boolean is taken
     *       as `debug` (as early 0.1 did). */
    constructor: function (socketClass, address, services, options) {
      if (typeof socketClass !== "function") {
        throw new TypeError("Snorky: the first argument is the WebSocket class");
      }
      if (typeof options === "boolean") {
        options = {debug: options};
      }
      if (services !== undefined && services !== null && typeof services !== "object") {
        throw new TypeError("Snorky: services must be an object {name: ServiceClass}, got " +
                            describe(services));
      }
      var name;
      for (name in services || {}) {
        if (hasOwn.call(services, name) && !isServiceClass(services[name])) {
          throw new TypeError('Snorky: service "' + name + '" is not a Snorky.Service class (got ' +
                              describe(services[name]) + ")");
        }
      }
      this.options = _.assign(_.assign({}, DEFAULTS), options || {});
      this.socketClass = socketClass;
      this.address = address;
      this.debug = !!this.options.debug;

      this.isConnected = false;
      this.isConnecting = false;       // a socket is being opened
      this.isReconnecting = false;     // lost: waiting to try again
      this.closed = false;             // close() was called
      this.reconnectAttempts = 0;
      this.connectionCount = 0;        // successful opens so far

      this._socket = null;
      this._queuedMessages = [];
      this._timer = null;
      this._openTimer = null;
      this.transport = null;           // "websocket", or "sockjs:<its transport>" once open
      this.onFallback = false;         // true once a WebSocket failed and SockJS took over
      this.transportChanged = new Snorky.Signal();  // dispatch(transport) on each open

      this.connected = new Snorky.Signal();     // dispatch(isReconnection)
      this.disconnected = new Snorky.Signal();  // dispatch({code, reason, willReconnect})

      this.services = {};
      for (name in services || {}) {
        if (hasOwn.call(services, name)) {
          this.services[name] = new services[name](name, this);
        }
      }
      this._token = null;              // getToken: the newest token, its expiry (s), the call
      this._tokenExpires = null;
      this._tokenCall = null;
      this._tokenTimer = null;
      this._tokenCalls = 0;
      this._connect();
    },

    /* console.debug(...) when debug is on (a format string works). */
    logDebug: function () {
      if (this.debug && typeof console !== "undefined") {
        var out = console.debug || console.log;
        if (out) { out.apply(console, arguments); }
      }
    },

    /* Opens the connection (the constructor does).  After close() /
     * disconnect(), connect() opens a new one. */
    connect: function () {
      this.closed = false;
      this._connect();
    },

    _connect: function () {
      if (this._socket || this.closed) {
        return;
      }
      if (this._timer) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      var url = typeof this.address === "function" ? this.address() : this.address;
      var self = this;
      if (typeof this.options.getToken === "function" && typeof url === "string" && this.connectionCount > 0) {
        url = this._tokenAddress(url);
      }
      this.isConnecting = true;
      if (url && typeof url.then === "function") {
        // an address function may answer later, e.g. after fetching a fresh token
        var placeholder = this._socket = {pending: true, close: function () {}};
        url.then(function (resolved) {
          if (self._socket !== placeholder) { return; }  // closed meanwhile
          self._socket = null;
          self._open(resolved);
        }, function (err) {
          if (self._socket !== placeholder) { return; }
          self.logDebug("Snorky: the address function failed", err);
          self._socket = null;
          self._onClose({code: 1006, reason: "no address: " + (err && err.message)});
        });
        return;
      }
      this._open(url);
    },

    /* getToken: a reconnection's address carries the newest token, or a
     * fresh one (a Promise of the address) when that one is near its expiry. */
    _tokenAddress: function (url) {
      var self = this, param = this.options.tokenParam;
      if (this._token && this._tokenExpires &&
          this._tokenExpires * 1000 - Date.now() > this.options.tokenRefreshMargin * 1000) {
        return withToken(url, param, this._token);
      }
      return tokenOf(this.options.getToken).then(function (token) {
        self._token = token;
        self._tokenExpires = null;  // learnt from the refresh that follows the open
        return withToken(url, param, token);
      });
    },

    _scheduleTokenRefresh: function () {
      var self = this, left = this._tokenExpires === null ? 0
        : this._tokenExpires * 1000 - Date.now() - this.options.tokenRefreshMargin * 1000;
      clearTimeout(this._tokenTimer);
      this._tokenTimer = setTimeout(function () {
        self._tokenTimer = null;
        self.refreshToken();
      }, Math.max(0, left));
    },

    /* Sends getToken()'s token now (the refresh); the next one is scheduled
     * from the answer's expiry.  A refused token is logged: the connection
     * then ends at its old expiry (4001) and reconnects with a fresh one. */
    refreshToken: function () {
      var self = this, socket = this._socket;
      if (typeof this.options.getToken !== "function" || !this.isConnected) { return; }
      tokenOf(this.options.getToken).then(function (token) {
        if (self._socket !== socket || !self.isConnected) { return; }  // its reconnection refreshes
        self._tokenCall = {callId: "token-" + (++self._tokenCalls), token: token};
        self._sendServiceMessage("token", {command: "refresh", params: {token: token},
                                           callId: self._tokenCall.callId});
      }, function (err) {
        logError("snorky: getToken failed", err);
      });
    },

    _tokenAnswered: function (message) {
      var call = this._tokenCall;
      if (!call || !message || message.callId !== call.callId) { return false; }
      this._tokenCall = null;
      if (message.type !== "response") {
        logError("snorky: token refresh refused:", message.message);
        return true;
      }
      this._token = call.token;
      this._tokenExpires = message.data && typeof message.data.expires === "number"
        ? message.data.expires : null;
      this.logDebug("Snorky: token refreshed, expires", this._tokenExpires);
      if (this._tokenExpires !== null) { this._scheduleTokenRefresh(); }
      return true;
    },

    /* The SockJS class to fall back to, or null: only for a page that asked
     * for the browser's WebSocket (or named a sockjsClass), and only until a
     * first connection has opened (a later failure is the server, not a proxy). */
    _fallbackClass: function () {
      if (this.options.fallback === false || this.connectionCount > 0) { return null; }
      return this._sockjsClass();
    },

    /* The SockJS class of this page (its sockjsClass, or the global SockJS), or
     * null when there is none or the page's own socket class is that one. */
    _sockjsClass: function () {
      var opts = this.options;
      if (!opts.sockjsClass && this.socketClass !== root.WebSocket) { return null; }
      var cls = opts.sockjsClass || root.SockJS;
      if (typeof cls !== "function" || cls === this.socketClass) { return null; }
      return cls;
    },

    _open: function (url) {
      var self = this;
      var socket;
      if (this.onFallback && !this._sockjsClass()) {
        this.onFallback = false;  // the SockJS class went away: back to the page's own
      }
      if (this.onFallback) {
        // once fallen back, every reconnection uses SockJS too (it works from here)
        var Fallback = this._sockjsClass();
        var addr = this.options.sockjsAddress;
        var target = typeof addr === "function" ? addr(url) : (addr || sockjsAddressFor(url));
        this.logDebug("Snorky: connecting with SockJS to", target);
        socket = new Fallback(target, null, this.options.sockjsOptions);
      } else {
        socket = this.options.protocols === undefined
          ? new this.socketClass(url)
          : new this.socketClass(url, this.options.protocols);
      }
      this._socket = socket;
      if (this.options.openTimeout > 0) {
        this._openTimer = setTimeout(function () {
          self._openTimer = null;
          if (self._socket === socket && !self.isConnected) {
            self.logDebug("Snorky: no open within", self.options.openTimeout, "ms");
            try { socket.close(); } catch (err) { /* never opened */ }
            self._onClose({code: 1006, reason: "open timeout"});
          }
        }, this.options.openTimeout);
      }
      socket.onopen = function () {
        if (self._socket === socket) {
          // a SockJS socket names its transport once open (0.1's pages pass SockJS itself)
          self.transport = typeof socket.transport === "string" ? "sockjs:" + socket.transport
            : (self.onFallback ? "sockjs" : "websocket");
          self._onOpen();
        }
      };
      socket.onmessage = function (event) {
        if (self._socket === socket) { self._onMessage(event); }
      };
      socket.onclose = function (event) {
        if (self._socket === socket) { self._onClose(event || {}); }
      };
      socket.onerror = function () {
        self.logDebug("Snorky socket error");
        // A connection that fails before opening: some WebSocket
        // implementations (Node 20's) fire no close event after it.
        if (self._socket === socket && !self.isConnected) {
          try { socket.close(); } catch (err) { /* never opened */ }
          self._onClose({code: 1006, reason: "connection failed"});
        }
      };
    },

    /* Closes the connection for good: no reconnection; queued messages are
     * dropped and pending calls reject with "Connection closed". */
    close: function () {
      this.closed = true;
      this.isReconnecting = false;
      if (this._timer) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      this._clearOpenTimer();
      var socket = this._socket;
      if (socket) {
        this._socket = null;
        try { socket.close(1000); } catch (err) { /* already closing */ }
        this._lost({code: 1000, reason: "closed by the client", willReconnect: false},
                   "Connection closed");
      }
      this._closedForGood("Connection closed");
    },

    disconnect: function () {  // Snorky 0.1's name
      this.close();
    },

    _eachService: function (method, arg) {
      for (var name in this.services) {
        try {
          this.services[name][method](arg);
        } catch (err) {
          logError("snorky: service " + name + " failed in " + method, err);
        }
      }
    },

    _clearOpenTimer: function () {
      if (this._openTimer) {
        clearTimeout(this._openTimer);
        this._openTimer = null;
      }
    },

    _onOpen: function () {
      this._clearOpenTimer();
      var isReconnection = this.connectionCount > 0;
      this.isConnected = true;
      this.isConnecting = false;
      this.isReconnecting = false;
      this.reconnectAttempts = 0;
      this.connectionCount += 1;
      this.logDebug(isReconnection ? "Reconnected to Snorky server." : "Connected to Snorky server.");
      // Restore first (pubsub subscriptions, chat channels, ...), then send
      // what the page queued while offline, in order.
      this._eachService("_connectionOpened", isReconnection);
      var queue = this._queuedMessages;
      this._queuedMessages = [];
      for (var i = 0; i < queue.length; i++) {
        this._socket.send(queue[i]);
      }
      this._eachService("_queueFlushed");
      if (typeof this.options.getToken === "function") { this._scheduleTokenRefresh(); }
      if (this.onFallback) { this.logDebug("Snorky: transport", this.transport); }
      this.transportChanged.dispatch(this.transport);
      this.connected.dispatch(isReconnection);
      if (typeof this.onConnected === "function") { Snorky.emitEvent(this.onConnected.bind(this)); }
    },

    _onMessage: function (event) {
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
      if (packet.service === "token" && this._tokenAnswered(packet.message)) { return; }
      var service = hasOwn.call(this.services, packet.service) ? this.services[packet.service] : null;
      if (service) {
        service.packetReceived.dispatch(packet.message);
      } else {
        this.logDebug("Snorky: frame for an unknown service", packet.service);
      }
    },

    _onClose: function (event) {
      this._clearOpenTimer();
      this._socket = null;
      if (!this.isConnected && !this.onFallback && !this.closed && this._fallbackClass()) {
        // the WebSocket never opened (refused, blocked by a proxy, timed
        // out): try SockJS at once, and keep using it from now on
        this.onFallback = true;
        this.isConnecting = false;
        this.logDebug("Snorky: WebSocket failed (" + (event.reason || event.code) +
                      "); falling back to SockJS");
        this._connect();
        return;
      }
      // 4003: the server said "do not reconnect" (the backend's control.disconnect)
      var willReconnect = !this.closed && this.options.reconnect && event.code !== 4003;
      this._lost({code: event.code, reason: event.reason, willReconnect: willReconnect},
                 "Connection lost");
      if (willReconnect) {
        this._scheduleReconnect();
      } else {
        this._closedForGood("Connection closed");
      }
    },

    _lost: function (info, errorText) {
      var wasConnected = this.isConnected;
      clearTimeout(this._tokenTimer);
      this._tokenTimer = this._tokenCall = null;
      this.isConnected = false;
      this.isConnecting = false;
      this._eachService("_connectionLost", errorText);
      this.logDebug("Snorky disconnected", info);
      // a failed reconnection attempt is not news; the end of a connection,
      // or of trying, is
      if (wasConnected || !info.willReconnect) {
        this.disconnected.dispatch(info);
        if (typeof this.onDisconnected === "function") { Snorky.emitEvent(this.onDisconnected.bind(this)); }
      }
    },

    _closedForGood: function (errorText) {
      this.isReconnecting = false;
      this._queuedMessages = [];
      this._eachService("_connectionClosed", errorText);
    },

    /* Delay before reconnection attempt n: exponential, capped, with jitter
     * (half fixed, half random) so that thousands of pages reconnecting
     * after a restart do not arrive in one burst. */
    nextReconnectDelay: function () {
      var base = this.options.reconnectDelay * Math.pow(2, this.reconnectAttempts);
      var capped = Math.min(this.options.maxReconnectDelay, base);
      return Math.round(capped / 2 + Math.random() * capped / 2);
    },

    _scheduleReconnect: function () {
      var delay = this.nextReconnectDelay();
      var self = this;
      this.reconnectAttempts += 1;
      this.isReconnecting = true;
      this.logDebug("Snorky: reconnecting in", delay, "ms");
      this._timer = setTimeout(function () {
        self._timer = null;
        self._connect();
      }, delay);
    },

    /* Sends an envelope now, or queues it until the socket is open.
     * Returns true if it was sent now. */
    _sendServiceMessage: function (serviceName, message) {
      var raw = JSON.stringify({service: serviceName, message: message});
      if (this.isConnected) {
        this.logDebug("Snorky: sending", raw);
        this._socket.send(raw);
        return true;
      }
      if (!this.closed) {
        this._queuedMessages.push(raw);
      } else {
        this.logDebug("Snorky: closed, message dropped", raw);
      }
      return false;
    },

    STATIC: {
      /* ws(s)://<this page's host><path>: the usual address in a browser. */
      defaultUrl: function (path) {
        var loc = root.location;
        return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + (path || "/ws");
      }
    }
  });

  // the queue's name in earlier snorky_sync releases
  Object.defineProperty(Snorky.prototype, "_queue", {
    get: function () { return this._queuedMessages; }
  });

  Snorky.Class = Class;
  Snorky._ = _;
  Snorky.Signal = Signal;
  Snorky.SignalBinding = SignalBinding;
  // Replaceable (e.g. by an Angular $q adapter): read at every call.
  Snorky.Promise = root.Promise;
  Snorky.stableStringify = stableStringify;
  Snorky.CycleError = CycleError;
  Snorky.version = "0.2.0";

  /* Calls a user callback (onConnected, onMessagePublished, ...).  A
   * framework may replace it to wrap callbacks (e.g. in a digest cycle). */
  Snorky.emitEvent = function (callback) {
    var args = Array.prototype.slice.call(arguments, 1);
    if (typeof callback === "function") { callback.apply(undefined, args); }
  };

  function newPromise(executor) {
    var P = Snorky.Promise;
    return new P(executor);
  }

  function resolved(value) {
    return newPromise(function (resolve) { resolve(value); });
  }

  /* ------------------------------------------------------------------ */
  /* Services.                                                           */

  Snorky.Service = Class({
    constructor: function (name, snorky) {
      if (typeof name !== "string" || !snorky) {
        throw new TypeError("Bad arguments for service constructor");
      }
      this.name = name;
      this.snorky = snorky;
      this.packetReceived = new Snorky.Signal();
      this._prepare();
      this.init();
    },

    /* Wires the service's own listeners before init() runs. */
    _prepare: function () {
      var self = this;
      this.packetReceived.add(function (message) { self.onMessage(message); });
    },

    /* Initialization hook for subclasses (listen to events, create
     * attributes...). */
    init: function () {},

    sendMessage: function (message) {
      return this.snorky._sendServiceMessage(this.name, message);
    },

    /* Every message for a plain Service (RPC services use onPacket). */
    onMessage: function (message) {},

    /* Called on every open; isReconnection is true after a reconnection.
     * Connectors override restore() to restore their state. */
    _connectionOpened: function (isReconnection) {
      if (isReconnection) { this.restore(); }
    },
    restore: function () {},
    _queueFlushed: function () {},
    _connectionLost: function (errorText) {},
    _connectionClosed: function (errorText) {}
  });
  var Service = Snorky.Service;

  // debug mode: how long a call may go unanswered before a console warning
  // when no callTimeout is set
  var DEBUG_CALL_WARNING = 10000;

  function warn() {
    if (typeof console !== "undefined" && console.warn) { console.warn.apply(console, arguments); }
  }

  Snorky.RPCService = Class(Service, {
    _prepare: function () {
      this.nextCallId = 0;
      this.calls = {};  // callId -> {resolve, reject, command, sent, timer}
      this.notificationReceived = new Snorky.Signal();
      this.packetReceived.add(this.onPacket, this);
    },

    /* 0.1's subclasses call `Snorky.RPCService.prototype.init.call(this)`
     * from their init(); the state is already there (and that call is
     * harmless on the prototype itself, as 0.1's doc example makes it). */
    init: function () {
      if (isPrototypeObject(this)) { return; }
      if (!hasOwn.call(this, "calls")) {
        this.nextCallId = 0;
        this.calls = {};
      }
      if (!hasOwn.call(this, "notificationReceived")) { this.notificationReceived = new Snorky.Signal(); }
      if (!hasOwn.call(this, "packetReceived")) { this.packetReceived = new Snorky.Signal(); }
      this.packetReceived.add(this.onPacket, this);  // once: same listener and context
    },

    /* Calls `command` with `params` (an object).  Returns a Snorky.Promise
     * fulfilled with the response's data, or rejected with an Error whose
     * message is the server's error text (e.g. "Already subscribed"), or
     * "Connection lost" when the connection drops before the answer.  A
     * call made while offline is queued and sent when the connection opens. */
    rpcCall: function (command, params) {
      var self = this;
      return newPromise(function (resolve, reject) {
        var callId = self.nextCallId++;
        var entry = {resolve: resolve, reject: reject, command: command, sent: false};
        self.calls[callId] = entry;
        self.sendMessage({command: command, params: params || {}, callId: callId});
        var snorky = self.snorky;
        if (snorky && snorky.isConnected) {
          entry.sent = true;
          self._armCall(callId, entry);
        } else if (snorky && snorky.closed) {
          delete self.calls[callId];
          reject(new Error("Connection closed"));
        }
      });
    },

    call: function (command, params) {  // name of early 0.1 releases
      return this.rpcCall(command, params);
    },

    /* ms this service's calls wait for an answer once sent: its own
     * `callTimeout` property if it is a number, else the Snorky object's
     * callTimeout option (0: no limit). */
    getCallTimeout: function () {
      if (typeof this.callTimeout === "number") { return this.callTimeout; }
      var options = this.snorky && this.snorky.options;
      return options && typeof options.callTimeout === "number" ? options.callTimeout : 0;
    },

    /* A sent call's timer: rejection after the call timeout, and the debug
     * warning (a call to a service the server does not have is never
     * answered: Snorky 0.1's protocol). */
    _armCall: function (callId, entry) {
      var timeout = this.getCallTimeout();
      var debug = !!(this.snorky && this.snorky.debug);
      if (entry.timer || !(timeout > 0 || debug)) { return; }
      var wait = timeout > 0 ? timeout : DEBUG_CALL_WARNING;
      var self = this;
      entry.timer = setTimeout(function () {
        entry.timer = null;
        if (self.calls[callId] !== entry) { return; }
        var text = 'Snorky: no answer from service "' + self.name + '" to "' + entry.command +
                   '" within ' + wait + " ms";
        if (debug) {
          warn(text + ' (is "' + self.name + '" registered on the server? A call to an unknown ' +
               "service is never answered; the server's log lists the services it has)");
        }
        if (timeout > 0) {
          delete self.calls[callId];
          (self._timedOut || (self._timedOut = {}))[callId] = true;
          var err = new Error(text);
          err.service = self.name;
          err.command = entry.command;
          err.timeout = true;
          entry.reject(err);
        }
      }, wait);
    },

    onPacket: function (message) {
      if (!message || typeof message !== "object" || !("type" in message)) {
        logError('Non-RPC message received from service "%s"', this.name);
        return;
      }
      if (message.type === "response" || message.type === "error") {
        if (!hasOwn.call(this.calls, message.callId)) {
          if (this._timedOut && hasOwn.call(this._timedOut, message.callId)) {
            delete this._timedOut[message.callId];  // it rejected with its timeout already
            if (this.snorky) { this.snorky.logDebug("Snorky: late answer to a call that timed out", message); }
            return;
          }
          logError('Response for unknown call with id "%s" from service "%s"', message.callId, this.name);
          return;
        }
        var call = this.calls[message.callId];
        delete this.calls[message.callId];
        if (call.timer) { clearTimeout(call.timer); }
        if (message.type === "response") {
          if (call.answered) { call.answered(message.data); }  // before the next frame is read
          call.resolve(message.data);
        } else {
          var err = new Error(message.message);
          err.command = call.command;
          call.reject(err);
        }
      } else {
        // 0.1 connectors listen with notificationReceived.add(this.onNotification, this);
        // a subclass that only overrides onNotification gets it called too.
        if (!this.notificationReceived.has(this.onNotification, this)) {
          this.onNotification(message);
        }
        this.notificationReceived.dispatch(message);
      }
    },

    onMessage: function (message) {  // name of early 0.1 releases
      this.onPacket(message);
    },

    onNotification: function (message) {},

    _queueFlushed: function () {
      for (var id in this.calls) {
        this.calls[id].sent = true;
        this._armCall(id, this.calls[id]);
      }
    },

    /* Calls that were sent fail; calls still queued stay queued for the next
     * connection. */
    _connectionLost: function (errorText) {
      var calls = this.calls;
      this._timedOut = null;  // the old connection's answers will not come
      Object.keys(calls).forEach(function (id) {
        var call = calls[id];
        if (call && call.sent) {
          delete calls[id];
          if (call.timer) { clearTimeout(call.timer); }
          call.reject(new Error(errorText));
        }
      });
    },

    _connectionClosed: function (errorText) {
      var calls = this.calls;
      this.calls = {};
      this._timedOut = null;
      Object.keys(calls).forEach(function (id) {
        if (calls[id].timer) { clearTimeout(calls[id].timer); }
        calls[id].reject(new Error(errorText));
      });
    },

    /* rpcCall, then `onSuccess(data)` once it succeeded (connectors track
     * what the page has, to restore it after a reconnection). */
    _callThen: function (command, params, onSuccess) {
      return this.rpcCall(command, params).then(function (data) {
        onSuccess(data);
        return data;
      });
    },

    /* After a reconnection: call `command` again for every value of
     * `tracked` (a ValueSet); a value the server refuses is forgotten. */
    _replay: function (tracked, command, paramName, onSuccess) {
      var self = this;
      tracked.values().forEach(function (value) {
        var params = {};
        params[paramName] = value;
        self.rpcCall(command, params).then(function (data) {
          if (onSuccess) { onSuccess(value, data); }
        }, function (err) {
          tracked["delete"](value);
          logError("snorky: " + self.name + ": " + command + " after reconnecting failed for",
                   value, err.message);
        });
      });
    },

    STATIC: {
      /* Adds one method per command name to the class: method(params)
       * returns rpcCall(command, params || {}).  Refuses to overwrite a
       * method the class (or a parent) has. */
      addRPCMethods: function (methods) {
        var cls = this;
        if (typeof cls !== "function" || !cls.prototype) {
          throw new TypeError("addRPCMethods must be called on a service class");
        }
        if (!_.isArray(methods)) {
          throw new TypeError("addRPCMethods expects an array of command names, got " + describe(methods));
        }
        methods.forEach(function (method) {
          if (typeof method !== "string") {
            throw new TypeError("addRPCMethods: a command name must be a string, got " + describe(method));
          }
          if (method in cls.prototype) {
            throw new Error('Method "' + method + '" already exists in the ' +
                            "class. Refusing to overwrite it.");
          }
          cls.prototype[method] = function (params) {
            return this.rpcCall(method, params || {});
          };
        });
      }
    }
  });
  var RPCService = Snorky.RPCService;

  /* Tracks values (channels, documents) by value, as the server does. */
  function ValueSet() { this.map = {}; }
  ValueSet.prototype = {
    add: function (value, extra) { this.map[stableStringify(value)] = {value: value, extra: extra}; },
    "delete": function (value) { delete this.map[stableStringify(value)]; },
    has: function (value) { return hasOwn.call(this.map, stableStringify(value)); },
    get: function (value) { var e = this.map[stableStringify(value)]; return e && e.extra; },
    values: function () {
      var map = this.map;
      return Object.keys(map).map(function (k) { return map[k].value; });
    },
    clear: function () { this.map = {}; }
  };
  Object.defineProperty(ValueSet.prototype, "size", {
    get: function () { return Object.keys(this.map).length; }
  });

  function unknownType(serviceLabel, type) {
    logError("Unknown message type in " + serviceLabel + " service: " + type);
  }

  /* PubSub ------------------------------------------------------------ */

  Snorky.PubSub = Class(RPCService, {
    init: function () {
      RPCService.prototype.init.call(this);
      this.notificationReceived.add(this.onNotification, this);
      this.messagePublished = new Snorky.Signal();  // dispatch({type, channel, message})
      // With history on the server (PubSubService(history_size=N)): after a
      // reconnection, dispatch(channel, recovered) per channel — true: every
      // message published meanwhile was delivered (in order, once); false:
      // some are gone, reload the channel's state.
      this.recovered = new Snorky.Signal();
      // After a reconnection, dispatch(channel, errorMessage) per channel the
      // server refused to subscribe again ("Not authorized": access taken
      // back); the channel is dropped from what the page restores.
      this.refused = new Snorky.Signal();
      // Server-side subscriptions (the backend's control.subscribe, or the
      // app's PubSubService.connect_channels): serverSubscribed(channel) when
      // the server subscribed this connection (its messages then come through
      // messagePublished like any other), serverUnsubscribed(channel) when
      // the server took it out of a channel (one the page subscribed itself
      // too: it is no longer restored after a reconnection).
      this.serverSubscribed = new Snorky.Signal();
      this.serverUnsubscribed = new Snorky.Signal();
      this.serverSubscriptions = new ValueSet();  // this connection's only
      this.subscriptions = new ValueSet();
      this.positions = new Positions();
      // Presence (PubSubService(presence=True)): dispatch(channel, entries,
      // change) when the entries of a channel subscribed with {presence: true}
      // change; change is the presenceChange notification, null when the
      // whole list arrived (the subscribe's answer, a restore).
      this.presenceChanged = new Snorky.Signal();
      this._presence = new PresenceTracker(this);
    },

    /* subscribe({channel}) -> promise.  Options: since (recovery, done
     * for you after a reconnection), recent: n (with history: the channel's
     * last n messages come through messagePublished before the answer, then
     * live ones from the next offset), presence and meta (presence). */
    subscribe: function (params) {
      var subs = this.subscriptions;
      var positions = this.positions;
      var presence = this._presence;
      return this._callThen("subscribe", params, function (data) {
        subs.add(params.channel);
        positions.move(params.channel, positionOf(data));
        presence.answered(params, data);
      });
    },

    unsubscribe: function (params) {
      var subs = this.subscriptions;
      var positions = this.positions;
      var presence = this._presence;
      var server = this.serverSubscriptions;
      return this._callThen("unsubscribe", params, function () {
        subs["delete"](params.channel);
        server["delete"](params.channel);
        positions["delete"](params.channel);
        presence.forget(params.channel);
      });
    },

    onNotification: function (message) {
      if (message.type === "message") {
        if (!admit(this, message, "subscribe")) { return; }  // already delivered, or after a gap
        this.messagePublished.dispatch(message);
        if (typeof this.onMessagePublished === "function") {
          Snorky.emitEvent(this.onMessagePublished.bind(this), message);
        }
      } else if (message.type === "presenceChange") {
        this._presence.notified(message);
      } else if (message.type === "gap") {  // history: the server may have missed messages
        recoverChannel(this, message.channel, "subscribe");
      } else if (message.type === "subscribed") {  // by the server
        this.serverSubscriptions.add(message.channel);
        this.serverSubscribed.dispatch(message.channel);
      } else if (message.type === "unsubscribed") {  // by the server
        this.serverSubscriptions["delete"](message.channel);
        this.subscriptions["delete"](message.channel);
        this.positions["delete"](message.channel);
        this._presence.forget(message.channel);
        this.serverUnsubscribed.dispatch(message.channel);
      } else {
        unknownType("messaging", message.type);  // 0.1's text, "messaging" included
      }
    },

    restore: function () {
      // the server's subscriptions were the old connection's: the new one is
      // told again of those the app gives at connect time
      var positions = this.positions, subs = this.subscriptions;
      this.serverSubscriptions.values().forEach(function (channel) {
        if (!subs.has(channel)) { positions["delete"](channel); }
      });
      this.serverSubscriptions.clear();
      resumeChannels(this, this.subscriptions, "subscribe");
    }
  });
  /* publish({channel, message}) -> promise.  With excludeSender: true every
   * subscriber but this connection gets it (the page's other tabs do); with
   * history the answer is the message's {offset, epoch} and takes its place
   * in this connection's stream: the page's position moves past it (no gap).
   * With idempotencyKey: "<a string made once per message>" a retry of the
   * same options object (after "Connection lost", a timeout, on a new
   * connection) within the server's window (120 s) is delivered once and
   * answered as the first was; Chat's send({channel, body, idempotencyKey})
   * too. */
  Snorky.PubSub.prototype.publish = function (params) {
    var promise = this.rpcCall("publish", params);
    var call = this.calls[this.nextCallId - 1];
    var positions = this.positions;
    if (call && params && params.excludeSender === true) {
      call.answered = function (data) {
        var pos = positionOf(data);
        var got = pos && positions.get(params.channel);
        if (got && got.epoch === pos.epoch && got.offset === pos.offset - 1) {
          positions.move(params.channel, pos);
        }
      };
    }
    return promise;
  };

  /* Presence with metadata (docs/protocol.md "Presence"), for PubSub and Chat
   * services created with presence=True: subscribe/join({channel, meta,
   * presence: true}), updatePresence({channel, meta}), presence({channel}),
   * presenceStats({channel}), presenceOf(channel) and presenceChanged. */
  var presenceMethods = {
    /* updatePresence({channel, meta}) -> promise: this connection's meta in
     * the channel (kept for a restore after a reconnection). */
    updatePresence: function (params) {
      var presence = this._presence;
      return this._callThen("updatePresence", params, function () {
        presence.updated(params.channel, params.meta);
      });
    },
    /* The entries of a channel joined with {presence: true}, as this page
     * knows them: [{client, identity, meta}, ...] (its own included). */
    presenceOf: function (channel) { return this._presence.list(channel); },
    /* This connection's id in a channel's entries (undefined if unknown). */
    presenceId: function (channel) { return this._presence.self.get(channel); }
  };
  _.assign(Snorky.PubSub.prototype, presenceMethods);
  Snorky.PubSub.addRPCMethods(["presence", "presenceStats"]);

  /* What a page asked of each channel's presence ({presence, meta}: asked
   * again when restoring) and the entries of the channels it watches. */
  function PresenceTracker(service) {
    this.service = service;
    this.asked = new ValueSet();    // channel -> {presence: bool, meta}
    this.entries = new ValueSet();  // watched channel -> {client id: entry}
    this.self = new ValueSet();     // watched channel -> this connection's client id
  }
  PresenceTracker.prototype = {
    /* The params of a subscribe/join answered with `data`. */
    answered: function (params, data) {
      var channel = params.channel;
      if (params.presence || params.meta !== undefined) {
        this.asked.add(channel, {presence: !!params.presence, meta: params.meta});
      }
      if (!data || !Array.isArray(data.presence)) { return; }
      var byId = {};
      data.presence.forEach(function (e) { byId[e.client] = e; });
      this.entries.add(channel, byId);
      this.self.add(channel, data.client);
      this.service.presenceChanged.dispatch(channel, this.list(channel), null);
    },
    /* A restore's params: what the page had asked. */
    restoreParams: function (channel, params) {
      var asked = this.asked.get(channel);
      if (asked) {
        if (asked.presence) { params.presence = true; }
        if (asked.meta !== undefined) { params.meta = asked.meta; }
      }
      return params;
    },
    updated: function (channel, meta) {
      var asked = this.asked.get(channel) || {presence: false};
      asked.meta = meta;
      this.asked.add(channel, asked);
      var byId = this.entries.get(channel);
      var me = this.self.get(channel);
      if (byId && me !== undefined && byId[me]) {
        var change = {type: "presenceChange", channel: channel, event: "update", client: me,
                      identity: byId[me].identity, meta: meta};
        byId[me] = {client: me, identity: change.identity, meta: meta};
        this.service.presenceChanged.dispatch(channel, this.list(channel), change);
      }
    },
    notified: function (message) {
      var byId = this.entries.get(message.channel);
      if (!byId) { return; }
      if (message.event === "leave") {
        delete byId[message.client];
      } else {
        byId[message.client] = {client: message.client, identity: message.identity, meta: message.meta};
      }
      this.service.presenceChanged.dispatch(message.channel, this.list(message.channel), message);
    },
    forget: function (channel) {
      this.asked["delete"](channel);
      this.entries["delete"](channel);
      this.self["delete"](channel);
    },
    list: function (channel) {
      var byId = this.entries.get(channel);
      return byId ? Object.keys(byId).map(function (k) { return byId[k]; }) : [];
    }
  };

  /* {offset, epoch} of a subscribe/join answer with history, else undefined. */
  function positionOf(data) {
    if (data && typeof data === "object" && typeof data.offset === "number" &&
        typeof data.epoch === "string") {
      return {offset: data.offset, epoch: data.epoch};
    }
    return undefined;
  }

  /* Where the page is in each channel of a service with history: the
   * {offset, epoch} of the last message it got. */
  function Positions() { this.known = new ValueSet(); }
  Positions.prototype = {
    get: function (channel) { return this.known.get(channel); },
    "delete": function (channel) { this.known["delete"](channel); },
    /* Forward only: an answer never moves it back past messages replayed before it. */
    move: function (channel, pos) {
      var got = this.known.get(channel);
      if (pos && !(got && got.epoch === pos.epoch && got.offset > pos.offset)) {
        this.known.add(channel, pos);
      }
    },
    /* "new" for the message that follows the position (it becomes the
     * position), "seen" for one already delivered, "gap" for one after a
     * jump (same epoch, offset past position + 1) or of another epoch that
     * does not start at offset 1: messages were missed.  A message without
     * offset (no history: 0.1's frames) is "new". */
    check: function (message) {
      if (typeof message.offset !== "number") { return "new"; }
      var got = this.known.get(message.channel);
      if (got && got.epoch === message.epoch) {
        if (message.offset <= got.offset) { return "seen"; }
        if (message.offset !== got.offset + 1) { return "gap"; }
      } else if (got && message.offset !== 1) {
        return "gap";  // a new epoch starts at 1 (what the old one lost, the server says: "gap")
      }
      this.known.add(message.channel, {offset: message.offset, epoch: message.epoch});
      return "new";
    }
  };

  /* True when a live message is for the page: not one it has already, and
   * not one after a gap (then the channel is asked again: recoverChannel). */
  function admit(service, message, command) {
    var verdict = service.positions.check(message);
    if (verdict === "gap") { recoverChannel(service, message.channel, command); }
    return verdict === "new";
  }

  /* Channels of a service asked again with `since`, not answered yet. */
  function recovering(service) {
    return service._recovering || (service._recovering = new ValueSet());
  }

  /* The answer to `command` with `since`: the position moves on (recovered)
   * or starts over where the server is (not), and service.recovered(channel,
   * true|false). */
  function settle(service, channel, data) {
    var recovered = !!(data && data.recovered);
    var pos = positionOf(data);
    if (recovered) {
      service.positions.move(channel, pos);
    } else if (pos) {
      service.positions.known.add(channel, pos);
    }
    service.recovered.dispatch(channel, recovered);
  }

  /* A channel the page is in missed messages (a jump in its offsets, or the
   * server's "gap" notification): `command` (subscribe, join) again with
   * `since`, which the server answers in place: the missed messages, in
   * order, then recovered: true, or recovered: false when they are gone;
   * then service.recovered(channel, true|false).  Meanwhile, messages that
   * do not follow are dropped (the replay brings them). */
  function recoverChannel(service, channel, command) {
    var pos = service.positions.get(channel);
    var pending = recovering(service);
    if (!pos || pending.has(channel)) { return; }
    pending.add(channel);
    service.rpcCall(command, {channel: channel, since: pos}).then(function (data) {
      pending["delete"](channel);
      settle(service, channel, data);
    }, function (err) {
      pending["delete"](channel);
      logError("snorky: " + service.name + ": recovering", channel, "failed:", err.message);
    });
  }

  /* After a reconnection: `command` again for every channel of `tracked`,
   * from its position when known (then service.recovered(channel, true|false));
   * `onAnswer(channel, data)` first.  A channel the server refuses is forgotten
   * and service.refused(channel, errorMessage) dispatched. */
  function resumeChannels(service, tracked, command, onAnswer) {
    var positions = service.positions;
    tracked.values().forEach(function (channel) {
      var pos = positions.get(channel);
      var params = pos ? {channel: channel, since: pos} : {channel: channel};
      var presence = service._presence;
      if (presence) { presence.restoreParams(channel, params); }
      if (pos) { recovering(service).add(channel); }  // no other recovery until answered
      service.rpcCall(command, params).then(function (data) {
        recovering(service)["delete"](channel);
        if (onAnswer) { onAnswer(channel, data); }
        if (presence) { presence.answered(params, data); }
        if (pos) {
          settle(service, channel, data);
        } else {
          positions.move(channel, positionOf(data));
        }
      }, function (err) {
        recovering(service)["delete"](channel);
        tracked["delete"](channel);
        positions["delete"](channel);
        if (presence) { presence.forget(channel); }
        service.refused.dispatch(channel, err.message);
        logError("snorky: " + service.name + ": " + command + " after reconnecting failed for",
                 channel, err.message);
      });
    });
  }

  /* Chat --------------------------------------------------------------- */

  Snorky.Chat = Class(RPCService, {
    init: function () {
      RPCService.prototype.init.call(this);
      this.notificationReceived.add(this.onNotification, this);
      this.messageReceived = new Snorky.Signal();   // {from, channel, body, timestamp}
      this.presenceReceived = new Snorky.Signal();  // {from, channel, status, timestamp}
      this.readReceived = new Snorky.Signal();      // {channel, timestamp}
      this.membersChanged = new Snorky.Signal();    // (channel, members): join, presence, rejoin
      // With history on the server (ChatService(history_size=N)): after a
      // reconnection, dispatch(channel, recovered): true when every line sent
      // meanwhile was replayed, false when some are gone.
      this.recovered = new Snorky.Signal();
      this.refused = new Snorky.Signal();           // (channel, errorMessage): not rejoined after a reconnection
      this.channels = new ValueSet();               // joined channel -> members array
      this.positions = new Positions();             // where the page is in each channel (history)
      // Server-side joins (the backend's control.subscribe({service: "chat"}),
      // or the app's ChatService.connect_channels): serverJoined(channel,
      // members) when the server joined this connection (the channel is then
      // in members() and its lines come through messageReceived like any
      // other), serverLeft(channel) when the server took it out.
      this.serverJoined = new Snorky.Signal();
      this.serverLeft = new Snorky.Signal();
      this.serverChannels = new ValueSet();         // this connection's only
      // Presence with metadata (ChatService(presence=True)): as PubSub's
      this.presenceChanged = new Snorky.Signal();   // (channel, entries, change or null)
      this._presence = new PresenceTracker(this);
    },

    join: function (params) {
      var self = this;
      return this._callThen("join", params, function (data) {
        self._joined(params.channel, data);
        self.positions.move(params.channel, positionOf(data));
        self._presence.answered(params, data);
      });
    },

    leave: function (params) {
      var channels = this.channels;
      var positions = this.positions;
      var presence = this._presence;
      var server = this.serverChannels;
      return this._callThen("leave", params, function () {
        channels["delete"](params.channel);
        server["delete"](params.channel);
        positions["delete"](params.channel);
        presence.forget(params.channel);
      });
    },


    _joined: function (channel, data) {
      var members = (data && data.members) || [];
      this.channels.add(channel, members.slice());
      this.membersChanged.dispatch(channel, members.slice());
    },

    /* The members of a joined channel as this page knows them. */
    members: function (channel) {
      return (this.channels.get(channel) || []).slice();
    },

    onNotification: function (message) {
      if (message.type === "message") {
        if (!admit(this, message, "join")) { return; }  // already delivered, or after a gap
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
      } else if (message.type === "gap") {  // history: the server may have missed lines
        recoverChannel(this, message.channel, "join");
      } else if (message.type === "presenceChange") {
        this._presence.notified(message);
      } else if (message.type === "subscribed") {  // joined by the server: what a join answers
        this.serverChannels.add(message.channel);
        this._joined(message.channel, message);
        this.serverJoined.dispatch(message.channel, this.members(message.channel));
      } else if (message.type === "unsubscribed") {  // taken out by the server
        this.serverChannels["delete"](message.channel);
        this.channels["delete"](message.channel);
        this.positions["delete"](message.channel);
        this._presence.forget(message.channel);
        this.serverLeft.dispatch(message.channel);
      } else {
        unknownType("messaging", message.type);  // 0.1's text
      }
    },

    restore: function () {
      // the server's joins were the old connection's: the new one is told
      // again of those the app gives at connect time
      var channels = this.channels, positions = this.positions, presence = this._presence;
      this.serverChannels.values().forEach(function (channel) {
        channels["delete"](channel);
        positions["delete"](channel);
        presence.forget(channel);
      });
      this.serverChannels.clear();
      resumeChannels(this, this.channels, "join", this._joined.bind(this));
    }
  });
  Snorky.Chat.addRPCMethods(["send", "read"]);
  _.assign(Snorky.Chat.prototype, presenceMethods);
  Snorky.Chat.addRPCMethods(["presence", "presenceStats"]);

  /* Cursors ------------------------------------------------------------ */

  var Cursor = Class({});

  var ForeignCursor = Class(Cursor, {
    constructor: function (data) {
      _.assign(this, data);
    },
    isMine: false
  });

  var OwnCursor = Class(Cursor, {
    constructor: function (document, data) {
      this.document = document;
      this.removed = false;
      _.assign(this, data);
      this.pendingPromiseCount = 1;  // the create call is still pending
    },

    isMine: true,

    /* newData: {position, status} (either).  Changes the cursor at once;
     * the promise is fulfilled when the server has it.  An update that
     * changes nothing is not sent. */
    update: function (newData) {
      var self = this;
      var service = this.document.service;
      newData = newData || {};
      _.subset(newData, ["position", "status"], function (key) {
        throw new Error("Can't update '" + key + "' of cursor.");
      });
      if (_.isEqualRight(this, newData)) {
        return resolved(undefined);
      }
      _.assign(this, newData);
      this.pendingPromiseCount += 1;
      return service.rpcCall("updateCursor", {
        privateHandle: this.privateHandle,
        newData: newData
      }).then(function () {
        self.pendingPromiseCount -= 1;
      }, function (err) {
        self.pendingPromiseCount -= 1;
        throw err;
      });
    },

    remove: function () {
      var self = this;
      var service = this.document.service;
      this.pendingPromiseCount += 1;
      this.removed = true;
      delete service.ownCursors[this.privateHandle];
      _.remove(this.document.cursors, function (c) { return c === self; });
      return service.rpcCall("removeCursor", {
        privateHandle: this.privateHandle
      }).then(function () {
        self.pendingPromiseCount -= 1;
      }, function (err) {
        self.pendingPromiseCount -= 1;
        throw err;
      });
    },

    isSynchronized: function () {
      return this.pendingPromiseCount === 0;
    }
  });

  var CursorDocument = Class({
    constructor: function (service, name, cursors) {
      this.service = service;
      this.name = name;
      this.cursors = _.map(cursors || [], function (cursor) {
        cursor.document = this;
        return new ForeignCursor(cursor);
      }, this);
      this.cursorAdded = new Snorky.Signal();    // (cursor)
      this.cursorUpdated = new Snorky.Signal();  // (cursor)
      this.cursorRemoved = new Snorky.Signal();  // ({publicHandle, document})
    },

    foreignCursors: function () {
      return this.cursors.filter(function (c) { return !c.isMine; });
    },

    onCursorAdded: function (data) {
      var cursor = new ForeignCursor(data);
      this.cursors.push(cursor);
      this.cursorAdded.dispatch(cursor);
    },

    /* Updates the foreign cursor in place and dispatches it. */
    onCursorUpdated: function (data) {
      var found = _.find(this.cursors, function (c) {
        return !c.isMine && c.publicHandle === data.publicHandle;
      });
      if (found) {
        _.assign(found, data);
      } else {
        found = new ForeignCursor(data);
        this.cursors.push(found);
      }
      this.cursorUpdated.dispatch(found);
    },

    onCursorRemoved: function (data) {
      _.remove(this.cursors, function (c) { return !c.isMine && c.publicHandle === data.publicHandle; });
      this.cursorRemoved.dispatch(data);
    },

    /* createCursor({position, status}) -> [cursor, promise]: the cursor
     * exists at once; the promise is fulfilled with its publicHandle when
     * the server has created it. */
    createCursor: function (params) {
      var service = this.service;
      var handle = service.getFreePrivateHandle();
      var cursor = new Snorky.Cursors.OwnCursor(this, {
        privateHandle: handle, position: params.position, status: params.status
      });
      var promise = service.rpcCall("createCursor", {
        privateHandle: handle, document: this.name,
        position: params.position, status: params.status
      }).then(function (publicHandle) {
        cursor.publicHandle = publicHandle;
        cursor.pendingPromiseCount -= 1;
        return publicHandle;
      }, function (err) {
        cursor.pendingPromiseCount -= 1;
        throw err;
      });
      service.ownCursors[handle] = cursor;
      this.cursors.push(cursor);
      return [cursor, promise];
    },

    leave: function () {
      return this.service.leave({document: this.name});
    },

    /* After a reconnection: the server's current cursors replace the old
     * foreign ones (listeners see removals and additions); own cursors are
     * created again with their last position and status. */
    _rejoined: function (cursors) {
      var self = this;
      this.foreignCursors().forEach(function (c) {
        _.remove(self.cursors, function (x) { return x === c; });
        self.cursorRemoved.dispatch({publicHandle: c.publicHandle, document: self.name});
      });
      (cursors || []).forEach(function (c) { self.onCursorAdded(c); });
      this.cursors.filter(function (c) { return c.isMine && !c.removed; }).forEach(function (own) {
        own.pendingPromiseCount += 1;
        self.service.rpcCall("createCursor", {
          privateHandle: own.privateHandle, document: self.name,
          position: own.position, status: own.status
        }).then(function (publicHandle) {
          own.publicHandle = publicHandle;
          own.pendingPromiseCount -= 1;
        }, function (err) {
          own.pendingPromiseCount -= 1;
          logError("snorky: could not recreate cursor", err.message);
        });
      });
    }
  });

  Snorky.Cursors = Class(RPCService, {
    init: function () {
      RPCService.prototype.init.call(this);
      this.notificationReceived.add(this.onNotification, this);
      this.documents = {};   // stableStringify(name) -> Document
      this.ownCursors = {};  // privateHandle -> OwnCursor
      this.refused = new Snorky.Signal();  // (document, errorMessage): not rejoined after a reconnection
    },

    /* join({document}) -> promise of a Snorky.Cursors.Document */
    join: function (params) {
      var self = this;
      return this.rpcCall("join", params).then(function (documentData) {
        var name = params.document;
        var doc = new Snorky.Cursors.Document(self, name, documentData && documentData.cursors);
        self.documents[stableStringify(name)] = doc;
        return doc;
      });
    },

    leave: function (params) {
      var self = this;
      return this.rpcCall("leave", params).then(function (data) {
        var key = stableStringify(params.document);
        var doc = self.documents[key];
        if (doc) {
          doc.cursors.forEach(function (c) {
            if (c.isMine) { delete self.ownCursors[c.privateHandle]; }
          });
          delete self.documents[key];
        }
        return data;
      });
    },

    onNotification: function (notification) {
      var cursor = notification.cursor || {};
      var doc = this.documents[stableStringify(cursor.document)];
      if (!doc) {
        throw new Error("Notification for unknown document: " + stableStringify(cursor.document));
      }
      if (notification.type === "cursorAdded") { doc.onCursorAdded(cursor); }
      else if (notification.type === "cursorUpdated") { doc.onCursorUpdated(cursor); }
      else if (notification.type === "cursorRemoved") { doc.onCursorRemoved(cursor); }
      else { unknownType("cursors", notification.type); }
    },

    getFreePrivateHandle: function () {
      if (_.keys(this.ownCursors).length > 100) {
        throw new Error("Too many cursors (thrown at client side)");
      }
      var handle = 0;
      while (hasOwn.call(this.ownCursors, handle)) { handle++; }
      return handle;
    },

    restore: function () {
      var self = this;
      Object.keys(this.documents).forEach(function (key) {
        var doc = self.documents[key];
        self.rpcCall("join", {document: doc.name}).then(function (data) {
          doc._rejoined(data && data.cursors);
        }, function (err) {
          delete self.documents[key];
          self.refused.dispatch(doc.name, err.message);
          logError("snorky: " + self.name + ": join after reconnecting failed for", doc.name, err.message);
        });
      });
    }
  });
  Snorky.Cursors.Document = CursorDocument;
  Snorky.Cursors.Cursor = Cursor;
  Snorky.Cursors.OwnCursor = OwnCursor;
  Snorky.Cursors.ForeignCursor = ForeignCursor;

  /* Messaging ---------------------------------------------------------- */

  Snorky.Messaging = Class(RPCService, {
    init: function () {
      RPCService.prototype.init.call(this);
      this.notificationReceived.add(this.onNotification, this);
      this.messageReceived = new Snorky.Signal();        // {type, sender, dest, body}
      this.participantMessage = this.messageReceived;    // the same signal, earlier name
      this.participants = new ValueSet();                // names registered by this page
    },

    registerParticipant: function (params) {
      var names = this.participants;
      return this._callThen("registerParticipant", params, function () { names.add(params.name); });
    },

    unregisterParticipant: function (params) {
      var names = this.participants;
      return this._callThen("unregisterParticipant", params, function () { names["delete"](params.name); });
    },

    onNotification: function (message) {
      if (message.type === "message") {
        this.messageReceived.dispatch(message);
        if (typeof this.onParticipantMessage === "function") {
          Snorky.emitEvent(this.onParticipantMessage.bind(this), message);
        }
      } else {
        unknownType("messaging", message.type);
      }
    },

    restore: function () {
      this._replay(this.participants, "registerParticipant", "name");
    }
  });
  Snorky.Messaging.addRPCMethods(["listParticipants", "send"]);

  /* DataSync ----------------------------------------------------------- */

  Snorky.DataSync = Class(RPCService, {
    init: function () {
      RPCService.prototype.init.call(this);
      this.notificationReceived.add(this.onNotification, this);
      this.deltaReceived = new Snorky.Signal();      // (delta)
      this.subscriptionsLost = new Snorky.Signal();  // (tokens) after a reconnection
      // With DataSyncService(resume_window=...) on the server: (token) for each
      // subscription resumed after a reconnection with every delta it missed.
      this.recovered = new Snorky.Signal();
      this.acquired = new ValueSet();
      // Resumable subscriptions: seq of the last delta received, and the epoch
      // it counts in (each server process has its own: a restarted server
      // numbers its deltas from 1 again).
      this.lastSeq = null;
      this.epoch = null;
    },

    acquireSubscription: function (params) {
      var acquired = this.acquired;
      return this._callThen("acquireSubscription", params, function () { acquired.add(params.token); });
    },

    cancelSubscription: function (params) {
      this.acquired["delete"](params && params.token);
      return this.rpcCall("cancelSubscription", params);
    },

    onNotification: function (message) {
      if (message.type === "delta") {
        if (typeof message.seq === "number") {
          this._position(typeof message.epoch === "string" ? message.epoch : null);
          if (this.lastSeq !== null && message.seq <= this.lastSeq) { return; }  // already applied
          this.lastSeq = message.seq;
        }
        this.deltaReceived.dispatch(message.delta);
        if (typeof this.onDelta === "function") { Snorky.emitEvent(this.onDelta.bind(this), message.delta); }
      } else {
        unknownType("DataSync", message.type);
      }
    },

    /* Deltas of another epoch (another server process) start a new seq:
     * the position of the old one means nothing there. */
    _position: function (epoch) {
      if (epoch !== this.epoch) {
        this.epoch = epoch;
        this.lastSeq = null;
      }
    },

    /* Without a resume window on the server, it cancels a connection's
     * subscriptions when it drops and a token is single-use: the page must
     * fetch its data and a new token again (subscriptionsLost).  With one,
     * each subscription is resumed from the last delta received (its seq and
     * epoch); those the server could not resume (the window passed, or the
     * server restarted: another epoch) are reported lost, together, and the
     * position starts over, so that every delta of the new subscriptions
     * is applied. */
    restore: function () {
      var self = this;
      var tokens = this.acquired.values();
      if (!tokens.length) { return; }
      var since = this.lastSeq === null ? 0 : this.lastSeq;
      var epoch = this.epoch;  // null: a server without epochs, or no delta yet
      var lost = [];
      var left = tokens.length;
      function done() {
        left -= 1;
        if (left > 0) { return; }
        if (lost.length === tokens.length) { self.lastSeq = null; }  // nothing of it is live
        if (lost.length) { self.subscriptionsLost.dispatch(lost); }
      }
      tokens.forEach(function (token) {
        var params = {token: token, since: since};
        if (epoch !== null) { params.epoch = epoch; }
        self.rpcCall("acquireSubscription", params).then(function (data) {
          if (data && typeof data.epoch === "string") { self._position(data.epoch); }
          if (data && data.recovered) {
            self.recovered.dispatch(token);
          } else {
            self.acquired["delete"](token);
            lost.push(token);
          }
          done();
        }, function () {
          self.acquired["delete"](token);
          lost.push(token);
          done();
        });
      });
    }
  });
  var DataSync = Snorky.DataSync;

  /* Collections kept up to date by deltas.  A collection has insert(value)
   * and getIterator(); an iterator has hasNext(), next(), update(value) and
   * remove(). */

  var Collection = DataSync.Collection = Class({});
  var Iterator = DataSync.Iterator = Class({});

  DataSync.ArrayIterator = Class(Iterator, {
    constructor: function (array, options) {
      this.array = array;
      this.options = options;
      this.index = -1;
      this.deleted = false;
    },
    hasNext: function () { return this.index < this.array.length - 1; },
    next: function () {
      if (!this.hasNext()) { throw new Error("Busted iterator"); }
      this.deleted = false;
      return this.array[++this.index];
    },
    checkSafe: function () {
      if (this.deleted) {
        throw new Error("Iterator pointing to a deleted item! (call next())");
      } else if (this.index === -1) {
        throw new Error("Iterator not pointing to an item! (call next())");
      }
    },
    remove: function () {
      this.checkSafe();
      this.array.splice(this.index--, 1);
      this.deleted = true;
    },
    update: function (newVal) {
      this.checkSafe();
      this.array[this.index] = this.options.transformItem(newVal);
    }
  });

  /* An array (yours, e.g. bound to a view) that deltas insert into, update
   * and delete from.  options.transformItem(data) turns delta data into the
   * item stored (e.g. a model object). */
  DataSync.ArrayCollection = Class(Collection, {
    constructor: function (array, options) {
      this.array = array || [];
      this.options = _.defaults(_.assign({}, options || {}), {
        transformItem: function (item) { return item; }
      });
    },
    insert: function (val) {
      this.array.push(this.options.transformItem(val));
    },
    getIterator: function () {
      return new DataSync.ArrayIterator(this.array, this.options);
    }
  });

  DataSync.SingleItemIterator = Class(Iterator, {
    constructor: function (collection) {
      this.fetched = false;
      this.collection = collection;
    },
    hasNext: function () { return !this.fetched; },
    next: function () {
      if (this.fetched) { throw new Error("Busted iterator"); }
      this.fetched = true;
      return this.collection.readHandler();
    },
    remove: function () {
      if (!this.fetched) { throw new Error("Iterator not pointing to an item! (call next())"); }
      this.collection.removeHandler();
    },
    update: function (newVal) {
      if (!this.fetched) { throw new Error("Iterator not pointing to an item! (call next())"); }
      this.collection.updateHandler(newVal);
    }
  });

  /* One item (e.g. the record a detail page shows), read, updated and
   * removed through your handlers. */
  DataSync.SingleItemCollection = Class(Collection, {
    constructor: function (readHandler, updateHandler, removeHandler) {
      this.readHandler = readHandler;
      this.updateHandler = updateHandler;
      this.removeHandler = removeHandler || function () {};
    },
    item: null,
    insert: function (val) {
      logError("Received insert() request in SingleItemCollection");
    },
    getIterator: function () {
      return new DataSync.SingleItemIterator(this);
    }
  });

  function isCollection(thing) {
    return thing instanceof DataSync.Collection ||
      (!!thing && typeof thing.insert === "function" && typeof thing.getIterator === "function");
  }

  /* Applies deltas to collections.  collections: {Model: collection}, or
   * tagged, {Model: {tag: collection, ...}} (deltas carry `tag`).  Items
   * are matched by itemsAreEqual(item, data, delta), by default on `id`.
   * Use: datasync.deltaReceived.add(processor.processDelta, processor) */
  DataSync.CollectionDeltaProcessor = Class({
    constructor: function (collections, options) {
      this.collections = collections || {};
      options = options || {};
      if (options.itemsAreEqual) { this.itemsAreEqual = options.itemsAreEqual; }
      this.processed = new Snorky.Signal();  // (delta, collection) after each delta applied
    },

    itemsAreEqual: function (item, other, delta) {
      return item.id == other.id;  // eslint-disable-line eqeqeq
    },

    processDelta: function (delta) {
      if (!delta || !hasOwn.call(this.collections, delta.model)) {
        logError("Received delta for unregistered model: " + (delta && delta.model));
        return;
      }
      var collection = this.collections[delta.model];
      if (!isCollection(collection)) {
        // a dictionary tag -> collection
        if (!collection || typeof collection !== "object" || !hasOwn.call(collection, delta.tag)) {
          logError("Received delta with unregistered tag: " + delta.tag + " (model: " + delta.model + ")");
          return;
        }
        collection = collection[delta.tag];
      }
      var iter;
      if (delta.type === "insert") {
        collection.insert(delta.data);
      } else if (delta.type === "update") {
        iter = collection.getIterator();
        while (iter.hasNext()) {
          if (this.itemsAreEqual(iter.next(), delta.oldData, delta)) {
            iter.update(delta.newData);
            break;
          }
        }
      } else if (delta.type === "delete") {
        iter = collection.getIterator();
        while (iter.hasNext()) {
          if (this.itemsAreEqual(iter.next(), delta.data, delta)) {
            iter.remove();
            break;
          }
        }
      } else {
        logError("Received delta of strange type: " + delta.type);
        return;
      }
      this.processed.dispatch(delta, collection);
    }
  });

  return Snorky;
});
