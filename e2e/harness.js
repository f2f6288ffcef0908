// harness.js owns what every scenario stands on: building the program once,
// starting and killing it, finding and starting a browser, opening tabs and
// watching their consoles. scenarios.js tells the stories with it, and
// e2e.test.js runs each story once per browser.
//
// The same code drives Chromium over the DevTools protocol and Firefox over
// WebDriver BiDi: puppeteer-core speaks both, and uses the browsers Debian
// installed (it downloads none).

import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import puppeteer from "puppeteer-core";

export { sleep };

// stepTimeout bounds one browser action, so a stuck page fails its test
// instead of hanging the run.
export const stepTimeout = 15_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.join(here, "..");

// engines are the browsers the suite knows: where each is looked for, and
// how puppeteer starts it.
const engines = {
  chromium: {
    env: "E2E_CHROMIUM",
    names: ["chromium"],
    install: "apt-get install -y chromium",
    launch: (executablePath, profile) => ({
      browser: "chrome",
      executablePath,
      userDataDir: profile,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox", // we run as root in CI, where the sandbox cannot start
        "--disable-gpu",
        // This machine has no network but loopback: without these the
        // browser keeps trying Google's services and logs refused connections.
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      // puppeteer turns off Chromium's throttling of hidden tabs by default.
      // A person's background tabs are throttled, and Firefox throttles them
      // under test too, so both browsers run the page as people get it.
      ignoreDefaultArgs: [
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
      ],
    }),
  },
  firefox: {
    env: "E2E_FIREFOX",
    names: ["firefox-esr", "firefox"],
    install: "apt-get install -y firefox-esr",
    launch: (executablePath, profile) => ({
      browser: "firefox",
      executablePath,
      userDataDir: profile,
      headless: true,
    }),
  },
};

export const knownBrowsers = Object.keys(engines);

// selectedBrowsers reads E2E_BROWSERS (default: all of them, in order).
export function selectedBrowsers() {
  const names = (process.env.E2E_BROWSERS || knownBrowsers.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!engines[n]) {
      throw new Error(`E2E_BROWSERS names ${n}; known: ${knownBrowsers.join(", ")}`);
    }
  }
  return names;
}

// findBrowser returns the executable for a browser, or "" when there is
// none: $E2E_CHROMIUM or $E2E_FIREFOX if set, else the first of its Debian
// names on PATH.
export function findBrowser(name) {
  const e = engines[name];
  const wanted = process.env[e.env];
  const candidates = wanted ? [wanted] : e.names;
  for (const c of candidates) {
    const found = lookPath(c);
    if (found) return found;
  }
  return "";
}

// missingBrowser says why a browser cannot run, in words for a skip or a
// failure message.
export function missingBrowser(name) {
  const e = engines[name];
  return `no ${name} found (looked for $${e.env}, else ${e.names.join(" or ")} on PATH); install it with: ${e.install}`;
}

function lookPath(file) {
  const dirs = file.includes("/") ? [""] : (process.env.PATH || "").split(path.delimiter);
  for (const d of dirs) {
    const p = d ? path.join(d, file) : file;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here; look on
    }
  }
  return "";
}

// buildServer builds the program under test once per run, with -race when
// E2E_RACE=1 so that the browsers' traffic also hunts for data races.
// E2E_SERVER=/path/to/binary tests that build instead.
let built;
export function buildServer() {
  built ??= (async () => {
    if (process.env.E2E_SERVER) return path.resolve(process.env.E2E_SERVER);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "longpoll-e2e-"));
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
    const bin = path.join(dir, "longpoll");
    const args = ["build", "-o", bin];
    if (process.env.E2E_RACE === "1") args.push("-race");
    await promisify(execFile)("go", [...args, "."], { cwd: repoRoot }).catch((err) => {
      throw new Error(`building the server: ${err.message}\n${err.stderr ?? ""}`);
    });
    return bin;
  })();
  return built;
}

// setpriv (util-linux) makes the kernel kill the server if this process dies
// first, so no server outlives a crashed run.
const setpriv = lookPath("setpriv");

// Server is one run of the program under test.
export class Server {
  static #urlLine = /url=(http:\/\/\S+)/;

