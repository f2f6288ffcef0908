// bench.mjs measures, on the socket.io polling wire, what a parked client costs in
// server memory and what a delivery costs in server CPU, for this Go server and for
// socket.io's own Node server (sio-server.mjs) one after the other in one run, with
// the same clients: a lean Engine.IO v4 polling client written here, so that the load
// generator spends little and behaves the same against both.
//
//   node bench.mjs [--clients 1000] [--rate 20] [--duration 10] [--only go,sio,...]
//                  [--requests 20000] [--gomaxprocs N]
//
// `--only` lists the servers to measure, in that order (default go,sio):
//   go         this server's socket.io face        sio        socket.io 4.8 (sio-server.mjs)
//   json       this server's own JSON contract, to tell what the socket.io face adds
//   gofloor    floor/main.go: a trivial net/http server, no per-client state
//   nodefloor  floor/node-floor.mjs: the same trivial server on node:http
// The floors say what net/http and node:http cost by themselves on the same request
// shapes: each is measured twice, answering at once (`--requests` GETs and POSTs,
// 50 at a time: CPU per request) and parking GETs until a POST wakes them all (the
// hold and fanout below, with the POST's body as every answer). A floor keeps nothing
// for a client whose GET is not parked when a POST comes, so it may miss chats; its
// CPU is divided by what it did deliver. At the default 20 chats a second the Go floor
// wakes 1,000 parked GETs too slowly for all of them to park again before the next
// chat, and misses a third of them; `--rate 5` lets both floors deliver everything.
// `--gomaxprocs` sets GOMAXPROCS for the Go servers. Each server runs as a process of its own; the figures come from /proc/PID (RSS,
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
    only: { type: "string", default: "go,sio" },
    requests: { type: "string", default: "20000" },
    gomaxprocs: { type: "string" },
  },
});
const clients = Number(opt.clients);
const rate = Number(opt.rate);
const duration = Number(opt.duration);
const only = opt.only.split(",");
const goEnv = opt.gomaxprocs ? { ...process.env, GOMAXPROCS: opt.gomaxprocs } : process.env;
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

// FloorClient is the same client against a floor server: no handshake, the same URL
// shape with a made-up sid, a GET loop and POSTs; the answer is the packet posted.
class FloorClient extends Client {
  async open() {
    this.url = `${this.base}&sid=${Math.random().toString(36).slice(2, 12).padEnd(20, "x")}`;
    this.running = this.run();
  }
}

// echo drives a floor server that answers at once: `--requests` requests, half GETs
// and half POSTs of a ping-sized body, 50 at a time, on floor-shaped URLs.
async function echo(name, server) {
  await sleep(1000);
  const base = `${server.url}socket.io/?EIO=4&transport=polling&sid=`;
  const total = Number(opt.requests);
  let next = 0;
  const worker = async (w) => {
    const url = base + String(w).padStart(20, "x");
    while (next < total) {
      const i = next++;
      const r = i % 2 ? await request("POST", url, "3") : await request("GET", url);
      if (r.status !== 200) throw new Error(`${name}: ${r.status}`);
    }
  };
  // warm up, then measure
  await Promise.all(Array.from({ length: 50 }, (_, w) => request("GET", base + w)));
  const before = usage(server.pid);
  const began = Date.now();
  await Promise.all(Array.from({ length: 50 }, (_, w) => worker(w)));
  const after = usage(server.pid);
  const usPer = (((after.cpu - before.cpu) * 1e6) / total).toFixed(1);
  console.log(
    `${name} echo: ${total} requests in ${((Date.now() - began) / 1000).toFixed(1)} s, server CPU ` +
      `${(after.cpu - before.cpu).toFixed(2)} s = ${usPer} us per request, RSS ${after.rss} KiB`,
  );
  server.stop();
  agent.destroy();
  return { usPerRequest: Number(usPer) };
}

// usage reads a process's resident memory (KiB) and CPU time (s) from /proc.
function usage(pid) {
  const rss = Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  const cpu = (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (CLK_TCK 100)
  return { rss, cpu };
}

function start(cmd, args, cwd, env = process.env) {
  const proc = spawn(cmd, args, { cwd, env, stdio: ["ignore", "ignore", "pipe"] });
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
  // wait until everything has come, or nothing more has for 2 s (a floor drops chats)
  let seen = -1;
  let still = Date.now();
  for (;;) {
    const n = everyone.reduce((s, c) => s + c.got, 0);
    if (n >= want || Date.now() - still > 2000) break;
    if (n !== seen) [seen, still] = [n, Date.now()];
    await sleep(50);
  }
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
  return { perClient: Number(perClient), usPer: Number(usPer), lost, ok: got === want && dup === 0 && errors === 0 };
}

const results = {};
const dir = mkdtempSync(path.join(tmpdir(), "longpoll-bench-"));
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`START clients=${clients} order=${only.join(",")} GOMAXPROCS=${opt.gomaxprocs ?? "default"} load ${loadavg()}`);
try {
  const bin = path.join(dir, "longpoll");
  const floorBin = path.join(dir, "floor");
  if (only.some((k) => k === "go" || k === "json")) {
    execFileSync("go", ["build", "-o", bin, "."], { cwd: path.resolve(here, "../.."), stdio: "inherit" });
  }
  if (only.includes("gofloor")) {
    execFileSync("go", ["build", "-o", floorBin, "."], { cwd: path.join(here, "floor"), stdio: "inherit" });
  }
  const goArgs = ["-addr", "127.0.0.1:0", "-max-clients", String(clients + 100)];
  const floorDir = path.join(here, "floor");
  for (const kind of only) {
    if (kind === "go") results.go = await measure("go ", await start(bin, goArgs, undefined, goEnv));
    else if (kind === "json") results.json = await measure("json", await start(bin, goArgs, undefined, goEnv), JSONClient);
    else if (kind === "sio") results.sio = await measure("sio", await start(process.execPath, ["sio-server.mjs"], here));
    else if (kind === "gofloor") {
      const e = await echo("gofloor", await start(floorBin, [], undefined, goEnv));
      results.gofloor = { ...e, ...(await measure("gofloor", await start(floorBin, ["-park"], undefined, goEnv), FloorClient)) };
    } else if (kind === "nodefloor") {
      const e = await echo("nodefloor", await start(process.execPath, ["node-floor.mjs"], floorDir));
      results.nodefloor = { ...e, ...(await measure("nodefloor", await start(process.execPath, ["node-floor.mjs", "park"], floorDir), FloorClient)) };
    } else throw new Error(`--only: unknown ${kind}`);
    console.log(`  (load ${loadavg()})`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const ratio = (a, b, k) => (results[a] && results[b] ? (results[a][k] / results[b][k]).toFixed(2) : "-");
const pairs = [["go", "sio"], ["gofloor", "nodefloor"], ["go", "gofloor"], ["sio", "nodefloor"]].filter(([a, b]) => results[a] && results[b]);
if (pairs.length) {
  console.log(
    `SUMMARY clients=${clients} GOMAXPROCS=${opt.gomaxprocs ?? "default"} load ${loadavg()}\n` +
      pairs
        .map(([a, b]) => `  ${a}/${b}: memory per parked client ${ratio(a, b, "perClient")}, CPU per delivery ${ratio(a, b, "usPer")}` +
          (a.endsWith("floor") && b.endsWith("floor") ? `, CPU per request (at once) ${ratio(a, b, "usPerRequest")}` : ""))
        .join("\n") +
      (results.go && results.sio ? `\n  go-vs-sio result=${results.go.ok && results.sio.ok ? "PASS" : "FAIL"}` : ""),
  );
}
process.exit(0);
