// bench.mjs measures, on the socket.io polling wire, what a parked client costs in
// server memory and what a delivery costs in server CPU, for this Go server and for
// socket.io's own Node server (sio-server.mjs) one after the other in one run, with
// the same clients: a lean Engine.IO v4 polling client written here, so that the load
// generator spends little and behaves the same against both.
//
//   node bench.mjs [--clients 1000] [--rate 20] [--duration 10] [--only go|sio|json]
//
// `--only json` drives the Go server's own JSON contract with the same generator, to
// tell what the socket.io face adds to it. Each server runs as a process of its own; the figures come from /proc/PID (RSS,
// utime+stime). hold: all clients connected with a GET parked, RSS growth per client.
// fanout: one publisher emits `rate` chats a second for `duration` seconds; every
// client takes each one on its own GET; server CPU per delivery, loss, order, latency.
import http from "node:http";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    clients: { type: "string", default: "1000" },
    rate: { type: "string", default: "20" },
    duration: { type: "string", default: "10" },
    only: { type: "string" },
  },
});
const clients = Number(opt.clients);
const rate = Number(opt.rate);
const duration = Number(opt.duration);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One keep-alive agent for every virtual client: a parked GET holds a socket, and a
// POST takes a free one or opens another.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 100000 });

function request(method, url, body, type = "text/plain;charset=UTF-8") {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { "Content-Type": type, "Content-Length": Buffer.byteLength(body) };
    const req = http.request(url, { method, agent, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

// Client is one socket.io client over polling: a handshake, 40, then a GET loop that
// answers pings and checks that chats arrive numbered 0, 1, 2, ... with none missing.
class Client {
  constructor(base) {
    this.base = `${base}socket.io/?EIO=4&transport=polling`;
    this.posts = Promise.resolve(); // one POST at a time, as the protocol asks
    this.expect = null;
    this.got = this.dup = 0;
    this.latencies = [];
    this.stopped = false;
  }
  async open() {
    const r = await request("GET", this.base);
    if (r.status !== 200) throw new Error(`handshake: ${r.status} ${r.text}`);
    this.url = `${this.base}&sid=${JSON.parse(r.text.slice(1)).sid}`;
    await this.post("40");
    this.running = this.run();
  }
  post(body) {
    this.posts = this.posts.then(async () => {
      const r = await request("POST", this.url, body);
      if (r.status !== 200) throw new Error(`POST: ${r.status} ${r.text}`);
    });
    return this.posts;
  }
  async run() {
    while (!this.stopped) {
      let r;
      try {
        r = await request("GET", this.url);
      } catch (err) {
        if (!this.stopped) this.error = err;
        return;
      }
      if (r.status !== 200) {
        if (!this.stopped) this.error = new Error(`GET: ${r.status} ${r.text}`);
        return;
      }
      for (const p of r.text.split("\x1e")) this.packet(p);
    }
  }
  packet(p) {
    if (p === "2") {
      this.post("3").catch((err) => (this.error = err));
    } else if (p.startsWith('42["chat"')) {
      const [, d] = JSON.parse(p.slice(2));
      this.latencies.push(Date.now() - d.t);
      if (this.expect === null) this.expect = d.n;
      if (d.n < this.expect) this.dup++;
      this.expect = Math.max(this.expect, d.n + 1);
      this.got++;
    }
  }
}

// JSONClient is the same client on the JSON contract: POST /connect, GET /poll with
// its cursor, POST /emit.
class JSONClient extends Client {
  constructor(base) {
    super(base);
    this.root = base;
    this.after = 0;
  }
  async open() {
    const r = await request("POST", `${this.root}connect`, "");
    if (r.status !== 200) throw new Error(`connect: ${r.status} ${r.text}`);
    this.id = JSON.parse(r.text).id;
    this.running = this.run();
  }
  post(packet) { // the bench's publisher posts 42["chat",data]; send it as /emit
    const [event, data] = JSON.parse(packet.slice(2));
    this.posts = this.posts.then(async () => {
      const r = await request("POST", `${this.root}emit?id=${this.id}`, JSON.stringify({ event, data }), "application/json");
      if (r.status !== 204) throw new Error(`emit: ${r.status} ${r.text}`);
    });
    return this.posts;
  }
  async run() {
    while (!this.stopped) {
      let r;
      try {
        r = await request("GET", `${this.root}poll?id=${this.id}&after=${this.after}`);
      } catch (err) {
        if (!this.stopped) this.error = err;
        return;
      }
      if (r.status !== 200) {
        if (!this.stopped) this.error = new Error(`poll: ${r.status} ${r.text}`);
        return;
      }
      for (const m of JSON.parse(r.text).messages) {
        this.after = m.seq;
        if (m.event === "chat") this.packet("42" + JSON.stringify(["chat", m.data]));
      }
    }
  }
}

// usage reads a process's resident memory (KiB) and CPU time (s) from /proc.
function usage(pid) {
  const rss = Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  const cpu = (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (CLK_TCK 100)
  return { rss, cpu };
}

function start(cmd, args, cwd) {
  const proc = spawn(cmd, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let log = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (c) => {
      log += c;
      const m = log.match(/url=(http:\/\/\S+?\/)\s/);
      if (m) resolve({ url: m[1], pid: proc.pid, stop: () => proc.kill("SIGKILL") });
    });
    proc.once("exit", (code) => reject(new Error(`${cmd} exited (${code}):\n${log}`)));
  });
}

const pct = (xs, p) => (xs.length ? xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : NaN);

async function measure(name, server, Kind = Client) {
  await sleep(1000);
  const idle = usage(server.pid);

  // hold: everybody connected, a GET parked each, the presence ticks over.
  const all = [];
  for (let i = 0; i < clients; i += 50) {
    const batch = Array.from({ length: Math.min(50, clients - i) }, () => new Kind(server.url));
    await Promise.all(batch.map((c) => c.open()));
    all.push(...batch);
  }
  await sleep(3000);
  const held = usage(server.pid);
  const errors = all.filter((c) => c.error).length;
  const perClient = ((held.rss - idle.rss) / clients).toFixed(1);
  console.log(`${name} hold: ${clients} clients, server RSS ${idle.rss} -> ${held.rss} KiB, ${perClient} KiB per parked client, errors=${errors}`);

  // fanout: one publisher, every client takes every chat.
  const publisher = new Kind(server.url);
  await publisher.open();
  await sleep(500);
  const before = usage(server.pid);
  const sent = rate * duration;
  const began = Date.now();
  for (let n = 0; n < sent; n++) {
    await publisher.post("42" + JSON.stringify(["chat", { n, t: Date.now() }]));
    await sleep(Math.max(0, began + ((n + 1) * 1000) / rate - Date.now()));
  }
  const everyone = [...all, publisher];
  const want = sent * everyone.length;
  const deadline = Date.now() + 10000;
  while (everyone.reduce((s, c) => s + c.got, 0) < want && Date.now() < deadline) await sleep(50);
  const after = usage(server.pid);
  const got = everyone.reduce((s, c) => s + c.got, 0);
  const dup = everyone.reduce((s, c) => s + c.dup, 0);
  const lost = want - (got - dup);
  const lat = everyone.flatMap((c) => c.latencies);
  const usPer = (((after.cpu - before.cpu) * 1e6) / got).toFixed(1);
  console.log(
    `${name} fanout: ${sent} chats x ${everyone.length} clients: ${got}/${want} delivered, lost=${lost} dup=${dup}, ` +
      `server CPU ${(after.cpu - before.cpu).toFixed(2)} s = ${usPer} us per delivery, latency p50 ${pct(lat, 50)} ms p99 ${pct(lat, 99)} ms, RSS ${after.rss} KiB`,
  );
  for (const c of everyone) c.stopped = true;
  server.stop();
  agent.destroy();
  return { perClient: Number(perClient), usPer: Number(usPer), ok: got === want && dup === 0 && errors === 0 };
}

const results = {};
const dir = mkdtempSync(path.join(tmpdir(), "longpoll-bench-"));
try {
  const bin = path.join(dir, "longpoll");
  if (opt.only !== "sio") {
    execFileSync("go", ["build", "-o", bin, "."], { cwd: path.resolve(here, "../.."), stdio: "inherit" });
  }
  if (opt.only === undefined || opt.only === "go") {
    const go = await start(bin, ["-addr", "127.0.0.1:0", "-max-clients", String(clients + 100)]);
    results.go = await measure("go ", go);
  }
  if (opt.only === "json") {
    const go = await start(bin, ["-addr", "127.0.0.1:0", "-max-clients", String(clients + 100)]);
    await measure("json", go, JSONClient);
  }
  if (opt.only === undefined || opt.only === "sio") {
    const sio = await start(process.execPath, ["sio-server.mjs"], here);
    results.sio = await measure("sio", sio);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (results.go && results.sio) {
  console.log(
    `SUMMARY clients=${clients} memory per parked client go/sio=${(results.go.perClient / results.sio.perClient).toFixed(2)} ` +
      `CPU per delivery go/sio=${(results.go.usPer / results.sio.usPer).toFixed(2)} result=${results.go.ok && results.sio.ok ? "PASS" : "FAIL"}`,
  );
}
process.exit(0);
