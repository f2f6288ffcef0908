// client.test.js runs client.js under Node against a fake server (a stubbed
// fetch) on a fake clock: every back-off rule is checked at the exact
// millisecond it should fire, and no test waits for real time.
// Run: node --test static/
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../client.js";
import { backoff } from "../backoff.js";
import { stayedMs } from "../page.js";

const T0 = 1_000_000; // the fake clock's start: any time well away from 0

// fakeClock stands in for setTimeout and Date.now. advance(ms) fires every
// timer due within ms, in order, letting promises settle between them.
function fakeClock() {
  let now = T0;
  let next = 0;
  const timers = new Map(); // id -> {at, fn}
  return {
    setTimeout(fn, ms) {
      timers.set(++next, { at: now + Math.max(0, ms), fn });
      return next;
    },
    clearTimeout: (id) => timers.delete(id),
    now: () => now,
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        await settle();
        let due = null;
        for (const [id, t] of timers) if (t.at <= end && (!due || t.at < due[1].at)) due = [id, t];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
      await settle();
    },
  };
}

// settle lets every pending promise chain run to its next real wait.
async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

// fakeServer is a fetch whose answers come from answer(req). answer returns
// {status, body, headers, delay} (delay in fake ms), "hang" (never answers),
// "network" (fails like a refused connection), or a promise of one of them.
// Every request is logged with its fake start time.
function fakeServer(clock, answer) {
  const log = [];
  const fetch = (url, init = {}) => {
    const u = new URL(url, "http://page.test");
    const req = {
      method: init.method ?? "GET",
      path: u.pathname,
      id: u.searchParams.get("id"),
      after: u.searchParams.get("after"),
      body: init.body,
      at: clock.now(),
      aborted: false,
    };
    log.push(req);
    return new Promise((resolve, reject) => {
      init.signal?.addEventListener("abort", () => {
        req.aborted = true;
        req.abortedAt = clock.now();
        reject(new DOMException("aborted", "AbortError"));
      });
      Promise.resolve(answer(req)).then((a) => {
        if (a === "hang") return;
        if (a === "network") return reject(new TypeError("fetch failed"));
        const send = () => {
          const body = a.body === undefined ? null : typeof a.body === "string" ? a.body : JSON.stringify(a.body);
          resolve(new Response(a.status === 204 ? null : body, { status: a.status, headers: a.headers }));
        };
        if (a.delay) clock.setTimeout(send, a.delay);
        else send();
      });
    });
  };
  const of = (path) => log.filter((r) => r.path === path);
  return { fetch, log, of };
}

// start connects a client to answer(req), with a fixed random draw so each
// jittered wait is known to the millisecond.
function start(answer, { random = 0.5 } = {}) {
  const clock = fakeClock();
  const server = fakeServer(clock, answer);
  const window = new EventTarget();
  const socket = connect("", { fetch: server.fetch, timers: clock, random: () => random, window });
  const statuses = [];
  const missed = [];
  socket.onStatus((s) => statuses.push(s));
  socket.onMissed((at) => missed.push(at.getTime()));
  return { clock, server, window, socket, statuses, missed };
}

let ids = 0;
const connected = (extra = {}) => ({ status: 200, body: { id: `id${++ids}`, pollTimeoutMs: 2000, ...extra } });
const messages = (...list) => ({ status: 200, body: { messages: list } });
const online = (seq, n = 1) => ({ seq, event: "online", data: n });

test("backoff doubles from 500 ms to at most 10 s", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(backoff), [500, 1000, 2000, 4000, 8000, 10000, 10000]);
});

test("410 on every poll: reconnects at a bounded, growing rate, and onMissed fires once", async () => {
  const c = start((req) => (req.path === "/connect" ? connected() : { status: 410, body: { error: "expired" } }));
  await c.clock.advance(30000);
  const times = c.server.of("/connect").map((r) => r.at - T0);
  // With random 0.5: first reconnect at 500 (uniform [0,1000)), then
  // 3/4 of backoff(2..): 750, 1500, 3000, 6000, 7500, 7500 ...
  assert.deepEqual(times.slice(0, 7), [0, 500, 1250, 2750, 5750, 11750, 19250]);
  assert.ok(times.length <= 9, `${times.length} connects in 30 s`);
  assert.deepEqual(c.missed, [T0], "one notice, with the time of the first failure");
  assert.equal(c.statuses.at(-1), "reconnecting");
  c.socket.close();
});