  // start starts the program on addr ("127.0.0.1:0" picks a free port) and
  // resolves once it has said its URL.
  static async start(addr, flags) {
    const bin = await buildServer();
    const argv = [bin, "-addr", addr, ...flags];
    const proc = setpriv
      ? spawn(setpriv, ["--pdeathsig", "KILL", "--", ...argv], { stdio: ["ignore", "ignore", "pipe"] })
      : spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    const s = new Server(proc);
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no line matching ${Server.#urlLine} from the server in ${stepTimeout} ms:\n${s.log}`)),
        stepTimeout,
      );
      s.#onLine = (line) => {
        const m = Server.#urlLine.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      s.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`the server exited (${proc.exitCode ?? proc.signalCode}) before it said its URL:\n${s.log}`));
      });
    });
    s.#onLine = null;
    s.url = url;
    s.addr = url.replace(/^http:\/\//, "").replace(/\/$/, "");
    return s;
  }

  url = ""; // the page, e.g. http://127.0.0.1:41234/
  addr = ""; // host:port it bound, for a restart on the same port
  log = ""; // everything the program wrote to stderr
  exited; // a promise, resolved when the process has gone
  #onLine = null;

  constructor(proc) {
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.on("exit", resolve));
    proc.on("error", () => {}); // reported through exited
    let rest = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      this.log += chunk;
      const lines = (rest + chunk).split("\n");
      rest = lines.pop();
      for (const l of lines) this.#onLine?.(l);
    });
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  // kill ends the program at once, as a crash or a power cut would: no
  // goodbye to anyone.
  async kill() {
    if (this.running) this.proc.kill("SIGKILL");
    await this.exited;
  }

  // stop asks the program to shut down, as Ctrl-C would, and requires a
  // clean exit within 5 s. (Generous on purpose: a busy machine is slow, and
  // a -race build sleeps 1 s at exit by design.) It returns the time taken.
  async stop() {
    const start = Date.now();
    this.proc.kill("SIGTERM");
    await within(this.exited, 5000, "the server did not exit after SIGTERM");
    if (this.proc.exitCode !== 0) {
      throw new Error(`the server exited ${this.proc.exitCode ?? this.proc.signalCode} after SIGTERM, want 0`);
    }
    return Date.now() - start;
  }
}

// Run is one scenario in one browser: it starts what the scenario asks for
// and owns all of it, so that close() can end everything and a failure can
// show what the server logged and what each tab showed.
export class Run {
  constructor(t, browserName) {
    this.t = t;
    this.browserName = browserName;
    this.servers = [];
    this.browsers = [];
    this.tabs = [];
    this.started = Date.now();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `e2e-${browserName}-`));
  }

  // log writes a line to the test's output.
  log(msg) {
    this.t.diagnostic(`${this.browserName}: ${msg}`);
  }

  // startServer starts the program with flags (on any free port unless addr
  // says which).
  async startServer(flags = [], addr = "127.0.0.1:0") {
    const s = await Server.start(addr, flags);
    this.servers.push(s);
    return s;
  }

  // newBrowser starts a fresh headless browser with its own profile under
  // the run's temporary folder.
  async newBrowser() {
    const exe = findBrowser(this.browserName);
    if (!exe) throw new Error(missingBrowser(this.browserName));
    const n = this.browsers.length;
    const profile = path.join(this.dir, `profile-${n}`);
    const tmp = path.join(this.dir, `tmp-${n}`);
    fs.mkdirSync(tmp);
    const b = await puppeteer.launch({
      ...engines[this.browserName].launch(exe, profile),
      env: { ...process.env, TMPDIR: tmp },
      protocolTimeout: 2 * stepTimeout,
      defaultViewport: { width: 480, height: 640 },
    });
    const browser = new Browser(this, b);
    this.browsers.push(browser);
    return browser;
  }

  // checkConsoles fails the scenario for every console error or uncaught
  // exception any open tab showed.
  checkConsoles() {
    for (const tab of this.tabs) tab.checkConsole();
  }

  // diagnostics tells what the servers logged and the tabs showed, for a
  // failure message.
  async diagnostics() {
    const out = [];
    for (const tab of this.tabs) {
      if (!tab.closed) out.push(`tab ${tab.name}: ${JSON.stringify(await tab.describe())}`);
      out.push(`tab ${tab.name}'s last requests${tab.closed ? " (closed)" : ""}:\n${tab.timeline(this.started)}`);
    }
    this.servers.forEach((s, i) => out.push(`server ${i} (${s.addr}) log:\n${s.log}`));
    return out.join("\n");
  }

  // close ends every browser and server the run started, and reports a
  // data race that a -race server printed.
  async close() {
    await Promise.all(this.browsers.map((b) => b.close()));
    await Promise.all(this.servers.map((s) => s.kill()));
    fs.rmSync(this.dir, { recursive: true, force: true });
    for (const s of this.servers) {
      if (s.log.includes("DATA RACE")) throw new Error(`the server reported a data race:\n${s.log}`);
    }
  }
}

