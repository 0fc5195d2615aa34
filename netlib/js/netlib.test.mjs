// Unit tests of netlib.js with a fake WebSocket and fake timers: `node --test netlib/js/`.
// No packages needed (node:test and node:assert are built in). netlib/tests/ws.rs runs this
// when node is installed, and also runs netlib.js against a real server.

import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "./netlib.js";

/** A WebSocket double: records what is sent; the test opens, feeds and closes it. */
class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.made.push(this);
  }
  send(text) {
    assert.equal(this.readyState, 1, "sent while not open");
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: true });
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(message) {
    this.onmessage?.({ data: typeof message === "string" ? message : JSON.stringify(message) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "", wasClean: false });
  }
}

/** Timers run by hand. */
function fakeTimers() {
  const pending = [];
  return {
    pending,
    setTimeout: (fn, ms) => {
      pending.push({ fn, ms });
      return pending.length - 1;
    },
    clearTimeout: (id) => {
      if (pending[id]) pending[id].fn = null;
    },
    runNext() {
      const t = pending.shift();
      t?.fn?.();
      return t;
    },
  };
}

function setup(options = {}) {
  FakeSocket.made = [];
  const timers = fakeTimers();
  const conn = connect("ws://game.example/ws", {
    WebSocket: FakeSocket,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5,
    session: false,
    ...options,
  });
  return { conn, timers, socket: () => FakeSocket.made.at(-1) };
}

test("messages sent while connecting are queued, then sent in order", () => {
  const { conn, socket } = setup({ maxQueue: 2 });
  assert.equal(conn.state, "connecting");
  assert.equal(conn.send({ action: "a" }), true);
  assert.equal(conn.send({ action: "b", n: 1 }), true);
  assert.equal(conn.send({ action: "c" }), false, "over maxQueue");
  assert.equal(conn.queued, 2);
  assert.equal(socket().sent.length, 0);
  socket().open();
  assert.deepEqual(socket().sent, [{ action: "a" }, { action: "b", n: 1 }]);
  assert.equal(conn.send({ action: "d" }), true);
  assert.deepEqual(socket().sent.at(-1), { action: "d" });
  assert.throws(() => conn.send({ text: "no action" }), TypeError);
});

test("handlers get their action, then the catch-all every message", () => {
  const { conn, socket } = setup();
  const seen = [];
  conn.on("chat", (m) => seen.push(["chat", m.text]));
  const off = conn.on("message", (m) => seen.push(["message", m.action]));
  conn.on("socketConnect", () => seen.push(["socketConnect"]));
  socket().open();
  socket().receive({ action: "connected" });
  socket().receive({ action: "chat", text: "hi" });
  socket().receive("not json");
  socket().receive({ no: "action" });
  off();
  socket().receive({ action: "chat", text: "again" });
  assert.deepEqual(seen, [
    ["socketConnect"],
    ["message", "socketConnect"],
    ["message", "connected"],
    ["chat", "hi"],
    ["message", "chat"],
    ["chat", "again"],
  ]);
});

test("netlib.ping is answered with netlib.pong and not delivered", () => {
  const { conn, socket } = setup();
  const seen = [];
  conn.on("message", (m) => seen.push(m.action));
  socket().open();
  socket().receive({ action: "netlib.ping" });
  assert.deepEqual(socket().sent, [{ action: "netlib.pong" }]);
  assert.deepEqual(seen, ["socketConnect"]);
});