test("410 after a good answer: the loss time is the 410's, and a new id polls from 0", async () => {
  let connects = 0;
  const d = start((req) => {
    if (req.path === "/connect") return ++connects === 1 ? { status: 200, body: { id: "id-first" } } : connected();
    if (req.id === "id-first") return req.after === "0" ? messages(online(1)) : { status: 410, delay: 700 };
    return req.after === "0" ? messages(online(1), { seq: 2, event: "chat", data: "x" }) : "hang";
  });
  const chats = [];
  d.socket.on("chat", (m) => chats.push(m));
  await d.clock.advance(2000);
  assert.deepEqual(d.missed, [T0 + 700]);
  assert.deepEqual(chats, ["x"]);
  const polls = d.server.of("/poll").map((r) => [r.id, r.after]);
  assert.deepEqual(polls.slice(0, 4), [["id-first", "0"], ["id-first", "1"], [`id${ids}`, "0"], [`id${ids}`, "2"]]);
  assert.deepEqual(d.statuses, ["connecting", "connected", "reconnecting", "connected"]);
  d.socket.close();
});

test("400 on a poll drops the id and reconnects fresh, like a 410", async () => {
  let polls = 0;
  const c = start((req) => (req.path === "/connect" ? connected() : ++polls === 1 ? { status: 400, body: { error: "after is beyond" } } : "hang"));
  await c.clock.advance(500);
  const connects = c.server.of("/connect");
  assert.equal(connects.length, 2);
  assert.equal(connects[1].at - T0, 500, "after uniform [0, 1000) ms");
  assert.deepEqual(c.server.of("/poll").map((r) => r.after), ["0", "0"]);
  assert.equal(c.missed.length, 1);
  c.socket.close();
});

test("503 with Retry-After: waits [R, 2R) seconds, as the server asked", async () => {
  for (const [random, want] of [[0, 2000], [0.999, 3998]]) {
    let polls = 0;
    const c = start(
      (req) => {
        if (req.path === "/connect") return connected();
        return ++polls === 1 ? { status: 503, headers: { "Retry-After": "2" }, body: { error: "shutting down" } } : "hang";
      },
      { random },
    );
    await c.clock.advance(want - 1);
    assert.equal(c.server.of("/poll").length, 1, "not before the Retry-After wait");
    await c.clock.advance(1);
    assert.equal(c.server.of("/poll").length, 2);
    assert.equal(c.server.of("/poll")[1].at - T0, want);
    assert.equal(c.server.of("/connect").length, 1, "a 503 keeps the id");
    assert.deepEqual(c.statuses, ["connecting", "reconnecting"]);
    c.socket.close();
  }
});

test("a refused connect (429 or 503) waits [R, 2R) seconds, as the server asked, then connects", async () => {
  for (const status of [429, 503]) {
    let connects = 0;
    const c = start(
      (req) => {
        if (req.path !== "/connect") return "hang";
        return ++connects === 1 ? { status, headers: { "Retry-After": "3" }, body: { error: "refused" } } : connected();
      },
      { random: 0.5 },
    );
    await c.clock.advance(4499);
    assert.equal(c.server.of("/connect").length, 1, `${status}: not before the Retry-After wait`);
    await c.clock.advance(1);
    assert.equal(c.server.of("/connect").length, 2, `${status}: then at once`);
    assert.equal(c.server.of("/poll").length, 1);
    c.socket.close();
  }
});

test("503 without a usable Retry-After backs off like any failure", async () => {
  const c = start((req) => (req.path === "/connect" ? connected() : { status: 503, headers: { "Retry-After": "soon" } }), { random: 0 });
  await c.clock.advance(1000);
  assert.deepEqual(c.server.of("/poll").map((r) => r.at - T0), [0, 250, 750]);
  c.socket.close();
});