// Browser is one browser process, which is one person: its tabs share a
// profile. contexts() gives further people in the same process, each with
// a separate profile, which is cheaper than a process each.
export class Browser {
  constructor(run, b) {
    this.run = run;
    this.b = b;
  }

  // openTab opens url as one more tab of this browser's own profile, the
  // way a person opens a second tab of a site.
  async openTab(name, url, opts) {
    return this.#open(this.b.defaultBrowserContext(), name, url, { type: "tab", ...opts });
  }

  // openPerson opens url in a new, separate profile (a browser context), in
  // a window of its own: another person at another screen.
  async openPerson(name, url, opts) {
    const ctx = await this.b.createBrowserContext();
    return this.#open(ctx, name, url, { type: "window", ...opts });
  }

  async #open(ctx, name, url, { type, allowNetworkErrors = false, navigate = true }) {
    const page = await ctx.newPage({ type });
    const tab = new Tab(this.run, name, page, allowNetworkErrors);
    this.run.tabs.push(tab);
    if (navigate) await tab.goto(url);
    return tab;
  }

  async close() {
    await this.b.close().catch(() => {});
  }
}

// readPage runs in the page: what a person sees there, in one object.
function readPage() {
  const $ = (s) => document.querySelector(s);
  const notice = $("#notice");
  return {
    status: $("#status")?.textContent ?? null,
    online: $("#online")?.textContent ?? null,
    notice: notice && !notice.hidden ? notice.textContent : "",
    text: $("#text")?.value ?? null,
    messages: [...document.querySelectorAll("#messages li")].map((li) => {
      const [name, ...rest] = li.children;
      return `${name?.textContent ?? ""}: ${rest.map((e) => e.textContent).join("")}`;
    }),
  };
}

// Tab is one page of the chat. It records every console error and uncaught
// exception, and counts the poll requests the page sends.
export class Tab {
  constructor(run, name, page, allowNetworkErrors) {
    this.run = run;
    this.name = name;
    this.page = page;
    // allowNetworkErrors lets the console show failed requests, which a
    // scenario that kills the server or cuts the network provokes on
    // purpose. Everything else at error level still fails the scenario.
    this.allowNetworkErrors = allowNetworkErrors;
    this.problems = [];
    this.requests = []; // {url, at} of every request the page sent
    this.closed = false;
    // Listen before navigating, so not even the first message is missed.
    page.on("console", (m) => {
      if (m.type() !== "error" && m.type() !== "assert") return;
      const where = m.location()?.url ?? "";
      if (this.allowNetworkErrors && isNetworkError(m.text())) return;
      this.problems.push(`console.${m.type()}: ${m.text()} (${where})`);
    });
    page.on("pageerror", (err) => this.problems.push(`uncaught: ${err?.message ?? err}`));
    const sent = new Map(); // request -> its entry in this.requests
    page.on("request", (r) => {
      const e = { url: r.url(), at: Date.now() };
      sent.set(r, e);
      this.requests.push(e);
    });
    const ended = (r, outcome) => {
      const e = sent.get(r);
      if (!e) return;
      sent.delete(r);
      e.ms = Date.now() - e.at;
      e.outcome = outcome;
    };
    page.on("requestfinished", (r) => ended(r, String(r.response()?.status() ?? "?")));
    page.on("requestfailed", (r) => ended(r, r.failure()?.errorText ?? "failed"));
  }

  // polls counts the poll requests this page has sent.
  get polls() {
    return this.requests.filter((r) => r.url.includes("/poll?")).length;
  }

  async goto(url) {
    await this.page.goto(url, { timeout: stepTimeout });
  }

  async reload() {
    await this.page.reload({ timeout: stepTimeout });
  }

  // eval runs fn(...args) in the page and returns its result.
  async eval(fn, ...args) {
    return await this.page.evaluate(fn, ...args);
  }

  // state returns what a person sees: status, online count, notice, the
  // text box and the message lines as "name: text".
  async state() {
    return await this.page.evaluate(readPage);
  }

