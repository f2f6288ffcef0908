// client.js owns the browser's side of the long-poll protocol: it keeps one
// poll request open at all times, hands each message to the page's handlers,
// and recovers by itself when the server goes away. The page never calls
// fetch; it only uses connect(), on(), emit() and the status callbacks.
//
// The loop is the whole trick of long-polling: ask, wait for the answer (the
// server holds it until it has something, or until its timeout), hand out
// what came, ask again at once. So there is nearly always a request parked on
// the server, ready to carry the next message the moment it exists. Every
// other way a wait can end is one branch of that loop, with its back-off.
//
// The tabs of one browser share all of this (tabs.js): one tab, the leader,
// runs the loop and posts each message to the others, which only listen.
// Without Web Locks or BroadcastChannel (or under Node) every tab polls alone.
import { joinTabs } from "./tabs.js";

// The back-off rules, in one place. The load tool's restart mode implements
// the same rules in Go, so change both or neither.
export const rules = Object.freeze({
  backoffMs: 500, // the first back-off after a failure; it doubles per failure
  maxBackoffMs: 10000, // and never grows past this
  firstReconnectMs: 1000, // the first reconnect after a 410 waits [0, this)
  proxyCutMs: 1000, // a 502/504 after a poll parked this long is a proxy's cut
  hangGraceMs: 10000, // abort a request this long past the server's poll timeout
  pollTimeoutMs: 25000, // assumed when /connect does not say
});

// stayedMs is how long a page that left at beforeunload waits for the unload
// to happen before it comes back (it was cancelled). Pages only: the load
// tool's restart mode has no pages, so this is not one of its rules.
export const stayedMs = 3000;

// backoff(n) is the back-off ceiling after n failures in a row. The wait is
// drawn from [backoff(n)/2, backoff(n)) ("equal jitter"): it still grows, and
// a thousand tabs that lost the same server do not come back in one instant.
export function backoff(n) {
  return Math.min(rules.maxBackoffMs, rules.backoffMs * 2 ** (n - 1));
}