test("a malformed 200 is a failure: it backs off and never says connected", async () => {
  const bodies = ['{"foo":1}', "<html>proxy login</html>", '{"messages":"none"}', '{"messages":[{"event":"x"}]}'];
  let n = 0;
  const c = start((req) => (req.path === "/connect" ? connected() : { status: 200, body: bodies[n++ % bodies.length] }), { random: 0 });
  await c.clock.advance(4000);
  // random 0 waits backoff(n)/2: 250, 500, 1000, 2000.
  assert.deepEqual(c.server.of("/poll").map((r) => r.at - T0), [0, 250, 750, 1750, 3750]);
  assert.deepEqual(c.statuses, ["connecting", "reconnecting"]);
  c.socket.close();
});

test("a 504 after a long park is a proxy's cut: poll again at once, quietly", async () => {
  let polls = 0;
  const c = start((req) => {
    if (req.path === "/connect") return connected();
    polls++;
    if (polls === 1) return messages(online(1));
    if (polls <= 3) return { status: 504, delay: 1500 };
    return "hang";
  });
  await c.clock.advance(3000);
  assert.deepEqual(c.server.of("/poll").map((r) => r.at - T0), [0, 0, 1500, 3000]);
  assert.deepEqual(c.statuses, ["connecting", "connected"], "no reconnecting for a proxy's cut");
  c.socket.close();
});

test("a quick 504 is a real failure", async () => {
  let polls = 0;
  const c = start((req) => {
    if (req.path === "/connect") return connected();
    polls++;
    if (polls === 1) return messages(online(1));
    if (polls === 2) return { status: 504, delay: 10 };
    return "hang";
  }, { random: 0 });
  await c.clock.advance(1000);
  assert.deepEqual(c.server.of("/poll").map((r) => r.at - T0), [0, 0, 260]);
  assert.deepEqual(c.statuses, ["connecting", "connected", "reconnecting"]);
  c.socket.close();
});

test("a poll that never answers is aborted at pollTimeoutMs + 10 s", async () => {
  for (const [connectAnswer, limit] of [
    [{ status: 200, body: { id: "a", pollTimeoutMs: 2000 } }, 12000],
    [{ status: 200, body: { id: "b" } }, 35000], // today's server does not say: 25 s assumed
  ]) {
    const c = start((req) => (req.path === "/connect" ? connectAnswer : "hang"), { random: 0 });
    await c.clock.advance(limit - 1);
    const first = c.server.of("/poll")[0];
    assert.equal(first.aborted, false);
    await c.clock.advance(1);
    assert.equal(first.abortedAt - T0, limit);
    assert.deepEqual(c.statuses, ["connecting", "reconnecting"]);
    await c.clock.advance(250);
    assert.equal(c.server.of("/poll").length, 2, "polls again after backoff(1)");
    c.socket.close();
  }
});

test("the window's online event cuts a back-off wait short", async () => {
  let up = false;
  const c = start((req) => (!up ? "network" : req.path === "/connect" ? connected() : "hang"), { random: 0 });
  await c.clock.advance(8000); // connects at 0, 250, 750, 1750, 3750, 7750: next wait 8000
  assert.equal(c.server.log.length, 6);
  up = true;
  c.window.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(c.server.log.length, 8, "connect and poll at once");
  assert.equal(c.server.log.at(-1).at - T0, 8000);
  c.socket.close();
});

test("emits leave one at a time, in call order, and settle in that order", async () => {
  const pending = []; // resolvers of the emits the server holds
  const c = start((req) => {
    if (req.path === "/connect") return connected();
    if (req.path === "/poll") return "hang";
    return new Promise((resolve) => pending.push(resolve));
  });
  const settled = [];
  const emits = ["a", "b", "c", "d"].map((text) =>
    c.socket.emit("chat", { text }).then(
      () => settled.push(`${text} ok`),
      (err) => settled.push(`${text} ${err.message}`),
    ),
  );
  const inFlight = () => c.server.of("/emit").length - settled.length;
  for (const answer of [{ status: 204 }, { status: 400, body: { error: "bad event" } }, { status: 204 }, "network"]) {
    await settle();
    assert.equal(inFlight(), 1, "exactly one emit in flight");
    pending.shift()(answer);
    await settle();
  }
  await Promise.all(emits);
  assert.deepEqual(c.server.of("/emit").map((r) => JSON.parse(r.body).data.text), ["a", "b", "c", "d"]);
  assert.deepEqual(settled, ["a ok", "b bad event", "c ok", "d network error"]);
  c.socket.close();
});

