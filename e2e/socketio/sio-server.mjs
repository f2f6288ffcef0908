// sio-server.mjs is the same chat on socket.io's own Node server (socket.io 4.8,
// polling only), for bench.mjs to measure side by side with the Go server. It does
// what the hub does, in socket.io's way: the online count to a newcomer at once and
// to everybody at most once a second when it changed; each chat to everybody, acked.
//
//   node sio-server.mjs [port]      prints url=http://127.0.0.1:PORT/ when listening
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 0);
const http = createServer();
const io = new Server(http, {
  transports: ["polling"],
  pingInterval: 25000, // as the Go server's -poll-timeout
  pingTimeout: 30000, // as its -client-ttl
  maxHttpBufferSize: 65536, // as its -max-message
});

let announced = 0;
io.on("connection", (socket) => {
  socket.emit("online", io.engine.clientsCount);
  socket.on("chat", (data, ack) => {
    io.emit("chat", data);
    if (typeof ack === "function") ack();
  });
});
setInterval(() => {
  if (io.engine.clientsCount !== announced) {
    announced = io.engine.clientsCount;
    io.emit("online", announced);
  }
}, 1000).unref();

http.listen(port, "127.0.0.1", () => {
  console.error(`url=http://127.0.0.1:${http.address().port}/`);
});
process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});
