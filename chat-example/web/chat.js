// The netlib chat in a browser: the same actions as chat-client, over netlib.js. Every piece of
// user text goes into the page with textContent, never as HTML.
import { connect } from "/netlib.js";

const $ = (id) => document.getElementById(id);
const log = $("log");
const state = { id: null, nick: "anonymous", room: "lobby", members: new Set(), total: null, rooms: [] };

const conn = connect(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
window.chat = { conn, state }; // for the tests and the curious

// ------------------------------------------------------------------ the log

/** True when the log is scrolled to (nearly) the bottom: only then does a new line scroll it. */
function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

/** Appends one line: [time] who text, with a class for own, private, notice or error lines. */
function line({ time, who, text, kind }) {
  const stick = atBottom();
  const li = document.createElement("li");
  if (kind) li.className = kind;
  const t = document.createElement("time");
  const when = time ? new Date(time) : new Date();
  t.dateTime = when.toISOString();
  t.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  li.append(t);
  if (who) {
    const w = document.createElement("span");
    w.className = "who";
    w.textContent = who;
    li.append(w);
  }
  li.append(document.createTextNode(text));
  log.append(li);
  while (log.children.length > 2000) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
  else $("jump").hidden = false;
}
const notice = (text, time) => line({ text, time, kind: "notice" });

log.addEventListener("scroll", () => { if (atBottom()) $("jump").hidden = true; });
$("jump").addEventListener("click", () => { log.scrollTop = log.scrollHeight; $("jump").hidden = true; });

// ------------------------------------------------------------------ members and rooms

function showMembers() {
  const ul = $("members");
  ul.replaceChildren();
  const names = [...state.members].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  for (const name of names) {
    const li = document.createElement("li");
    if (name === state.nick) li.className = "me";
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = name;
    b.title = `Private message to ${name}`;
    b.addEventListener("click", () => { $("say").value = `/msg ${name} `; $("say").focus(); });
    li.append(b);
    ul.append(li);
  }
  const n = state.total ?? state.members.size;
  $("count").textContent = `(${n})`;
  // The room list shows the current room's count as the member list knows it.
  const here = state.rooms.find((r) => r.name === state.room);
  if (here && here.members !== n) { here.members = n; showRooms(state.rooms); }
}

function showRoom() {
  $("room").textContent = `#${state.room}`;
  $("say").placeholder = `Message #${state.room} — /msg nick text for a private message, /help for more`;
  $("nick").placeholder = state.nick;
}

function showRooms(rooms) {
  state.rooms = rooms;
  const ul = $("rooms");
  ul.replaceChildren();
  for (const r of rooms) {
    const li = document.createElement("li");
    if (r.name === state.room) li.className = "current";
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `#${r.name} (${r.members})`;
    b.addEventListener("click", () => { if (r.name !== state.room) send({ action: "join", room: r.name }); });
    li.append(b);
    ul.append(li);
  }
}

// ------------------------------------------------------------------ server messages

const handlers = {
  connected(m) { state.id = m.id ?? null; },
  welcome(m) {
    state.id = m.id; state.nick = m.nickname; state.room = m.room;
    state.members = new Set([m.nickname]); state.total = m.members;
    showRoom(); showMembers();
    notice(`You are ${m.nickname} in #${m.room} (${m.members} members)`, m.time);
    send({ action: "rooms" });
  },
  message(m) {
    line({ time: m.time, who: m.who, text: m.message, kind: m.who === state.nick ? "own" : "" });
  },
  private(m) {
    const who = m.echo ? `you → ${m.to}` : `${m.who} → you`;
    line({ time: m.time, who, text: m.message, kind: "private" });
  },
  players(m) {
    if (m.room && m.room !== state.room) return;
    state.members = new Set(m.players); state.total = null; showMembers();
  },
  members(m) {
    if (m.room !== state.room) return;
    for (const n of m.joined) state.members.add(n);
    for (const n of m.left) state.members.delete(n);
    for (const [a, b] of m.renamed) { state.members.delete(a); state.members.add(b); }
    state.total = m.count; showMembers();
    const parts = [];
    if (m.joined.length) parts.push(`joined: ${m.joined.join(", ")}`);
    if (m.left.length) parts.push(`left: ${m.left.join(", ")}`);
    for (const [a, b] of m.renamed) parts.push(`${a} is now ${b}`);
    if (parts.length) notice(parts.join("; "), m.time);
  },
  joined(m) {
    state.members.add(m.nickname); showMembers();
    notice(`${m.nickname} joined #${m.room}`, m.time);
  },
  left(m) {
    state.members.delete(m.nickname); showMembers();
    notice(`${m.nickname} left #${m.room} (${m.reason})`, m.time);
  },
  renamed(m) {
    state.members.delete(m.from); state.members.add(m.to);
    if (m.id === state.id) { state.nick = m.to; showRoom(); notice(`You are now known as ${m.to}`, m.time); }
    else notice(`${m.from} is now known as ${m.to}`, m.time);
    showMembers();
  },
  who(m) {
    const names = m.users.map((u) => m.room ? u.nickname : `${u.nickname} (#${u.room})`);
    const page = m.pages > 1 ? ` (page ${m.page} of ${m.pages})` : "";
    notice(`${m.total ?? m.users.length} user(s)${page}: ${names.join(", ")}`);
  },
  rooms(m) { showRooms(m.rooms); },
  op() { notice("You are an operator now"); },
  kicked(m) { line({ time: m.time, text: `You were kicked by ${m.by}: ${m.reason}`, kind: "error" }); },
  help(m) { notice(`Actions: ${m.actions.join(", ")}. Commands: /nick, /msg, /who, /join, /part, /rooms, /op, /kick, /quit`); },
  refused(m) { line({ text: `${m.request || "request"} refused: ${m.text}`, kind: "error" }); },
  // netlib's session (netlib.js asks for one): after a lost connection, the same user comes
  // back with every message it missed, or, if the server could not keep it, as a new user.
  "netlib.session"(m) {
    if (!state.session) { state.session = true; return; }
    if (m.recovered) notice("Reconnected: nothing was lost");
    else notice(`Reconnected as a new session (${m.reason ?? "the server forgot the old one"}); some messages may be missing`);
  },
};

conn.on("message", (m) => { const h = handlers[m.action]; if (h) h(m); });
conn.on("socketConnect", () => { setStatus("connected", "ok"); });
conn.on("disconnected", (d) => { setStatus(`disconnected (${d.code}); reconnecting…`, "bad"); });
conn.on("reconnecting", () => { setStatus("reconnecting…", "bad"); });
conn.on("error", (e) => { setStatus(`error: ${e.error ?? "connection failed"}`, "bad"); });

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = `status ${kind}`;
}

