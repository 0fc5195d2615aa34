// netlib.js: the browser side of netlib's WebSocket transport, shaped like PodSixNet's client.
// An ES module without dependencies. Serve it with `WsOptions::netlib_js()` (at /netlib.js).
//
//   import { connect } from "/netlib.js";
//   const conn = connect(`ws://${location.host}/ws`);
//   conn.on("connected", () => conn.send({ action: "nickname", nickname: "ada" }));
//   conn.on("message", (msg) => console.log(msg));          // every message
//   conn.on("chat", (msg) => show(msg.text));               // one action
//   conn.on("disconnected", ({ code, reason }) => console.log("lost", code, reason));
//   conn.on("netlib.session", ({ recovered }) => recovered || resync());  // nothing lost, or not
//
// Each WebSocket text message is one JSON object with an "action" (a netlib Message). A
// cluster node's room messages to a session client also carry `"netlib.at": [room, offset]`
// (see AT below), which this module removes before the application sees them.

/**
 * A message: a JSON object with a string `action`, e.g. `{action: "chat", text: "hi"}`.
 * @typedef {{action: string, [key: string]: any}} Message
 */

/**
 * Options of {@link connect}.
 * @typedef {Object} Options
 * @property {boolean} [reconnect=true] Connect again after the connection is lost (not after
 *   {@link Connection#close}), waiting an exponential backoff with full jitter: a random delay
 *   between 0 and min(maxDelay, minDelay * 2^attempt) ms; attempt counts failures since the
 *   last successful connection.
 * @property {number} [minDelay=500] Backoff base, in milliseconds.
 * @property {number} [maxDelay=30000] Backoff cap, in milliseconds.
 * @property {number} [maxQueue=256] Messages kept while not connected; `send` returns false
 *   beyond this (without a session; with one, see `maxKept`).
 * @property {boolean} [session=true] Ask the server for a resumable session: after a lost
 *   connection, the reconnect gets the same channel back with every message sent meanwhile,
 *   each once and in order, both ways (a server without sessions ignores the request). The
 *   answer is the event `"netlib.session"`: `{recovered, id, ...}`; `recovered: false` means a
 *   new session (resynchronise). On a cluster with room streams the session is recovered on
 *   any node, from the answer's `epoch` and each room's last offset (see {@link AT}).
 * @property {number} [maxKept=10000] Messages kept until the server acknowledges them (with a
 *   session); past it the oldest go, and a resume that needs them starts a new session.
 * @property {Function} [WebSocket] The WebSocket class (default: the global one).
 * @property {() => number} [random] A random number in [0, 1) (default: Math.random).
 * @property {(fn: Function, ms: number) => any} [setTimeout] Timer (default: the global one).
 * @property {(id: any) => void} [clearTimeout] Timer cancel (default: the global one).
 */

/** Actions of netlib's heartbeat: a ping is answered with a pong, neither is delivered. */
const PING = "netlib.ping";
const PONG = "netlib.pong";
/** A resumable session: its set-up, acknowledgements and goodbye (see the README's "Sessions"). */
const SESSION = "netlib.session";
const ACK = "netlib.ack";
const BYE = "netlib.bye";
/**
 * A room message's position in its room's stream, on a cluster node with room streams: the
 * key `"netlib.at": [room, offset]` of each room message to a session client, `room` a string
 * and `offset` a Redis stream id `"<ms>-<seq>"`. It is removed from the message before any
 * handler sees it; the highest offset per room is kept while the session lasts and goes back
 * in the resume request (`rooms`, with the answer's `epoch`), so another node of the cluster
 * can recover the session from the streams, as Centrifugo's recovery by (epoch, offset).
 */
const AT = "netlib.at";
/** A Redis stream id: `"<ms>-<seq>"`, both unsigned decimal integers. */
const STREAM_ID = /^\d+-\d+$/;
/** An acknowledgement goes after this many messages, or this long after the first (ms). */
const ACK_EVERY = 256;
const ACK_DELAY = 200;

/**
 * Opens a connection to a netlib WebSocket server and returns it; messages sent before it is
 * open are queued.
 * @param {string} url e.g. `ws://example.com:8080/ws`.
 * @param {Options} [options]
 * @returns {Connection}
 */
export function connect(url, options = {}) {
  return new Connection(url, options);
}

