// The chat workload's server in Socket.IO 4: one node, alone (no argument) or one node of a
// cluster sharing the room through Redis with @socket.io/redis-adapter (REDIS_URL).
// Usage: node server.mjs [REDIS_URL]. Prints "socketio listening on 127.0.0.1:PORT".
// Every client joins the room "lobby"; a "message" event is relayed to the room (sender
// included) with the sender's name, as the netlib chat does. WebSocket transport only, no
// compression (perMessageDeflate is off by default in Socket.IO 4).
import { createServer } from "node:http";
import { Server } from "socket.io";

const options = { transports: ["websocket"] };
if (process.argv[2]) {
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const pub = createClient({ url: process.argv[2] });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  options.adapter = createAdapter(pub, sub);
}
const http = createServer();
const io = new Server(http, options);
io.on("connection", (socket) => {
  socket.join("lobby");
  socket.data.nick = "anonymous";
  socket.on("nickname", (m) => { socket.data.nick = m.nickname; socket.emit("renamed", { to: m.nickname }); });
  socket.on("message", (m) => {
    io.to("lobby").emit("message", { message: m.message, who: socket.data.nick, room: "lobby", time: Date.now() });
  });
});
http.listen(0, "127.0.0.1", () => console.log(`socketio listening on 127.0.0.1:${http.address().port}`));