test("an emit made before the id exists waits for it", async () => {
  const c = start((req) => (req.path === "/connect" ? { ...connected(), delay: 300 } : req.path === "/poll" ? "hang" : { status: 204 }));
  const sent = c.socket.emit("chat", "early");
  await c.clock.advance(299);
  assert.equal(c.server.of("/emit").length, 0);
  await c.clock.advance(1);
  await sent;
  assert.equal(c.server.of("/emit")[0].id, c.server.of("/poll")[0].id);
  c.socket.close();
});

test("the wire hook reports each poll: its cursor, its park, what it brought", async () => {
  const c = start((req) => {
    if (req.path === "/connect") return connected();
    if (req.after === "0") return messages(online(1));
    if (req.after === "1") return { ...messages({ seq: 2, event: "chat", data: "hi" }), delay: 1200 };
    return "hang";
  });
  const seen = [];
  c.socket.onWire((ev) => seen.push(ev));
  await c.clock.advance(1500);
  const polls = seen.filter((e) => e.kind === "poll" && e.phase === "end");
  assert.deepEqual(
    polls.map((e) => [e.after, e.outcome, e.parkedMs, e.seqs, e.events]),
    [
      [0, "answer", 0, [1], ["online"]],
      [1, "answer", 1200, [2], ["chat"]],
    ],
  );
  assert.deepEqual(seen[0], { kind: "role", role: "alone", tab: "solo", at: T0 });
  c.socket.close();
});

// fakeLocks is a Web Locks stand-in: one holder per name, waiters first come
// first served, an aborted waiter leaves the queue.
function fakeLocks() {
  const queues = new Map();
  return {
    request(name, opts, cb) {
      if (typeof opts === "function") [cb, opts] = [opts, {}];
      const q = queues.get(name) ?? [];
      queues.set(name, q);
      return new Promise((resolve, reject) => {
        const w = {
          async run() {
            try {
              resolve(await cb({ name }));
            } catch (err) {
              reject(err);
            } finally {
              q.shift();
              q[0]?.run();
            }
          },
        };
        opts.signal?.addEventListener("abort", () => {
          const i = q.indexOf(w);
          if (i > 0) {
            q.splice(i, 1);
            reject(new DOMException("aborted", "AbortError"));
          }
        });
        q.push(w);
        if (q.length === 1) w.run();
      });
    },
  };
}

// Real BroadcastChannels deliver between macrotasks, so these tests wait on
// conditions, each with a generous bound, rather than on the fake clock alone.
async function until(cond, what) {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
}

test("tabs share one id and one poll; when the leader closes, the next polls on from its cursor", async (t) => {
  const clock = fakeClock();
  let connects = 0;
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: `tab-id-${++connects}`, pollTimeoutMs: 2000 } };
    if (req.path === "/emit") return { status: 204 };
    if (req.after === "0") return messages(online(1), { seq: 2, event: "chat", data: "one" });
    if (req.after === "2" && server.of("/poll").filter((r) => r.after === "2").length === 1)
      return { ...messages({ seq: 3, event: "chat", data: "two" }), delay: 100 };
    return "hang";
  });
  const locks = fakeLocks();
  const open = () => {
    const s = connect("", { fetch: server.fetch, timers: clock, locks, BroadcastChannel, window: new EventTarget() });
    t.after(() => s.close()); // a failed assertion must not leave a channel open, or the run never ends
    const got = { chats: [], online: [], socket: s };
    s.on("chat", (m) => got.chats.push(m));
    s.on("online", (n) => got.online.push(n));
    return got;
  };
  const a = open();
  const b = open();
  await until(() => a.socket.role === "leader" && b.socket.role === "follower", "a leads, b follows");
  await clock.advance(50);
  await until(() => b.chats.length === 1, "b hears the leader's messages");
  await clock.advance(100);
  await until(() => b.chats.length === 2 && a.chats.length === 2, "both have two chats");
  assert.deepEqual(b.online, [1]);
  assert.equal(connects, 1, "one id for both tabs");

  // b's emit goes out under the shared id.
  await b.socket.emit("chat", "from b");
  assert.equal(server.of("/emit")[0].id, "tab-id-1");

  const pollsBefore = server.of("/poll").length;
  a.socket.close();
  await until(() => b.socket.role === "leader", "b takes over");
  await clock.advance(1);
  const next = server.of("/poll").slice(pollsBefore);
  assert.deepEqual(next.map((r) => [r.id, r.after]), [["tab-id-1", "3"]], "same id, same cursor");
  assert.deepEqual(b.chats, ["one", "two"], "nothing lost, nothing twice");
  b.socket.close();
});