// connect starts talking to the server at base (the page's own origin by
// default) and returns a socket: a small object in the style of socket.io.
// options replaces the environment, for tests: fetch, timers ({setTimeout,
// clearTimeout, now}), random, window (where "online", "beforeunload" and
// "pagehide" are heard), locks, BroadcastChannel, sendBeacon.
export function connect(base = "", options = {}) {
  const env = environment(options);
  const T = env.timers;
  const handlers = new Map(); // event name -> list of functions
  const statusHandlers = []; // called with "connecting", "connected" or "reconnecting"
  const missedHandlers = []; // called with the Date the connection was lost
  const wireHandlers = []; // called with each request and wait, for the wire panel
  const name = "longpoll" + (base ? ":" + base : ""); // the tabs' lock and channel

  let id = ""; // our client id; empty until /connect answers
  let after = 0; // highest seq we have handled; the next poll acknowledges it
  let pollTimeoutMs = rules.pollTimeoutMs; // the server's, once /connect says it
  let status = "";
  let online = null; // the last online count, for tabs that join later
  let role = ""; // "leader" or "follower" with tabs, "alone" without
  let tabs = null; // the shared piece, or null when every tab polls alone
  let tab = "solo"; // names this tab in wire events
  let run = 0; // counts starts; a loop whose run is over stops
  let goneAt = 0; // when we said goodbye, if we did
  let leftAt = 0; // when we left without a goodbye (other tabs stayed), if we did
  let away = false; // the page is going away; start() brings it back
  let stayed = null; // the timer that brings back a page whose unload was cancelled
  const inFlight = new Set(); // AbortControllers of our open requests
  const wakers = new Set(); // functions that end the current back-off wait
  const idWaiters = []; // emits waiting for an id
  let chain = Promise.resolve(); // orders emits when there are no tabs

  // --- what the page hears -------------------------------------------------

  // setStatus tells the status handlers (and, from the leader, the other
  // tabs), only when the state really changes.
  function setStatus(s) {
    if (s === status) return;
    status = s;
    if (role === "leader") tabs?.post({ type: "status", status: s });
    for (const fn of statusHandlers) safely(fn, s);
  }

  // dispatch hands one message to everyone who listens for its event.
  function dispatch(event, data) {
    if (event === "online") online = data;
    for (const fn of handlers.get(event) ?? []) safely(fn, data);
  }

  // missed tells the page, here and in the other tabs, that the server
  // forgot us and what was sent since lostAt may be missing.
  function missed(lostAt) {
    if (role === "leader") tabs?.post({ type: "missed", lostAt });
    missedHere(lostAt);
  }

  // missedHere tells this tab's page only.
  function missedHere(lostAt) {
    for (const fn of missedHandlers) safely(fn, new Date(lostAt));
  }

  // wire reports one step of a request or a wait to the wire panel, here and
  // in the other tabs. start() returns end(), which reports how it ended.
  let wireN = 0;
  function wire(kind, fields = {}) {
    const ev = { kind, n: ++wireN, tab, at: T.now(), ...fields };
    tell({ ...ev, phase: "start" });
    return (more = {}) => tell({ ...ev, phase: "end", at: T.now(), ms: T.now() - ev.at, ...more });
  }
  function tell(ev) {
    tabs?.post({ type: "wire", ev });
    for (const fn of wireHandlers) safely(fn, ev);
  }

  // setId adopts an id, or drops it (""). The leader tells the other tabs, so
  // that their emits use the new id, or wait for one.
  function setId(newId) {
    if (newId === id) return;
    id = newId;
    after = 0; // a fresh id starts a fresh mailbox
    if (role === "leader") tabs?.post({ type: "state", ...state() });
    if (id) for (const resolve of idWaiters.splice(0)) resolve(id);
  }

  // --- the poll loop (the leader's, or every tab's without tabs) -----------

  // lead is the poll loop: ask, wait, hand out, ask again. Each way a wait
  // can end is one case of its switch, with its back-off (PLAN.md's rules).
  // It runs while this start() lasts (mine === run).
  async function lead(mine) {
    let failures = 0; // failures in a row; only a well-formed answer resets it
    let lostAt = 0; // time of the first failure in this run of failures
    let lostId = false; // the server forgot our id: say so once a new one is here
    let told = false; // onMissed already fired for this run of failures
    if (goneAt) [lostAt, lostId, goneAt] = [goneAt, true, 0]; // back from the cache
    back(true); // our cursor may be behind what the tabs that led meanwhile acknowledged

    const fail = () => {
      if (failures++ === 0) lostAt = T.now();
      setStatus("reconnecting");
    };
    const jittered = () => uniform(backoff(failures) / 2, backoff(failures));

    if (!status) setStatus("connecting");
    while (mine === run) {
      if (!id) {
        const got = await open();
        if (mine !== run) return;
        if (!got) {
          fail();
          await pause(jittered(), "connect failed", failures);
          continue;
        }
        if (lostId && !told) {
          missed(lostAt);
          told = true;
        }
        lostId = false;
      }

      const end = await poll();
      if (mine !== run) return;
      switch (end.exit) {
        case "answer": // a well-formed 200: messages, or none (the server's timeout)
          [failures, lostId, told] = [0, false, false];
          setStatus("connected");
          handOut(end.messages);
          break; // and ask again at once: that is what keeps a poll parked
        case "cut": // a proxy timed out our parked poll: ask again at once, quietly
          break;
        case "gone": // 410, or 400: the server forgot our id or our cursor
          setId("");
          lostId = true;
          fail();
          await pause(failures === 1 ? uniform(0, rules.firstReconnectMs) : jittered(), "reconnect", failures);
          break;
        case "busy": // 503: the server is full or shutting down, and says when to come back
          fail();
          await pause(end.retryAfter === null ? jittered() : uniform(end.retryAfter * 1000, end.retryAfter * 2000), "retry-after", failures);
          break;
        default: // network error, a hung poll aborted, another error, a malformed 200
          fail();
          await pause(jittered(), end.exit, failures);
      }
    }
  }

  // open asks for a fresh client id, and learns the server's poll timeout.
  async function open() {
    const end = wire("connect");
    const r = await ask("/connect", { method: "POST" });
    const body = r.status === 200 ? parse(r.text) : undefined;
    if (typeof body?.id !== "string" || !body.id) {
      end({ outcome: r.error ?? "http", status: r.status });
      return false;
    }
    // A server from before pollTimeoutMs does not say it: assume the default.
    const said = Number.isFinite(body.pollTimeoutMs) && body.pollTimeoutMs > 0;
    pollTimeoutMs = said ? body.pollTimeoutMs : rules.pollTimeoutMs;
    setId(body.id);
    end({ outcome: "ok", status: 200, id: body.id, pollTimeoutMs, said });
    return true;
  }

  // poll asks for everything after our cursor and says how the wait ended:
  // its exit is one of the cases of lead's switch.
  async function poll() {
    const end = wire("poll", { after, id });
    const r = await ask(`/poll?id=${id}&after=${after}`);
    let exit;
    if (r.error) exit = { exit: r.error }; // "network", "hung" or "stopped"
    else if (r.status === 200) {
      const body = parse(r.text);
      exit = wellFormed(body) ? { exit: "answer", messages: body.messages } : { exit: "malformed" };
    } else if (r.status === 410 || r.status === 400) exit = { exit: "gone" };
    else if (r.status === 503) exit = { exit: "busy", retryAfter: seconds(r.headers.get("Retry-After")) };
    else if ((r.status === 502 || r.status === 504) && r.ms >= rules.proxyCutMs) exit = { exit: "cut" };
    else exit = { exit: "http" };
    const messages = exit.messages ?? [];
    end({
      outcome: exit.exit === "answer" && !messages.length ? "empty" : exit.exit,
      status: r.status,
      parkedMs: r.ms,
      seqs: messages.map((m) => m.seq),
      events: messages.map((m) => m.event),
      ...(exit.exit === "gone" || exit.exit === "http" ? { why: errorText(r.text) } : {}),
      ...("retryAfter" in exit ? { retryAfter: exit.retryAfter } : {}),
    });
    return exit;
  }

  // handOut moves the cursor past each new message and hands it to this
  // tab's handlers and to the other tabs. A batch sent again (its answer was
  // lost on the way) is skipped by seq: redelivery is harmless.
  function handOut(messages) {
    for (const { seq, event, data } of messages) {
      if (seq <= after) continue;
      after = seq;
      tabs?.post({ type: "msg", id, seq, event, data });
      dispatch(event, data);
    }
  }

  // pause waits ms, or less: the browser coming back online, or the socket
  // stopping, ends the wait at once.
  function pause(ms, reason, failures) {
    const end = wire("wait", { waitMs: Math.round(ms), reason, failures });
    return new Promise((resolve) => {
      const wake = (cut) => {
        T.clearTimeout(timer);
        wakers.delete(wake);
        end({ cut });
        resolve();
      };
      const timer = T.setTimeout(() => wake(""), ms);
      wakers.add(wake);
    });
  }

  // ask sends one request and reads its whole answer. It never throws: a
  // failure comes back as error "network"; "hung" when the request was
  // aborted for hanging well past the server's poll timeout (a NAT that
  // dropped the connection: no answer and no error would ever come); or
  // "stopped" when the page went away.
  // ms is how long the answer took to start, which says whether a poll parked.
  async function ask(path, init = {}) {
    const ctl = new AbortController();
    const timer = T.setTimeout(() => ctl.abort("hung"), pollTimeoutMs + rules.hangGraceMs);
    inFlight.add(ctl);
    const started = T.now();
    let ms = 0;
    try {
      const res = await env.fetch(base + path, { ...init, cache: "no-store", signal: ctl.signal });
      ms = T.now() - started;
      return { status: res.status, headers: res.headers, text: await res.text(), ms };
    } catch {
      const why = ctl.signal.aborted ? ctl.signal.reason : "network"; // "hung" or "stopped"
      return { status: 0, error: why, ms: ms || T.now() - started };
    } finally {
      T.clearTimeout(timer);
      inFlight.delete(ctl);
    }
  }

  // --- emits: one at a time per browser, in the order emit() was called ---

  function inOrder(fn) {
    if (tabs) return tabs.inOrder(fn);
    const p = chain.then(fn);
    chain = p.catch(() => {});
    return p;
  }

  async function send(event, body) {
    for (let tries = 0; ; tries++) {
      const used = id || (await new Promise((resolve) => idWaiters.push(resolve)));
      const end = wire("emit", { event, id: used });
      const r = await ask(`/emit?id=${used}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body,
      });
      end({ outcome: r.error ?? (r.status === 204 ? "ok" : "http"), status: r.status, why: errorText(r.text) });
      if (r.status === 204) return;
      // The leader may have replaced the id while we sent: try the new one once.
      if (r.status === 410 && id && id !== used && tries === 0) continue;
      throw new Error(failed[r.error] ?? (errorText(r.text) || "HTTP " + r.status));
    }
  }

  // --- the tabs: who polls, and what the listeners hear ---------------------

  function state() {
    return { id, after, status, online, pollTimeoutMs };
  }

  function setRole(r) {
    role = r;
    tell({ kind: "role", role: r, tab, at: T.now() });
  }

  // hear takes what the other tabs post. Only the leader answers a greeting;
  // the others follow the leader's id, cursor, messages and status.
  function hear(msg) {
    if (msg.type === "wire" || msg.type === "bye") {
      // A tab that leaves ends its requests with it: the panel closes their lines.
      const ev = msg.type === "wire" ? msg.ev : { kind: "left", tab: msg.tab, at: T.now() };
      for (const fn of wireHandlers) safely(fn, ev);
      return;
    }
    if (role === "leader") {
      if (msg.type === "hello") tabs.post({ type: "state", ...state() });
      return;
    }
    if (msg.id !== undefined && msg.id !== id) setId(msg.id);
    if (msg.type === "state") {
      const returning = back(msg.after > after);
      after = Math.max(after, msg.after);
      pollTimeoutMs = msg.pollTimeoutMs;
      if (msg.online !== null && (online === null || returning)) dispatch("online", msg.online);
      if (msg.status) setStatus(msg.status);
    } else if (msg.type === "msg" && msg.seq > after) {
      after = msg.seq;
      dispatch(msg.event, msg.data);
    } else if (msg.type === "status") {
      setStatus(msg.status);
    } else if (msg.type === "missed") {
      missedHere(msg.lostAt);
    }
  }

  // start begins (or, back from the back/forward cache, resumes) this tab's
  // part: as leader or follower with tabs, or polling alone without.
  function start() {
    const mine = ++run;
    away = false;
    tab = Math.random().toString(36).slice(2, 10);
    role = "follower"; // until the lock says otherwise, which may be at once
    tabs = joinTabs({
      name,
      tab,
      locks: env.locks,
      BroadcastChannel: env.BroadcastChannel,
      onLead: () => {
        setRole("leader");
        lead(mine);
      },
      onMessage: hear,
    });
    if (!tabs) {
      tab = "solo";
      setRole("alone");
      lead(mine);
      return;
    }
    if (role === "follower") setRole("follower");
    if (!status) setStatus("connecting");
  }

  // stop ends this tab's part: the loop, its requests, its wait, its tabs.
  function stop() {
    run++;
    for (const ctl of inFlight) ctl.abort("stopped");
    for (const wake of wakers) wake("stopped");
    tabs?.close();
    tabs = null;
  }

  // Back online: cut any back-off wait short and try at once.
  const onOnline = () => {
    for (const wake of wakers) wake("online");
  };
  // The page goes away: closed, reloaded, or into the back/forward cache.
  // leave stops this tab's part and, if this is the browser's last tab, says
  // goodbye, so the others see the online count drop now instead of after
  // the server's client timeout (sendBeacon is made for this: the browser
  // delivers it even while the page unloads). It stops first, so that our
  // parked poll is cancelled before the goodbye can have it answered 410.
  const leave = () => {
    if (away) return;
    away = true;
    const bye = id && (!tabs || tabs.last()) ? id : "";
    stop();
    if (bye) {
      env.sendBeacon?.(`${base}/disconnect?id=${bye}`);
      tell({ kind: "goodbye", tab, at: T.now(), id: bye });
      goneAt = T.now();
      setId("");
    } else {
      leftAt = T.now();
    }
  };
  // back is called once a tab that left without a goodbye is part of the tabs
  // again (a cancelled unload, the back/forward cache), with whether it is
  // behind the others. While it was away they went on hearing, and
  // acknowledging, messages that nobody kept for it: it says those may be
  // missing rather than skip them in silence. It returns whether it said so.
  const back = (behind) => {
    const since = leftAt;
    leftAt = 0;
    if (!since || !behind) return false;
    missedHere(since);
    return true;
  };
  // A tab leaves at beforeunload, which a person's close runs while the tab
  // is still whole, or at pagehide where none came (phones often skip it).
  // Firefox needs the first: when the closing tab is the last page of its
  // content process, Firefox shuts the process down and stops whatever page
  // script is running as it does, pagehide listeners included, so a goodbye
  // left to pagehide was lost on about one close in three. Firefox runs
  // beforeunload before that shutdown starts (for pages that listen for it).
  // An unload can still be cancelled after beforeunload: a page still here
  // stayedMs later comes back, as from the cache.
  const onBeforeUnload = () => {
    leave();
    T.clearTimeout(stayed);
    stayed = T.setTimeout(() => away && start(), stayedMs);
  };
  const onPageHide = () => {
    T.clearTimeout(stayed);
    leave();
  };
  const onPageShow = (e) => {
    if (e.persisted) start();
  };
  env.window?.addEventListener("online", onOnline);
  env.window?.addEventListener("beforeunload", onBeforeUnload);
  env.window?.addEventListener("pagehide", onPageHide);
  env.window?.addEventListener("pageshow", onPageShow);

  start();

  return {
    // on registers fn for a server event, such as "chat" or "online".
    on(event, fn) {
      if (!handlers.has(event)) handlers.set(event, []);
      handlers.get(event).push(fn);
    },

    // onStatus registers fn(status) for changes of the connection state.
    onStatus(fn) {
      statusHandlers.push(fn);
      if (status) fn(status);
    },

    // onMissed registers fn(lostAt) for "we were gone since lostAt (a Date);
    // messages sent meanwhile may be missing". It fires once per loss.
    onMissed(fn) {
      missedHandlers.push(fn);
    },

    // onWire registers fn(event) for every request and wait of this browser,
    // as it starts and as it ends: what the wire panel shows. The chat itself
    // does not need it. Every event has kind, tab (who made it; compare with
    // socket.tab) and at (ms since 1970). Requests and waits come in pairs,
    // phase "start" then "end", sharing n (per tab); an end adds ms, outcome
    // and status. By kind:
    //   poll     after, id; end: parkedMs, seqs, events, why (410/400),
    //            retryAfter (503); outcome answer|empty|cut|gone|busy|
    //            malformed|http|network|hung|stopped
    //   connect  end: id, pollTimeoutMs, said (the server gave it); outcome ok|http|network|hung
    //   emit     event, id; end: why; outcome ok|http|network|hung|stopped
    //   wait     waitMs, reason (the exit that caused it), failures; end: cut ("", "online", "stopped")
    //   role     role: leader|follower|alone (no phase)
    //   goodbye  id: the last tab sent /disconnect (no phase)
    //   left     another tab of this browser closed (no phase)
    onWire(fn) {
      wireHandlers.push(fn);
      fn({ kind: "role", role, tab, at: T.now() });
    },

    // emit sends an event to everyone, ourselves included: our own message
    // comes back through the poll like anyone else's, so every tab shows the
    // same order. Emits leave one at a time, in the order emit() was called,
    // and their promises settle in that order: resolved once the server has
    // the message, rejected with the reason otherwise.
    emit(event, data) {
      const body = JSON.stringify({ event, data });
      return inOrder(() => send(event, body));
    },

    // close stops polling and leaves the other tabs (tests use it; a page
    // just goes away).
    close() {
      env.window?.removeEventListener("online", onOnline);
      env.window?.removeEventListener("beforeunload", onBeforeUnload);
      T.clearTimeout(stayed);
      env.window?.removeEventListener("pagehide", onPageHide);
      env.window?.removeEventListener("pageshow", onPageShow);
      stop();
    },

    get tab() {
      return tab;
    },
    get role() {
      return role;
    },
  };

  function uniform(lo, hi) {
    return lo + env.random() * (hi - lo);
  }
}

// environment fills in the browser's own APIs where options do not replace
// them. Under Node most are missing, and their absence means: no tabs to
// share with, no page to leave.
function environment(o) {
  const g = globalThis;
  const nav = g.navigator;
  return {
    fetch: o.fetch ?? ((...args) => g.fetch(...args)),
    timers: o.timers ?? {
      setTimeout: (fn, ms) => g.setTimeout(fn, ms),
      clearTimeout: (t) => g.clearTimeout(t),
      now: () => Date.now(),
    },
    random: o.random ?? Math.random,
    window: o.window ?? (typeof g.addEventListener === "function" ? g : null),
    locks: "locks" in o ? o.locks : nav?.locks,
    BroadcastChannel: "BroadcastChannel" in o ? o.BroadcastChannel : g.BroadcastChannel,
    sendBeacon: o.sendBeacon ?? (nav?.sendBeacon ? (url) => nav.sendBeacon(url) : null),
  };
}

// failed words ask's errors for an emit's rejection, which the page shows.
const failed = { network: "network error", hung: "no answer from the server", stopped: "the page is closing" };

// wellFormed says whether a poll's 200 is the contract's shape; anything else
// is a failure, so a broken proxy's page cannot reset the back-off.
function wellFormed(body) {
  return (
    Array.isArray(body?.messages) &&
    body.messages.every((m) => Number.isInteger(m?.seq) && typeof m.event === "string")
  );
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// seconds reads a Retry-After in seconds; the HTTP-date form, which this
// server never sends, counts as missing.
function seconds(header) {
  return header !== null && /^\d+$/.test(header.trim()) ? Number(header) : null;
}

function errorText(text) {
  const e = parse(text ?? "")?.error;
  return typeof e === "string" ? e : "";
}

// safely calls a handler: one that throws must not stop the loop or the
// other handlers, but its bug must not vanish either: reportError shows it
// like any uncaught error.
function safely(fn, arg) {
  try {
    fn(arg);
  } catch (err) {
    (globalThis.reportError ?? console.error)(err);
  }
}