  // until waits until ok(state) holds, reading the page from here every
  // 25 ms (in-page timers are throttled in background tabs, so the page
  // itself is not asked to poll). It returns the state that satisfied ok;
  // on a timeout the failure shows the last state.
  async until(what, ok, timeout = 5000) {
    const deadline = Date.now() + timeout;
    let last, lastErr;
    for (;;) {
      try {
        last = await this.state();
        if (ok(last)) return last;
      } catch (err) {
        lastErr = err; // e.g. the page is between two documents: try again
      }
      if (Date.now() > deadline) {
        throw new Error(
          `tab ${this.name}: not ${what} after ${timeout} ms\npage: ${JSON.stringify(last)}` +
            (lastErr ? `\nlast error: ${lastErr.message}` : ""),
        );
      }
      await sleep(25);
    }
  }

  // timeline tells the page's last n requests: when each left (seconds
  // since start), where to, how long it took and how it ended.
  timeline(start, n = 20) {
    return this.requests
      .slice(-n)
      .map((e) => {
        const u = new URL(e.url);
        const what = u.pathname + u.search.replace(/id=[0-9a-f]{32}/, "id=…");
        return `  ${((e.at - start) / 1000).toFixed(2)}s ${what} ${e.outcome ?? "(open)"}${e.ms === undefined ? "" : ` ${e.ms}ms`}`;
      })
      .join("\n");
  }

  // describe returns the state, or why it could not be read.
  async describe() {
    try {
      return await within(this.state(), 5000, "no answer");
    } catch (err) {
      return `(unreadable: ${err.message})`;
    }
  }

  // setName puts a name in the name box.
  async setName(name) {
    await this.page.evaluate((v) => (document.querySelector("#name").value = v), name);
  }

  // say puts a message in the box and clicks Send. It uses the page's own
  // click(), not the mouse: the mouse needs the tab in front (Chromium waits
  // for a frame that a hidden tab never paints), and a scenario with eight
  // tabs has seven hidden. type() is the real keyboard, for the one story
  // that types as a person does.
  async say(text) {
    await this.page.evaluate((v) => {
      document.querySelector("#text").value = v;
      document.querySelector("#send").click();
    }, text);
  }

  // type brings the tab to the front and types text key by key, then Enter.
  async type(text) {
    await this.page.bringToFront();
    await this.page.type("#text", text);
    await this.page.keyboard.press("Enter");
  }

  // markArrivals starts recording, in the page, when each message line
  // appears (Date.now(), the same clock as this process). A MutationObserver
  // runs as the line is added, with no timer to throttle.
  async markArrivals() {
    await this.page.evaluate(() => {
      window.e2eArrivals = [];
      new MutationObserver((records) => {
        for (const r of records) {
          for (const li of r.addedNodes) {
            if (li.nodeName !== "LI") continue;
            const [name, ...rest] = li.children;
            const line = `${name?.textContent ?? ""}: ${rest.map((e) => e.textContent).join("")}`;
            window.e2eArrivals.push({ line, at: Date.now() });
          }
        }
      }).observe(document.querySelector("#messages"), { childList: true });
    });
  }

  // arrivals returns what markArrivals recorded.
  async arrivals() {
    return await this.page.evaluate(() => window.e2eArrivals ?? []);
  }

  // setOffline cuts the tab off the network or reconnects it, with the
  // browser's own network emulation (requests fail at once).
  async setOffline(offline) {
    await this.page.setOfflineMode(offline);
  }

  // takeProblems returns the console problems seen so far and forgets them.
  takeProblems() {
    const p = this.problems;
    this.problems = [];
    return p;
  }

  // checkConsole fails for every console problem the tab showed.
  checkConsole() {
    const p = this.takeProblems();
    if (p.length) throw new Error(`tab ${this.name}: console errors:\n  ${p.join("\n  ")}`);
  }

  // close closes the tab the way a person does, so the page gets its
  // beforeunload and pagehide events, after checking its console.
  async close() {
    this.checkConsole();
    this.closed = true;
    // With runBeforeUnload the browser runs beforeunload first, as for a
    // person's click (Firefox's WebDriver BiDi closes the tab through the
    // same call as the tab's close button), and puppeteer does not wait: so
    // wait here.
    const gone = new Promise((resolve) => this.page.once("close", resolve));
    await this.page.close({ runBeforeUnload: true });
    await within(gone, stepTimeout, `tab ${this.name} did not close`);
  }
}

// within resolves as promise does, or rejects with msg after ms.
export async function within(promise, ms, msg) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${msg} (waited ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

// isNetworkError tells the browser's own log line about a failed request.
function isNetworkError(text) {
  return /^Failed to load resource\b/.test(text);
}