/**
 * One connection to a netlib server (reconnecting by itself unless told not to).
 *
 * Events, subscribed with {@link Connection#on}:
 * - `"message"`: every message from the server, after the handlers of its action;
 * - `"<action>"`: messages with that action, e.g. `"chat"`;
 * - `"socketConnect"`: the WebSocket opened (PodSixNet's name); queued messages are sent;
 * - `"connected"`: the server's greeting `{action: "connected"}` (with `id` if the server
 *   announces ids), the first message of every connection;
 * - `"disconnected"`: an open connection closed: `{action: "disconnected", code, reason,
 *   wasClean}` (RFC 6455 close code; 1006 when the connection was lost);
 * - `"error"`: a connection attempt failed, or the server sent an error:
 *   `{action: "error", error: [code, text]}`;
 * - `"reconnecting"`: `{action: "reconnecting", delay, attempt}` before waiting `delay` ms;
 * - `"netlib.session"`: the server's answer to the session request: `{recovered, id, token,
 *   ...}` (and `epoch` from a cluster node with room streams); when `recovered`, the new
 *   connection's `"connected"` is not delivered (nothing changed for the application);
 * - `"netlib.bye"`: the server ended the session on purpose (a kick, a shutdown); the next
 *   connection starts a new one.
 */
export class Connection {
  /**
   * @param {string} url
   * @param {Options} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      reconnect: true,
      minDelay: 500,
      maxDelay: 30000,
      maxQueue: 256,
      session: true,
      maxKept: 10000,
      WebSocket: globalThis.WebSocket,
      random: Math.random,
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (id) => globalThis.clearTimeout(id),
      ...options,
    };
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** @type {string[]} encoded messages waiting for the connection */
    this._queue = [];
    this._socket = null;
    this._timer = null;
    this._attempt = 0;
    this._closed = false;
    // A session's numbering (implicit offsets, as the server's): sent and not acknowledged
    // messages, the last number sent and received, and what the next answer changes.
    this._token = null;
    this._kept = []; // encoded messages, numbers _sent - _kept.length + 1 ..= _sent
    this._sent = 0;
    this._received = 0;
    this._acked = 0;
    this._skip = 0;
    this._counting = false;
    this._awaiting = false; // a resume was asked; "connected" waits in _held
    this._off = false; // the server said it has no sessions
    this._held = null;
    this._ackTimer = null;
    // Cross-node resume (as Centrifugo's recovery by (epoch, offset)): the last answer's
    // epoch, and each room's highest offset seen (from `netlib.at`), sent back in a resume.
    this._epoch = null;
    /** @type {Map<string, string>} room -> offset "<ms>-<seq>" */
    this._rooms = new Map();
    this._open();
  }

  /**
   * `"connecting"`, `"open"` or `"closed"` (closed for good after {@link Connection#close},
   * or waiting to reconnect).
   * @returns {string}
   */
  get state() {
    const ws = this._socket;
    if (ws && ws.readyState === 1) return "open";
    if (ws && ws.readyState === 0) return "connecting";
    return "closed";
  }

  /**
   * Number of messages queued until the connection opens.
   * @returns {number}
   */
  get queued() {
    return this._queue.length;
  }

  /**
   * Calls `handler(message)` for each event named `event` (see the class docs).
   * @param {string} event an action, or "message" for every message.
   * @param {(message: Message) => void} handler
   * @returns {() => void} a function that unsubscribes the handler.
   */
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  /**
   * Unsubscribes `handler` from `event`.
   * @param {string} event
   * @param {Function} handler
   */
  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }

  /**
   * Sends a message now, or queues it until the connection opens.
   * @param {Message} message an object with a string `action`.
   * @returns {boolean} false if it was dropped: closed for good, or the queue is full.
   * @throws {TypeError} if `message` has no string `action`.
   */
  send(message) {
    if (!message || typeof message.action !== "string") {
      throw new TypeError('a netlib message is an object with a string "action"');
    }
    const text = JSON.stringify(message);
    if (this._closed) return false;
    if (this.options.session && !this._off) {
      // Numbered and kept until acknowledged; sent now, or after the next session request.
      this._sent += 1;
      this._kept.push(text);
      if (this._kept.length > this.options.maxKept) this._kept.shift();
      if (this.state === "open") this._socket.send(text);
      return true;
    }
    if (this.state === "open") {
      this._socket.send(text);
      return true;
    }
    if (this._queue.length >= this.options.maxQueue) return false;
    this._queue.push(text);
    return true;
  }

  /**
   * Closes the connection and stops reconnecting; queued messages are dropped.
   * @param {number} [code=1000] RFC 6455 close code (1000, or 3000-4999).
   * @param {string} [reason=""] at most 123 bytes of UTF-8.
   */
  close(code = 1000, reason = "") {
    this._closed = true;
    this._queue.length = 0;
    this._kept.length = 0;
    this._token = null;
    this._epoch = null;
    this._rooms.clear();
    if (this._timer !== null) {
      this.options.clearTimeout(this._timer);
      this._timer = null;
    }
    this._stopAck();
    if (this._socket && this._socket.readyState === 1 && this.options.session) {
      this._socket.send(JSON.stringify({ action: BYE })); // the session ends with the socket
    }
    if (this._socket && this._socket.readyState <= 1) this._socket.close(code, reason);
  }

  _stopAck() {
    if (this._ackTimer !== null) {
      this.options.clearTimeout(this._ackTimer);
      this._ackTimer = null;
    }
  }

  _ack() {
    this._stopAck();
    if (this._received > this._acked && this.state === "open") {
      this._acked = this._received;
      this._socket.send(JSON.stringify({ action: ACK, received: this._received }));
    }
  }

  /** A message of the session arrived: whether to deliver it (not one had already). */
  _count() {
    if (!this._counting) return true;
    if (this._skip > 0) {
      this._skip -= 1;
      return false;
    }
    this._received += 1;
    if (this._received - this._acked >= ACK_EVERY) this._ack();
    else if (this._ackTimer === null) {
      this._ackTimer = this.options.setTimeout(() => {
        this._ackTimer = null;
        this._ack();
      }, ACK_DELAY);
    }
    return true;
  }

  /**
   * A room message's `netlib.at` (see {@link AT}): kept as the room's offset if it is the
   * highest seen, while a session counts its messages.
   * @param {any} at `[room, offset]` as received; anything else is ignored.
   */
  _at(at) {
    if (!this._counting || !Array.isArray(at) || at.length !== 2) return;
    const [room, offset] = at;
    if (typeof room !== "string" || typeof offset !== "string" || !STREAM_ID.test(offset)) return;
    const seen = this._rooms.get(room);
    if (seen === undefined || laterOffset(offset, seen)) this._rooms.set(room, offset);
  }

  /** The session is over: nothing kept, numbering starts again, no room offsets or epoch. */
  _forget() {
    this._token = null;
    this._epoch = null;
    this._rooms.clear();
    this._kept.length = 0;
    this._sent = 0;
    this._received = 0;
    this._acked = 0;
    this._skip = 0;
    this._counting = false;
  }

  /**
   * The server's answer to the session request. Its `epoch`, if any, replaces the one kept
   * (and another epoch drops the room offsets); a new session (`recovered: false`) starts
   * with no room offsets.
   */
  _answer(message) {
    if (message.off === true) {
      // A server without sessions: nothing is kept or numbered until one answers otherwise.
      this._forget();
      this._off = true;
      const held = this._held;
      this._held = null;
      this._awaiting = false;
      if (held) this._deliver(held);
      this._deliver(message);
      return;
    }
    this._off = false;
    const { recovered, received, next } = message;
    if (typeof received !== "number" || typeof next !== "number") return;
    const firstKept = this._sent - this._kept.length + 1;
    this._kept.splice(0, Math.max(0, Math.min(this._kept.length, received - firstKept + 1)));
    if (recovered) {
      this._skip = Math.max(0, this._received + 1 - next);
    } else {
      this._received = 0;
      this._acked = 0;
      this._skip = 0;
      this._rooms.clear();
    }
    if (typeof message.epoch === "string") {
      // Offsets of another epoch mean nothing now (the server's data was lost).
      if (this._epoch !== null && this._epoch !== message.epoch) this._rooms.clear();
      this._epoch = message.epoch;
    }
    this._counting = true;
    this._token = message.token ?? null;
    const held = this._held;
    this._held = null;
    this._awaiting = false;
    if (!recovered && held) this._deliver(held);
    this._deliver(message);
  }

  /**
   * The first frames of a connection with a session: the request, then what is kept. A resume
   * request also carries the kept `epoch` and, when any room message had `netlib.at`, `rooms`:
   * `{room: offset}`, the highest offset per room (another node recovers from these).
   */
  _request(ws) {
    this._counting = false;
    this._stopAck();
    this._held = null;
    this._awaiting = this._token !== null;
    const request = this._token === null ? { action: SESSION } : this._resume();
    ws.send(JSON.stringify(request));
    for (const text of this._kept) ws.send(text);
  }

  /** A resume request: the session's token and numbering, its epoch and room offsets. */
  _resume() {
    const request = {
      action: SESSION,
      token: this._token,
      received: this._received,
      next: this._sent - this._kept.length + 1,
      sent: this._sent,
    };
    if (this._epoch !== null) request.epoch = this._epoch;
    if (this._rooms.size > 0) request.rooms = Object.fromEntries(this._rooms);
    return request;
  }

  _emit(event, message) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) {
      try {
        handler(message);
      } catch (e) {
        // One handler's bug must not stop the others or the connection.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _deliver(message) {
    if (message.action !== "message") this._emit(message.action, message);
    this._emit("message", message);
  }

  _open() {
    this._timer = null;
    let ws;
    try {
      ws = new this.options.WebSocket(this.url);
    } catch (e) {
      this._deliver({ action: "error", error: [0, String(e && e.message ? e.message : e)] });
      this._retry();
      return;
    }
    this._socket = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._attempt = 0;
      if (this.options.session) this._request(ws);
      this._deliver({ action: "socketConnect" });
      const queue = this._queue.splice(0);
      for (const text of queue) ws.send(text);
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return; // netlib sends text only
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!message || typeof message.action !== "string") return;
      const at = message[AT];
      delete message[AT]; // netlib's, never the application's
      if (message.action === PING) {
        ws.send(JSON.stringify({ action: PONG }));
        return;
      }
      if (message.action === PONG) return;
      if (this.options.session) {
        if (message.action === ACK) {
          if (typeof message.received === "number") {
            const firstKept = this._sent - this._kept.length + 1;
            const n = Math.min(this._kept.length, message.received - firstKept + 1);
            if (n > 0) this._kept.splice(0, n);
          }
          return;
        }
        if (message.action === SESSION) {
          this._answer(message);
          return;
        }
        if (message.action === BYE) {
          // The server ended the session (a kick, a shutdown): the next connection starts a
          // new one, numbered from 1. Delivered, so the application can tell.
          this._forget();
          this._deliver(message);
          return;
        }
        if (this._awaiting && message.action === "connected" && this._held === null) {
          this._held = message; // delivered only if the session is not recovered
          return;
        }
        if (!this._off && !this._count()) return; // sent again after a resume; delivered before
        if (at !== undefined) this._at(at);
      }
      this._deliver(message);
    };
    ws.onclose = (event) => {
      if (this._socket === ws) this._socket = null;
      this._stopAck();
      if (opened) {
        this._deliver({
          action: "disconnected",
          code: event.code,
          reason: event.reason,
          wasClean: event.wasClean,
        });
      } else {
        this._deliver({ action: "error", error: [event.code || 0, `cannot connect to ${this.url}`] });
      }
      this._retry();
    };
  }

  _retry() {
    if (this._closed || !this.options.reconnect) {
      this._closed = true;
      this._queue.length = 0;
      return;
    }
    const { minDelay, maxDelay, random } = this.options;
    const cap = Math.min(maxDelay, minDelay * 2 ** Math.min(this._attempt, 30));
    const delay = Math.floor(random() * cap);
    this._attempt += 1;
    this._deliver({ action: "reconnecting", delay, attempt: this._attempt });
    this._timer = this.options.setTimeout(() => this._open(), delay);
  }
}

/**
 * Whether stream id `a` is after `b` (both `"<ms>-<seq>"`): ms first, then seq, as BigInts
 * (a seq may pass 2^53).
 * @param {string} a
 * @param {string} b
 * @returns {boolean}
 */
function laterOffset(a, b) {
  const [ams, aseq] = a.split("-").map(BigInt);
  const [bms, bseq] = b.split("-").map(BigInt);
  return ams > bms || (ams === bms && aseq > bseq);
}
