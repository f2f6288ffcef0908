// The official socket.io client, over long-polling only, against the real program:
// it connects, hears the online count, emits a chat with an ack, sees a JSON client's
// chats in the order that client sees them, and reconnects by itself after the server
// restarts. Run with `npm ci && node --test` in this folder; Go must be on PATH.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dir = mkdtempSync(path.join(tmpdir(), "longpoll-sio-"));
const bin = path.join(dir, "longpoll");

before(() => {
  execFileSync("go", ["build", "-o", bin, "."], { cwd: root, stdio: "inherit" });
});
after(() => rmSync(dir, { recursive: true, force: true }));

// startServer runs the program on addr and resolves with its URL, read from the
// start-up line, once it is listening.
function startServer(addr = "127.0.0.1:0") {
  const proc = spawn(bin, ["-addr", addr, "-poll-timeout", "2s", "-client-ttl", "3s"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  return new Promise((resolve, reject) => {
    let log = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      log += chunk;
      const m = log.match(/url=(http:\/\/\S+?)\/?\s/);
      if (m) resolve({ url: m[1], addr: new URL(m[1]).host, stop: () => (proc.kill("SIGTERM"), exited) });
    });
    proc.once("exit", (code) => reject(new Error(`server exited (${code}) before it listened:\n${log}`)));
  });
}

// jsonClient speaks the JSON contract, as client.js does, collecting chats in order.
async function jsonClient(url) {
  const { id } = await (await fetch(`${url}/connect`, { method: "POST" })).json();
  const chats = [];
  let after = 0;
  let stopped = false;
  let failed = null; // why the poll loop ended early, if it did
  const loop = (async () => {
    while (!stopped) {
      const res = await fetch(`${url}/poll?id=${id}&after=${after}`);
      assert.equal(res.status, 200);
      for (const m of (await res.json()).messages) {
        after = m.seq;
        if (m.event === "chat") chats.push(m.data);
      }
    }
  })().catch((err) => {
    if (!stopped) failed = err;
  });
  return {
    chats,
    failed: () => failed,
    emit: async (data) => {
      const res = await fetch(`${url}/emit?id=${id}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ event: "chat", data }),
      });
      assert.equal(res.status, 204);
    },
    stop: async () => {
      stopped = true;
      await fetch(`${url}/disconnect?id=${id}`, { method: "POST" });
      await loop;
    },
  };
}

// until resolves once check() is true, polling every 20 ms, or rejects after ms.
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function once(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (...args) => (clearTimeout(timer), resolve(args)));
  });
}

test("the official client chats through the hub with a JSON client, in one order", async () => {
  const server = await startServer();
  const socket = io(server.url, { transports: ["polling"], reconnectionDelay: 100, reconnectionDelayMax: 500 });
  try {
    const [count] = await once(socket, "online");
    assert.equal(count, 1, "the first thing a new client hears is the online count");
    assert.ok(socket.connected);

    const sioChats = [];
    socket.on("chat", (data) => sioChats.push(data));
    const ann = await jsonClient(server.url);

    const ack = await socket.timeout(5000).emitWithAck("chat", { name: "sio", text: "hello" });
    assert.equal(ack, undefined, "an empty ack: the chat is in every mailbox");
    const refused = await socket.timeout(5000).emitWithAck("online", 99);
    assert.match(refused.error, /reserved/);

    // Both clients emit at once; each must see all chats, in the same order.
    const n = 30;
    await Promise.all([
      (async () => {
        for (let i = 0; i < n; i++) await ann.emit({ name: "ann", text: `a${i}` });
      })(),
      (async () => {
        for (let i = 0; i < n; i++) await socket.timeout(5000).emitWithAck("chat", { name: "sio", text: `s${i}` });
      })(),
    ]);
    const total = 2 * n + 1; // and "hello"
    await until(() => ann.failed() || (ann.chats.length >= total && sioChats.length >= total), 10000, "every chat on both wires");
    assert.equal(ann.failed(), null);
    assert.deepEqual(sioChats, ann.chats, "one hub, one order");
    assert.equal(sioChats.length, total, "nothing twice");
    assert.deepEqual(
      ann.chats.filter((c) => c.name === "ann").map((c) => c.text),
      Array.from({ length: n }, (_, i) => `a${i}`),
    );
    await ann.stop();
  } finally {
    socket.close();
    await server.stop();
  }
});

test("the official client reconnects by itself after the server restarts", async () => {
  let server = await startServer();
  const socket = io(server.url, { transports: ["polling"], reconnectionDelay: 100, reconnectionDelayMax: 500 });
  try {
    await once(socket, "connect");
    const firstID = socket.id;
    let heard = 0; // online counts heard since the restart
    socket.on("online", (n) => (heard = n));
    const disconnected = once(socket, "disconnect");
    await server.stop();
    const [reason] = await disconnected;
    assert.notEqual(reason, "io server disconnect", "a reason the client reconnects after");
    heard = 0;

    const reconnected = once(socket, "connect", 15000);
    server = await startServer(server.addr);
    await reconnected;
    assert.notEqual(socket.id, firstID, "a new session on the new server");
    await until(() => heard === 1, 5000, "the new server's online count");
    const echo = once(socket, "chat");
    await socket.timeout(5000).emitWithAck("chat", { name: "sio", text: "back" });
    assert.deepEqual((await echo)[0], { name: "sio", text: "back" });
  } finally {
    socket.close();
    await server.stop();
  }
});

test("the heartbeat keeps an idle client connected", async () => {
  const server = await startServer(); // -poll-timeout 2s: a ping every 2 s
  const socket = io(server.url, { transports: ["polling"] });
  try {
    await once(socket, "connect");
    let pings = 0;
    let disconnects = 0;
    socket.io.on("ping", () => pings++);
    socket.on("disconnect", () => disconnects++);
    await until(() => pings >= 2, 8000, "two pings");
    assert.equal(disconnects, 0);
    assert.ok(socket.connected);
  } finally {
    socket.close();
    await server.stop();
  }
});