// A tab leaves at beforeunload (then pagehide), as a person's close runs them,
// or at pagehide alone, where the browser skipped beforeunload.
for (const events of [["pagehide"], ["beforeunload", "pagehide"]]) {
  test(`closing a tab that is not the last says no goodbye; the last says it once (${events.join(", then ")})`, async (t) => {
    const clock = fakeClock();
    const server = fakeServer(clock, (req) =>
      req.path === "/connect" ? { status: 200, body: { id: "shared", pollTimeoutMs: 2000 } } : req.after === "0" ? messages(online(1)) : "hang",
    );
    const locks = fakeLocks();
    const beacons = [];
    const open = () => {
      const window = new EventTarget();
      const socket = connect("", { fetch: server.fetch, timers: clock, locks, BroadcastChannel, window, sendBeacon: (url) => beacons.push(url) });
      t.after(() => socket.close()); // a failed assertion must not leave a channel open
      return { window, socket };
    };
    const a = open();
    const b = open();
    await until(() => a.socket.role === "leader" && b.socket.role === "follower", "a leads, b follows");
    await clock.advance(1);
    await new Promise((r) => setTimeout(r, 50)); // let the greetings cross
    for (const e of events) a.window.dispatchEvent(new Event(e));
    assert.deepEqual(beacons, [], "b is still open");
    await until(() => b.socket.role === "leader", "b takes over");
    await new Promise((r) => setTimeout(r, 50)); // let a's bye arrive
    const [first, ...later] = events;
    b.window.dispatchEvent(new Event(first));
    assert.deepEqual(beacons, ["/disconnect?id=shared"], `the goodbye leaves at ${first}`);
    for (const e of later) b.window.dispatchEvent(new Event(e));
    assert.deepEqual(beacons, ["/disconnect?id=shared"], "one goodbye per id");
  });
}

test("a page still here after beforeunload (the unload was cancelled) comes back", async (t) => {
  const clock = fakeClock();
  let connects = 0;
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: `c${++connects}`, pollTimeoutMs: 2000 } };
    return req.after === "0" ? messages(online(1)) : "hang";
  });
  const window = new EventTarget();
  const beacons = [];
  const socket = connect("", { fetch: server.fetch, timers: clock, random: () => 0.5, window, sendBeacon: (url) => beacons.push(url) });
  t.after(() => socket.close());
  const missed = [];
  socket.onMissed((at) => missed.push(at.getTime()));
  await clock.advance(10);
  const parked = server.of("/poll").at(-1);
  window.dispatchEvent(new Event("beforeunload"));
  assert.deepEqual(beacons, ["/disconnect?id=c1"]);
  assert.ok(parked.aborted, "the parked poll ends with the goodbye, before the server can answer it 410");
  await clock.advance(stayedMs - 1);
  assert.equal(connects, 1, "still waiting for the unload");
  await clock.advance(1);
  assert.equal(connects, 2, "back, with a new id");
  assert.deepEqual(missed, [T0 + 10], "saying since when messages may be missing");

  // This time the unload goes on to pagehide, and the page stays gone.
  window.dispatchEvent(new Event("beforeunload"));
  window.dispatchEvent(new Event("pagehide"));
  assert.deepEqual(beacons, ["/disconnect?id=c1", "/disconnect?id=c2"], "one goodbye per id");
  await clock.advance(2 * stayedMs);
  assert.equal(connects, 2, "gone for good");
});