// ------------------------------------------------------------------ user input

function send(msg) {
  if (!conn.send(msg)) line({ text: "not sent: too many messages waiting for the connection", kind: "error" });
}

/** One input line: a message, or a chat-client style command. */
function input(text) {
  if (!text.trim()) return;
  if (text.startsWith("//")) return send({ action: "message", message: text.slice(1) });
  if (!text.startsWith("/")) return send({ action: "message", message: text });
  const [cmd, ...rest] = text.slice(1).split(/\s+/);
  const arg = rest.join(" ").trim();
  switch (cmd.toLowerCase()) {
    case "nick": return arg ? send({ action: "nickname", nickname: arg }) : notice("usage: /nick NAME");
    case "msg": {
      const [to, ...words] = rest;
      const message = words.join(" ");
      return to && message ? send({ action: "private", to, message }) : notice("usage: /msg NICK TEXT");
    }
    case "who": return send(arg ? { action: "who", room: arg.replace(/^#/, "") } : { action: "who" });
    case "join": return arg ? send({ action: "join", room: arg.replace(/^#/, "") }) : notice("usage: /join ROOM");
    case "part": return send({ action: "part" });
    case "rooms": return send({ action: "rooms" });
    case "op": return arg ? send({ action: "op", password: arg }) : notice("usage: /op PASSWORD");
    case "kick": {
      const [nickname, ...why] = rest;
      return nickname ? send({ action: "kick", nickname, reason: why.join(" ") || undefined }) : notice("usage: /kick NICK [REASON]");
    }
    case "quit": return send(arg ? { action: "quit", reason: arg } : { action: "quit" });
    case "help": return send({ action: "help" });
    default: return notice(`unknown command /${cmd}; /help lists them`);
  }
}

$("say-form").addEventListener("submit", (e) => {
  e.preventDefault();
  input($("say").value);
  $("say").value = "";
});
$("nick-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const nick = $("nick").value.trim();
  if (nick) send({ action: "nickname", nickname: nick });
  $("nick").value = "";
});
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = $("join").value.trim().replace(/^#/, "");
  if (room) send({ action: "join", room });
  $("join").value = "";
});
$("part").addEventListener("click", () => send({ action: "part" }));
$("refresh-rooms").addEventListener("click", () => send({ action: "rooms" }));
$("toggle-side").addEventListener("click", () => {
  const open = $("side").classList.toggle("open");
  $("toggle-side").setAttribute("aria-expanded", String(open));
});
$("say").focus();