test("a lost connection reconnects with exponential backoff and full jitter", () => {
  const { conn, timers, socket } = setup({ minDelay: 100, maxDelay: 1000 });
  const events = [];
  conn.on("disconnected", (d) => events.push(["disconnected", d.code, d.wasClean]));
  conn.on("reconnecting", (r) => events.push(["reconnecting", r.delay, r.attempt]));
  conn.on("error", (e) => events.push(["error", e.error[0]]));
  socket().open();
  socket().drop();
  // random() = 0.5: half of min(maxDelay, minDelay * 2^attempt).
  assert.deepEqual(events.splice(0), [
    ["disconnected", 1006, false],
    ["reconnecting", 50, 1],
  ]);
  assert.equal(timers.runNext().ms, 50);
  socket().drop(); // fails before opening
  timers.runNext();
  socket().drop();
  timers.runNext();
  socket().drop();
  timers.runNext();
  socket().drop();
  assert.deepEqual(events.splice(0), [
    ["error", 1006],
    ["reconnecting", 100, 2],
    ["error", 1006],
    ["reconnecting", 200, 3],
    ["error", 1006],
    ["reconnecting", 400, 4],
    ["error", 1006],
    ["reconnecting", 500, 5],
  ]);
  timers.runNext();
  socket().open();
  socket().drop();
  assert.deepEqual(events.splice(0, 2), [
    ["disconnected", 1006, false],
    ["reconnecting", 50, 1],
  ], "a successful connection resets the backoff");
});

test("jitter spans zero to the cap", () => {
  for (const [r, want] of [[0, 0], [0.999, 99]]) {
    const { conn, socket } = setup({ minDelay: 100, random: () => r });
    let delay;
    conn.on("reconnecting", (e) => (delay = e.delay));
    socket().drop();
    assert.equal(delay, want);
  }
});

test("close() stops reconnecting and drops the queue", () => {
  const { conn, timers, socket } = setup();
  socket().open();
  socket().drop();
  assert.equal(timers.pending.length, 1);
  conn.close();
  assert.equal(timers.runNext().fn, null, "the pending reconnect was cancelled");
  assert.equal(FakeSocket.made.length, 1);
  assert.equal(conn.send({ action: "late" }), false);
  assert.equal(conn.state, "closed");
});

test("reconnect: false gives up after the first loss", () => {
  const { conn, timers, socket } = setup({ reconnect: false });
  const seen = [];
  conn.on("disconnected", (d) => seen.push(d.code));
  socket().open();
  socket().close(1001, "going away");
  assert.deepEqual(seen, [1001]);
  assert.equal(timers.pending.length, 0);
  assert.equal(conn.send({ action: "x" }), false);
});

/** Runs the pending timers until a new socket is made (cancelled timers run as nothing). */
function runUntilReconnect(timers) {
  const made = FakeSocket.made.length;
  while (FakeSocket.made.length === made) assert.ok(timers.runNext(), "a reconnect is pending");
}

test("a session: the request goes first, messages are numbered, kept until acknowledged", () => {
  const { conn, timers, socket } = setup({ session: true });
  conn.send({ action: "early" }); // before the socket opens: kept, sent after the request
  socket().open();
  assert.deepEqual(socket().sent, [{ action: "netlib.session" }, { action: "early" }]);
  socket().receive({ action: "connected" });
  socket().receive({ action: "netlib.session", token: "t".repeat(32), id: 7, recovered: false, received: 0, next: 1 });
  conn.send({ action: "a" });
  socket().receive({ action: "netlib.ack", received: 1 });
  assert.deepEqual(conn._kept, ['{"action":"a"}'], "early was acknowledged");
  socket().receive({ action: "m", n: 1 });
  assert.equal(timers.pending.at(-1).ms, 200, "an acknowledgement waits 200 ms at most");
  timers.pending.at(-1).fn();
  assert.deepEqual(socket().sent.at(-1), { action: "netlib.ack", received: 1 });
});