// openTab opens one more tab of a browser whose tabs share locks, with its own
// window, and records what its page hears.
function openTab(t, clock, server, locks) {
  const window = new EventTarget();
  const socket = connect("", { fetch: server.fetch, timers: clock, locks, BroadcastChannel, window });
  t.after(() => socket.close()); // a failed assertion must not leave a channel open
  const got = { window, socket, chats: [], online: [], missed: [] };
  socket.on("chat", (m) => got.chats.push(m));
  socket.on("online", (n) => got.online.push(n));
  socket.onMissed((at) => got.missed.push(at.getTime()));
  return got;
}

test("a tab that left without a goodbye and comes back says what it may have missed, and takes the count anew", async (t) => {
  const clock = fakeClock();
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: "shared", pollTimeoutMs: 2000 } };
    if (req.after === "0") return messages(online(1));
    // While b is away, the leader hears a chat and a new count.
    if (req.after === "1") return { ...messages({ seq: 2, event: "chat", data: "gap" }, online(3, 3)), delay: 1000 };
    return "hang";
  });
  const locks = fakeLocks();
  const a = openTab(t, clock, server, locks);
  const b = openTab(t, clock, server, locks);
  await until(() => a.socket.role === "leader" && b.socket.role === "follower", "a leads, b follows");
  await clock.advance(1);
  await new Promise((r) => setTimeout(r, 50)); // let the greetings cross
  b.window.dispatchEvent(new Event("beforeunload")); // and the unload is cancelled
  const leftAt = clock.now();
  await clock.advance(1000);
  await until(() => a.chats.length === 1, "a hears the chat");
  await clock.advance(stayedMs);
  await until(() => b.missed.length === 1, "b, back, says messages may be missing");
  assert.deepEqual(b.missed, [leftAt]);
  assert.deepEqual(b.chats, [], "b does not pretend to have the chat");
  await until(() => b.online.at(-1) === 3, "b shows the count the leader has now");
  assert.deepEqual(a.missed, [], "a missed nothing");
});

test("a tab that comes back having missed nothing says nothing, then or when it leads later", async (t) => {
  const clock = fakeClock();
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: "shared", pollTimeoutMs: 2000 } };
    return req.after === "0" ? messages(online(1)) : "hang";
  });
  const locks = fakeLocks();
  const a = openTab(t, clock, server, locks);
  const b = openTab(t, clock, server, locks);
  await until(() => a.socket.role === "leader" && b.socket.role === "follower", "a leads, b follows");
  await clock.advance(1);
  await new Promise((r) => setTimeout(r, 50)); // let the greetings cross
  b.window.dispatchEvent(new Event("beforeunload")); // and the unload is cancelled
  await clock.advance(stayedMs);
  await new Promise((r) => setTimeout(r, 50)); // let b hear the leader's state
  assert.deepEqual(b.missed, [], "nothing came while b was away");
  a.socket.close();
  await until(() => b.socket.role === "leader", "b takes over");
  assert.deepEqual(b.missed, [], "b leads from the cursor it shares with a");
});

test("a follower's emit during the leader's reconnect waits for the new id", async (t) => {
  const clock = fakeClock();
  let connects = 0;
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: `gen${++connects}`, pollTimeoutMs: 2000 } };
    if (req.path === "/emit") return { status: 204 };
    if (req.id === "gen1") return req.after === "0" ? messages(online(1)) : { status: 410, delay: 100 };
    return "hang";
  });
  const locks = fakeLocks();
  const opts = () => ({ fetch: server.fetch, timers: clock, locks, BroadcastChannel, window: new EventTarget(), random: () => 0.5 });
  const a = connect("", opts());
  const b = connect("", opts());
  t.after(() => (a.close(), b.close())); // a failed assertion must not leave a channel open
  await until(() => a.role === "leader" && b.role === "follower", "a leads, b follows");
  await clock.advance(100); // the 410: a drops gen1 and waits 500 ms before connecting
  await new Promise((r) => setTimeout(r, 50)); // let b hear that the id is gone
  const sent = b.emit("chat", "while reconnecting");
  await clock.advance(499);
  assert.equal(server.of("/emit").length, 0, "no emit under the dropped id");
  await clock.advance(1);
  await until(() => server.of("/emit").length === 1, "the emit goes out under the new id");
  await sent;
  assert.equal(server.of("/emit")[0].id, "gen2");
  a.close();
  b.close();
});

