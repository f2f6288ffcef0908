// session.js owns what the pieces of one socket share: the browser's APIs,
// the id and cursor, what the page was last told, and the open requests.
// Every change the page or the other tabs must hear about goes through the
// steps here (setId, setStatus, deliver, missed), so none is told twice.
import { listeners } from "./listeners.js";
import { wireLog } from "./wirelog.js";

// openSession makes the shared state of a socket talking to base. options
// replaces the environment for tests (see environment below); defaults
// gives pollTimeoutMs, assumed until /connect says, and hangGraceMs.
export function openSession(base, options, defaults) {
  const env = environment(options);
  const s = {
    base,
    env,
    T: env.timers,
    defaults,
    name: "longpoll" + (base ? ":" + base : ""), // the tabs' locks and channel
    id: "", // our client id; empty until /connect answers
    after: 0, // highest seq handled; the next poll acknowledges it
    pollTimeoutMs: defaults.pollTimeoutMs, // the server's, once /connect says it
    status: "", // "connecting", "connected" or "reconnecting"
    online: null, // the last online count, for tabs that join later
    role: "", // "leader" or "follower" with tabs, "alone" without
    tab: "solo", // names this tab in wire events
    run: 0, // counts starts; a poll loop whose run is over stops
    handlers: listeners(), // the page's handlers of server events
    hooks: listeners(), // the page's "status", "missed" and "wire" handlers
    inFlight: new Set(), // AbortControllers of our open requests
    wakers: new Set(), // functions that end the current back-off wait
    idWaiters: [], // emits waiting for an id
    post: () => {}, // to every other tab; tabs.js sets it while there are tabs
  };
  s.wire = wireLog(s);
  Object.assign(s, steps(s));
  return s;
}

// steps are the functions every piece changes s with, or asks through.
function steps(s) {
  // share tells the other tabs, if this tab leads them (followers only listen).
  const share = (msg) => s.role === "leader" && s.post(msg);
  return {
    share,
    state: () => ({ id: s.id, after: s.after, status: s.status, online: s.online, pollTimeoutMs: s.pollTimeoutMs }),
    // setId adopts an id, or drops it (""): emits use the new id, or wait.
    setId(id) {
      if (id === s.id) return;
      s.id = id;
      s.after = 0; // a fresh id starts a fresh mailbox
      share({ type: "state", ...s.state() });
      if (id) for (const resolve of s.idWaiters.splice(0)) resolve(id);
    },
    // setStatus tells the page, only when the state really changes.
    setStatus(status) {
      if (status === s.status) return;
      s.status = status;
      share({ type: "status", status });
      s.hooks.call("status", status);
    },
    // deliver hands one message to this tab's handlers of its event. Only
    // a count is kept for the tabs that join later: the state post carries
    // it, and a stranger's "online" (10,000 arrays deep) would break that post.
    deliver(event, data) {
      if (event === "online" && Number.isSafeInteger(data)) s.online = data;
      s.handlers.call(event, data);
    },
    // missed tells the page, here and in the other tabs, that what was sent
    // since lostAt may be missing; missedHere tells this tab's page only.
    missed(lostAt) {
      share({ type: "missed", lostAt });
      s.missedHere(lostAt);
    },
    missedHere: (lostAt) => s.hooks.call("missed", new Date(lostAt)),
    ask: (path, init) => ask(s, path, init),
    // wake ends the current back-off wait at once, saying why.
    wake(why) {
      for (const wake of s.wakers) wake(why);
    },
    // abort ends every open request and the back-off wait, saying why.
    abort(why) {
      for (const ctl of s.inFlight) ctl.abort(why);
      s.wake(why);
    },
  };
}

// ask sends one request and reads its whole answer. It never throws: a
// failure comes back as error "network"; "hung" when it was aborted for
// hanging well past the server's poll timeout (a NAT that dropped the
// connection sends neither answer nor error); "stopped" when the page went.
// ms is how long the answer took to start: whether a poll parked.
async function ask(s, path, init = {}) {
  const ctl = new AbortController();
  const timer = s.T.setTimeout(() => ctl.abort("hung"), s.pollTimeoutMs + s.defaults.hangGraceMs);
  s.inFlight.add(ctl);
  const started = s.T.now();
  let ms = 0;
  try {
    const res = await s.env.fetch(s.base + path, { ...init, cache: "no-store", signal: ctl.signal });
    ms = s.T.now() - started;
    return { status: res.status, headers: res.headers, text: await res.text(), ms };
  } catch {
    const why = ctl.signal.aborted ? ctl.signal.reason : "network";
    return { status: 0, error: why, ms: ms || s.T.now() - started };
  } finally {
    s.T.clearTimeout(timer);
    s.inFlight.delete(ctl);
  }
}

// environment fills in the browser's own APIs where options do not replace
// them: fetch, timers ({setTimeout, clearTimeout, now}), random, window
// (where "online", "beforeunload", "pagehide" and "pageshow" are heard),
// locks, BroadcastChannel, sendBeacon. Under Node most are missing, which
// means: no tabs to share with, no page to leave.
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

// parse reads JSON, or gives undefined.
export function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// errorText is the server's {"error": ...} reason, or "".
export function errorText(text) {
  const e = parse(text ?? "")?.error;
  return typeof e === "string" ? e : "";
}
