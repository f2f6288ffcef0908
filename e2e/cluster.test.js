// cluster.test.js is the chat page's story on the cluster (cluster/, docs/cluster.md):
// cluster/run.sh starts Redis, three nodes and nginx (round-robin, no affinity), and
// two people in Chromium chat through nginx while their polls land on different
// nodes. The page is the single server's, unchanged.
//
//   node --test cluster.test.js
//
// Without redis-server or nginx it skips, saying how to install them, unless
// E2E_REQUIRE=1 (as in CI) makes that a failure.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { findBrowser, missingBrowser, Run, within } from "./harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = process.env.E2E_REQUIRE === "1";

// missingTool says how to install what the cluster needs, or "" when all is there.
function missingTool() {
  for (const [cmd, pkg] of [["redis-server", "redis-server"], ["nginx", "nginx"]]) {
    try {
      execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    } catch {
      return `${cmd} is not installed: apt-get install -y ${pkg}`;
    }
  }
  return findBrowser("chromium") ? "" : missingBrowser("chromium");
}

// freePortBlock finds a port p such that p..p+10 look free: run.sh puts nginx on
// p, the nodes on p+1..p+3 and Redis on p+10.
async function freePortBlock() {
  for (let tries = 0; tries < 20; tries++) {
    const p = 20000 + Math.floor(Math.random() * 40000);
    const free = await Promise.all([0, 1, 2, 3, 10].map((d) => portFree(p + d)));
    if (free.every(Boolean)) return p;
  }
  throw new Error("no free block of ports found");
}

function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer().once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

// startCluster runs cluster/run.sh and resolves with its URL and a stop function.
async function startCluster() {
  const port = await freePortBlock();
  const proc = spawn("bash", [path.join(here, "..", "cluster", "run.sh"), "-poll-timeout", "2s", "-presence-every", "250ms"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  const ready = new Promise((resolve) => {
    const onData = (chunk) => {
      log += chunk;
      if (log.includes("cluster ready")) resolve();
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", (chunk) => (log += chunk));
  });
  await within(Promise.race([ready, exited.then(() => Promise.reject(new Error(`run.sh exited:\n${log}`)))]), 120_000, "run.sh did not start the cluster");
  const stop = async () => {
    proc.kill("SIGTERM"); // run.sh stops Redis, the nodes and nginx, and removes its folder
    await within(exited, 15_000, "run.sh did not stop");
  };
  return { url: `http://127.0.0.1:${port}/`, stop, log: () => log };
}

// watchNodes collects the X-Node of every poll answer a tab gets.
function watchNodes(tab) {
  const nodes = new Set();
  tab.page.on("response", (res) => {
    if (new URL(res.url()).pathname === "/poll" && res.status() === 200) nodes.add(res.headers()["x-node"]);
  });
  return nodes;
}

const online = (n) => (s) => s.status === "connected" && s.online === String(n);
const shows = (line) => (s) => s.messages.includes(line);

const skip = missingTool();
test("two people chat through nginx while their polls land on different nodes", { skip: skip && !require ? skip : false, timeout: 180_000 }, async (t) => {
  assert.equal(skip, "", skip);
  const cluster = await startCluster();
  const r = new Run(t, "chromium");
  try {
    const browser = await r.newBrowser();
    const ada = await browser.openPerson("ada", cluster.url);
    const adaNodes = watchNodes(ada);
    const bob = await browser.openPerson("bob", cluster.url);
    const bobNodes = watchNodes(bob);
    for (const tab of [ada, bob]) await tab.until("connected, 2 online", online(2), 15_000);
    await ada.setName("Ada");
    await bob.setName("Bob");
    for (let i = 0; i < 3; i++) {
      await ada.say(`hello ${i} from Ada`);
      await bob.say(`hi ${i} from Bob`);
    }
    for (const tab of [ada, bob]) {
      await tab.until("showing every line", (s) => [0, 1, 2].every((i) => shows(`Ada: hello ${i} from Ada`)(s) && shows(`Bob: hi ${i} from Bob`)(s)));
    }
    const [a, b] = [await ada.state(), await bob.state()];
    assert.deepEqual(a.messages, b.messages, "both show the one order");
    assert.ok(adaNodes.size >= 2 && bobNodes.size >= 2, `each tab was answered by several nodes: Ada ${[...adaNodes]}, Bob ${[...bobNodes]}`);
    r.checkConsoles();
  } catch (err) {
    err.message += `\n${await r.diagnostics()}\nrun.sh:\n${cluster.log()}`;
    throw err;
  } finally {
    await r.close();
    await cluster.stop();
  }
});