// deepText is JSON for an array nested depth levels: from about 3,300 levels
// Node's structured clone (a post to the other tabs) and String() run out of stack.
const deepText = (depth) => "[".repeat(depth) + "0" + "]".repeat(depth);

test("a handler that throws, or a post to the other tabs that throws, stops neither the loop nor the next message", async (t) => {
  const reported = [];
  const was = globalThis.reportError;
  globalThis.reportError = (err) => reported.push(err);
  t.after(() => (globalThis.reportError = was));
  const clock = fakeClock();
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: "x", pollTimeoutMs: 2000 } };
    if (req.after === "0") return messages({ seq: 1, event: "chat", data: "boom" });
    // 10,000 arrays deep: the message that stopped every Chromium chat tab.
    if (req.after === "1") return { status: 200, body: `{"messages":[{"seq":2,"event":"chat","data":${deepText(10000)}}]}` };
    if (req.after === "2") return messages({ seq: 3, event: "chat", data: "next" });
    return "hang";
  });
  const socket = connect("", { fetch: server.fetch, timers: clock, locks: fakeLocks(), BroadcastChannel, window: new EventTarget() });
  t.after(() => socket.close());
  const chats = [];
  socket.on("chat", (m) => {
    if (m === "boom") throw new Error("a handler's bug");
  });
  socket.on("chat", (m) => String(m)); // runs out of stack on the deep one
  socket.on("chat", (m) => chats.push(Array.isArray(m) ? "deep" : m));
  await until(() => socket.role === "leader", "the only tab leads");
  await clock.advance(1);
  await until(() => server.of("/poll").length === 4, "the loop polls on");
  assert.deepEqual(server.of("/poll").map((r) => r.after), ["0", "1", "2", "3"]);
  assert.deepEqual(chats, ["boom", "deep", "next"], "the other handlers hear every message");
  assert.deepEqual(
    reported.map((e) => e.constructor.name),
    ["Error", "RangeError", "RangeError"],
    "each bug is reported, not lost: the handler's, the post's, String()'s",
  );
});

test("an online count that cannot be posted does not keep the leader's state from a tab that joins later", async (t) => {
  const was = globalThis.reportError;
  globalThis.reportError = () => {};
  t.after(() => (globalThis.reportError = was));
  const clock = fakeClock();
  let release = null; // answers the poll parked after the deep count
  const server = fakeServer(clock, (req) => {
    if (req.path === "/connect") return { status: 200, body: { id: "shared", pollTimeoutMs: 2000 } };
    if (req.after === "0") return messages(online(1));
    if (req.after === "1") return { status: 200, body: `{"messages":[{"seq":2,"event":"online","data":${deepText(10000)}}]}` };
    if (req.after === "2") return new Promise((resolve) => (release = () => resolve(messages({ seq: 3, event: "chat", data: "later" }))));
    return "hang";
  });
  const locks = fakeLocks();
  const a = openTab(t, clock, server, locks);
  await until(() => a.socket.role === "leader", "a leads");
  await clock.advance(1);
  await until(() => release !== null, "a heard the deep count and parked");
  assert.equal(a.online.length, 2, "a's handlers heard both counts");
  const b = openTab(t, clock, server, locks);
  const statuses = [];
  b.socket.onStatus((st) => statuses.push(st));
  await until(() => statuses.at(-1) === "connected", "b hears the leader's state, and says connected");
  assert.deepEqual(b.online, [1], "b is told the last count that was a count");
  release();
  await clock.advance(1);
  await until(() => b.chats.length === 1, "b hears the next chat");
});

test("an emit whose data JSON cannot hold rejects, and the next emit goes out", async () => {
  const c = start((req) => (req.path === "/connect" ? connected() : req.path === "/poll" ? "hang" : { status: 204 }));
  const cyclic = {};
  cyclic.self = cyclic;
  for (const bad of [cyclic, 1n, JSON.parse(deepText(10000))]) {
    let sent;
    assert.doesNotThrow(() => (sent = c.socket.emit("chat", bad)));
    await assert.rejects(sent, /circular|BigInt|call stack/);
  }
  await c.socket.emit("chat", "fine");
  assert.deepEqual(c.server.of("/emit").map((r) => JSON.parse(r.body).data), ["fine"]);
  c.socket.close();
});