test("a resume sends what was not acknowledged, drops what it had, and hides the greeting", () => {
  const { conn, timers, socket } = setup({ session: true });
  const seen = [];
  conn.on("message", (m) => seen.push(m.action === "m" ? `m${m.n}` : m.action));
  socket().open();
  socket().receive({ action: "connected" });
  socket().receive({ action: "netlib.session", token: "a".repeat(32), id: 7, recovered: false, received: 0, next: 1 });
  conn.send({ action: "x", n: 1 });
  conn.send({ action: "x", n: 2 });
  socket().receive({ action: "netlib.ack", received: 1 });
  socket().receive({ action: "m", n: 1 });
  socket().receive({ action: "m", n: 2 });
  socket().drop();
  conn.send({ action: "x", n: 3 }); // offline: kept for the resume
  runUntilReconnect(timers); // the pending acknowledgement was cancelled with the socket
  socket().open();
  assert.deepEqual(socket().sent, [
    { action: "netlib.session", token: "a".repeat(32), received: 2, next: 2, sent: 3 },
    { action: "x", n: 2 },
    { action: "x", n: 3 },
  ]);
  socket().receive({ action: "connected", id: 99 });
  socket().receive({ action: "netlib.session", token: "a".repeat(32), id: 7, recovered: true, received: 2, next: 3 });
  socket().receive({ action: "m", n: 3 });
  assert.deepEqual(conn._kept, ['{"action":"x","n":3}'], "the server had x2");
  assert.deepEqual(
    seen.filter((a) => a !== "socketConnect" && a !== "disconnected" && a !== "reconnecting"),
    ["connected", "netlib.session", "m1", "m2", "netlib.session", "m3"],
  );
});

test("a refused resume delivers the greeting, then the answer; counting starts again", () => {
  const { conn, timers, socket } = setup({ session: true });
  const seen = [];
  conn.on("message", (m) => seen.push(m.action));
  socket().open();
  socket().receive({ action: "netlib.session", token: "b".repeat(32), id: 1, recovered: false, received: 0, next: 1 });
  socket().receive({ action: "m" });
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  socket().receive({ action: "connected" });
  socket().receive({ action: "netlib.session", token: "c".repeat(32), id: 2, recovered: false, received: 0, next: 1, reason: "no such session" });
  assert.deepEqual(seen.slice(-2), ["connected", "netlib.session"]);
  assert.equal(conn._received, 0);
  conn.close();
  assert.deepEqual(socket().sent.at(-1), { action: "netlib.bye" }, "a close ends the session");
});

test("the server's goodbye ends the session: the next connection asks for a new one", () => {
  const { conn, timers, socket } = setup({ session: true });
  const seen = [];
  conn.on("netlib.bye", () => seen.push("bye"));
  socket().open();
  socket().receive({ action: "netlib.session", token: "d".repeat(32), id: 1, recovered: false, received: 0, next: 1 });
  socket().receive({ action: "netlib.bye" });
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.deepEqual(seen, ["bye"]);
  assert.deepEqual(socket().sent, [{ action: "netlib.session" }]);
});

test("a server without sessions says so: nothing is kept, nothing sent twice", () => {
  const { conn, timers, socket } = setup({ session: true });
  socket().open();
  socket().receive({ action: "connected" });
  socket().receive({ action: "netlib.session", off: true });
  conn.send({ action: "a" });
  assert.deepEqual(conn._kept, []);
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.deepEqual(socket().sent, [{ action: "netlib.session" }], "a is not sent again");
});

test("after the server's goodbye, the next session is numbered from 1", () => {
  const { conn, timers, socket } = setup({ session: true });
  socket().open();
  socket().receive({ action: "netlib.session", token: "e".repeat(32), id: 1, recovered: false, received: 0, next: 1 });
  conn.send({ action: "a" });
  socket().receive({ action: "m" });
  socket().receive({ action: "netlib.bye" });
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  socket().receive({ action: "netlib.session", token: "f".repeat(32), id: 2, recovered: false, received: 0, next: 1 });
  conn.send({ action: "b" });
  socket().receive({ action: "netlib.ack", received: 1 });
  assert.deepEqual(conn._kept, [], "b was number 1 of the new session");
});

test("a room message's netlib.at is removed before any handler sees it", () => {
  const { conn, socket } = setup({ session: true });
  const seen = [];
  conn.on("chat", (m) => seen.push(["chat", { ...m }]));
  conn.on("message", (m) => m.action === "chat" && seen.push(["message", { ...m }]));
  socket().open();
  socket().receive({ action: "netlib.session", token: "g".repeat(32), id: 1, recovered: false, received: 0, next: 1, epoch: "e1" });
  socket().receive({ action: "chat", text: "hi", "netlib.at": ["lobby", "1700000000000-0"] });
  socket().receive({ action: "chat", text: "odd", "netlib.at": ["lobby", 5] }); // not an offset: ignored
  assert.deepEqual(seen, [
    ["chat", { action: "chat", text: "hi" }],
    ["message", { action: "chat", text: "hi" }],
    ["chat", { action: "chat", text: "odd" }],
    ["message", { action: "chat", text: "odd" }],
  ]);
  assert.deepEqual([...conn._rooms], [["lobby", "1700000000000-0"]]);
});

test("a resume carries the epoch and each room's highest offset, compared as numbers", () => {
  const { conn, timers, socket } = setup({ session: true });
  socket().open();
  socket().receive({ action: "netlib.session", token: "h".repeat(32), id: 1, recovered: false, received: 0, next: 1, epoch: "e1" });
  const at = (room, offset) => socket().receive({ action: "m", "netlib.at": [room, offset] });
  at("a", "5-9");
  at("a", "5-10"); // seq 10 > 9 (not as strings)
  at("a", "5-2");
  at("b", "9-99");
  at("b", "10-0"); // ms 10 > 9 whatever the seq
  at("b", "9-100");
  at("c", "1-18446744073709551614");
  at("c", "1-18446744073709551615"); // past 2^53: equal as doubles, not as BigInts
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.deepEqual(socket().sent, [{
    action: "netlib.session",
    token: "h".repeat(32),
    received: 8,
    next: 1,
    sent: 0,
    epoch: "e1",
    rooms: { a: "5-10", b: "10-0", c: "1-18446744073709551615" },
  }]);
  // A recovered answer without an epoch keeps the one known; offsets go on from the resume.
  socket().receive({ action: "netlib.session", token: "h".repeat(32), id: 1, recovered: true, received: 0, next: 9 });
  at("a", "6-0");
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.equal(socket().sent[0].epoch, "e1");
  assert.deepEqual(socket().sent[0].rooms, { a: "6-0", b: "10-0", c: "1-18446744073709551615" });
});

test("a new session (not recovered) forgets the room offsets and keeps the new epoch", () => {
  const { conn, timers, socket } = setup({ session: true });
  socket().open();
  socket().receive({ action: "netlib.session", token: "i".repeat(32), id: 1, recovered: false, received: 0, next: 1, epoch: "e1" });
  socket().receive({ action: "m", "netlib.at": ["a", "3-0"] });
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.deepEqual(socket().sent[0].rooms, { a: "3-0" });
  socket().receive({ action: "netlib.session", token: "j".repeat(32), id: 2, recovered: false, received: 0, next: 1, epoch: "e2" });
  assert.equal(conn._rooms.size, 0);
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.deepEqual(socket().sent, [
    { action: "netlib.session", token: "j".repeat(32), received: 0, next: 1, sent: 0, epoch: "e2" },
  ], "no rooms");
});

test("the server's goodbye forgets the epoch and the room offsets", () => {
  const { conn, timers, socket } = setup({ session: true });
  socket().open();
  socket().receive({ action: "netlib.session", token: "k".repeat(32), id: 1, recovered: false, received: 0, next: 1, epoch: "e1" });
  socket().receive({ action: "m", "netlib.at": ["a", "3-0"] });
  socket().receive({ action: "netlib.bye" });
  assert.equal(conn._epoch, null);
  assert.equal(conn._rooms.size, 0);
  socket().drop();
  runUntilReconnect(timers);
  socket().open();
  assert.deepEqual(socket().sent, [{ action: "netlib.session" }]);
});
