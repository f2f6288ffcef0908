// timeline.test.js checks the wire panel's timeline without a browser: the
// layout (timeline.js) turns onWire events into bars, gaps, markers and
// labels at exact positions for a given moment, and the redrawer
// (timeline-draw.js) draws only while the panel is open, once per frame.
// Run: node --test static/
process.env.TZ = "UTC"; // the axis labels are local minutes and seconds

import { test } from "node:test";
import assert from "node:assert/strict";
import { createTimeline, endShape, endText, geo, settings } from "../timeline.js";
import { redrawer } from "../timeline-draw.js";

// 644 units wide: a 44-unit gutter and 600 for 60 s, so 10 units a second
// and one unit is 100 ms.
const W = 644;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0); // 12:00:00, on a tick

// full is a timeline that shows the whole minute from the start, as a page
// older than a minute does: the tests of where things go need no zoom.
const full = () => createTimeline({ minWindowMs: settings.windowMs });

// play records events given as [at (ms after T0), fields], all from this tab.
function play(events, tl = full()) {
  for (const [at, ev] of events) tl.record({ tab: "a", at: T0 + at, ...ev }, true);
  return tl;
}

// poll and friends are the onWire events a tab reports, as client.js sends them.
const start = (kind, n, more = {}) => ({ kind, n, phase: "start", ...more });
const end = (kind, n, ms, more = {}) => ({ kind, n, phase: "end", ms, ...more });

const pick = (list, keys) => list.map((o) => Object.fromEntries(keys.map((k) => [k, o[k]])));
const texts = (L, y) => L.labels.filter((l) => l.y === y).map((l) => [l.text, l.x]);

test("a chat wakes a parked poll, and the next poll leaves at once", () => {
  const tl = play([
    [-1000, { kind: "role", role: "leader" }],
    [0, start("poll", 1, { after: 6 })],
    [2990, start("emit", 2, { event: "chat" })],
    [2995, end("emit", 2, 5, { event: "chat", outcome: "ok", status: 204 })],
    [3000, end("poll", 1, 3000, { after: 6, outcome: "answer", status: 200, parkedMs: 2998, seqs: [7], events: ["chat"] })],
    [3002, start("poll", 3, { after: 7 })],
  ]);
  // 20 s later the window starts at T0 - 40 s, so T0 is at 44 + 400.
  const L = tl.layout(T0 + 20_000, W);
  assert.deepEqual(pick(L.bars, ["kind", "n", "open", "x", "w", "pw", "y", "h"]), [
    { kind: "poll", n: 3, open: true, x: 474, w: 170, pw: 170, y: 31, h: 18 }, // parked until now, at the right edge
    { kind: "emit", n: 2, open: false, x: 473.9, w: 2, pw: 0, y: 82, h: 10 }, // 5 ms, drawn 2 wide
    { kind: "poll", n: 1, open: false, x: 444, w: 30, pw: 30, y: 31, h: 18 }, // parked 3 s
  ]);
  // The wake-up: a dot where the parked bar ends, which is where the next one starts.
  assert.deepEqual(L.ends, [{ shape: "arrival", kind: "poll", tab: "a", n: 1, x: 474, y: 40 }]);
  assert.equal(L.bars[0].x, L.ends[0].x);
  assert.deepEqual(texts(L, geo.poll.top + 13), [["parked 17.0 s …", 542]]); // inside the open bar
  // Newest first: after=7 is placed, and after=6 would overlap it, so it is left out.
  assert.deepEqual(texts(L, geo.pollAbove), [["after=7", 474]]);
  assert.deepEqual(texts(L, geo.pollBelow), [["seq 7 chat", 408]]);
  assert.deepEqual(texts(L, geo.emitBelow), [["chat 204", 423.1]]);
  assert.deepEqual(L.marks, [{ x: 434, text: "this tab leads" }]);
  assert.deepEqual(texts(L, geo.mark), [["this tab leads", 436]]);
  assert.deepEqual(
    L.ticks.map((t) => [t.x, t.labelled]),
    [[44, true], [144, true], [244, true], [344, true], [444, true], [544, true], [644, true]],
  );
  assert.deepEqual(texts(L, geo.axisLabel), [
    ["00:20", 611], // kept inside the picture
    ["00:10", 527.5],
    ["00:00", 427.5],
    ["59:50", 327.5],
    ["59:40", 227.5],
    ["59:30", 127.5],
    ["59:20", 44],
  ]);
  assert.equal(
    L.summary,
    "The last 60 s of this browser's requests, newest at the right: 2 polls, 1 emit, 0 back-off waits. " +
      "Latest poll, after=7: parked 17.0 s so far. The list below says the same in words.",
  );
});

test("a young page shows its life so far, at least 15 s, until a minute has passed; then it scrolls", () => {
  const tl = play(
    [
      [0, start("poll", 1, { after: 0 })],
      [4000, end("poll", 1, 4000, { after: 0, outcome: "empty", status: 200, parkedMs: 4000, seqs: [], events: [] })],
      [4001, start("poll", 2, { after: 0 })],
    ],
    createTimeline(),
  );
  const tests = [
    { name: "5 s old: 15 s shown, 40 units a second", now: 5_000, span: 15_000, bars: [[2, 604, 40], [1, 444, 160]] },
    { name: "30 s old: 30 s shown", now: 30_000, span: 30_000, bars: [[2, 124, 520], [1, 44, 80]] },
    { name: "90 s old: the last minute, the first poll gone", now: 90_000, span: 60_000, bars: [[2, 44, 600]] },
  ];
  for (const tt of tests) {
    const L = tl.layout(T0 + tt.now, W);
    assert.equal(L.spanMs, tt.span, tt.name);
    assert.deepEqual(L.bars.map((b) => [b.n, b.x, b.w]), tt.bars, tt.name);
    assert.match(L.summary, new RegExp(`^The last ${tt.span / 1000} s `), tt.name);
  }
});

test("a parked poll grows with the clock, and counts its seconds once they fit", () => {
  const tl = play([[0, start("poll", 1, { after: 2 })]]);
  const tests = [
    { name: "just sent", now: 500, w: 5, inside: [] },
    { name: "9 s: 90 wide, too narrow for its 92.4-wide label and margins", now: 9_000, w: 90, inside: [] },
    { name: "9.9 s: 99 wide, just enough", now: 9_900, w: 99, inside: [["parked 9.9 s …", 548.6]] },
    { name: "10 s: one character more", now: 10_000, w: 100, inside: [] },
    { name: "11 s", now: 11_000, w: 110, inside: [["parked 11.0 s …", 542]] },
    { name: "past the window: clipped at the left", now: 70_000, w: 600, inside: [["parked 70.0 s …", 542]] },
  ];
  for (const tt of tests) {
    const L = tl.layout(T0 + tt.now, W);
    assert.equal(L.bars.length, 1, tt.name);
    assert.equal(L.bars[0].w, tt.w, tt.name);
    assert.equal(L.bars[0].x + L.bars[0].w, W, `${tt.name}: it reaches now`);
    assert.equal(L.bars[0].pw, tt.w, `${tt.name}: all of it parked`);
    assert.deepEqual(texts(L, geo.poll.top + 13), tt.inside, tt.name);
  }
  // Once its start has scrolled out, its cursor label goes with it.
  assert.deepEqual(texts(tl.layout(T0 + 70_000, W), geo.pollAbove), []);
});

test("a 503 with Retry-After, its back-off wait as a gap with its length, then the next poll", () => {
  const tl = play([
    [0, start("poll", 1, { after: 3 })],
    [100, end("poll", 1, 100, { after: 3, outcome: "busy", status: 503, parkedMs: 100, seqs: [], events: [], retryAfter: 1 })],
    [100, start("wait", 2, { waitMs: 1500, reason: "retry-after", failures: 1 })],
    [1600, end("wait", 2, 1500, { waitMs: 1500, reason: "retry-after", failures: 1, cut: "" })],
    [1600, start("poll", 3, { after: 3 })],
  ]);
  const L = tl.layout(T0 + 10_000, W); // T0 at 544
  assert.deepEqual(pick(L.bars, ["n", "x", "w", "pw", "outcome"]), [
    { n: 3, x: 560, w: 84, pw: 84, outcome: "" },
    { n: 1, x: 544, w: 2, pw: 1, outcome: "busy" }, // 100 ms: 1 unit, drawn 2 wide
  ]);
  assert.deepEqual(L.gaps, [{ x: 545, w: 15, y: 31, h: 18, ms: 1500, open: false }]);
  assert.deepEqual(L.ends, [{ shape: "failed", kind: "poll", tab: "a", n: 1, x: 546, y: 40 }]);
  assert.deepEqual(texts(L, geo.waitBelow), [["wait 1.5 s", 519.5]]);
  assert.deepEqual(texts(L, geo.pollBelow), [["503 Retry-After 1 s", 420.6]]);
  assert.deepEqual(texts(L, geo.pollAbove), [["after=3", 560]]); // the first after=3 overlaps it
  assert.match(L.summary, /2 polls, 0 emits, 1 back-off wait\. Latest poll, after=3: parked 8\.4 s so far\./);

  // While the wait runs it says how long it was asked to be.
  const waiting = play([[0, start("wait", 1, { waitMs: 4000, reason: "network", failures: 3 })]]).layout(T0 + 1000, W);
  assert.deepEqual(waiting.gaps, [{ x: 634, w: 10, y: 31, h: 18, ms: 1000, open: true }]);
  assert.deepEqual(texts(waiting, geo.waitBelow), [["wait 4.0 s", 578]]);
});

test("what ended a request: its label and its marker", () => {
  const poll = { kind: "poll", start: 0, end: 10 };
  const tests = [
    { give: { ...poll, outcome: "answer", seqs: [7, 8, 9], events: ["chat", "online", "chat"] }, text: "seq 7-9 chat,online", shape: "arrival" },
    { give: { ...poll, outcome: "answer", seqs: [4], events: ["chat"] }, text: "seq 4 chat", shape: "arrival" },
    { give: { ...poll, outcome: "empty", seqs: [], events: [] }, text: "timeout", shape: "quiet" },
    { give: { ...poll, outcome: "cut", status: 504 }, text: "504 cut", shape: "quiet" },
    { give: { ...poll, outcome: "gone", status: 410 }, text: "410 gone", shape: "failed" },
    { give: { ...poll, outcome: "busy", status: 503, retryAfter: 2 }, text: "503 Retry-After 2 s", shape: "failed" },
    { give: { ...poll, outcome: "busy", status: 503, retryAfter: null }, text: "503", shape: "failed" },
    { give: { ...poll, outcome: "malformed", status: 200 }, text: "bad 200", shape: "failed" },
    { give: { ...poll, outcome: "http", status: 500 }, text: "500", shape: "failed" },
    { give: { ...poll, outcome: "network", status: 0 }, text: "network error", shape: "failed" },
    { give: { ...poll, outcome: "hung", status: 0 }, text: "aborted: hung", shape: "failed" },
    { give: { ...poll, outcome: "stopped", status: 0 }, text: "aborted", shape: "failed" },
    { give: { ...poll, outcome: "left" }, text: "tab closed", shape: "failed" },
    { give: { kind: "emit", start: 0, end: 10, event: "chat", outcome: "ok", status: 204 }, text: "chat 204", shape: "" },
    { give: { kind: "emit", start: 0, end: 10, event: "chat", outcome: "http", status: 410 }, text: "chat 410", shape: "failed" },
    { give: { kind: "emit", start: 0, end: null, event: "chat" }, text: "chat …", shape: "" },
    { give: { kind: "connect", start: 0, end: 10, outcome: "ok", status: 200 }, text: "new id", shape: "" },
    { give: { kind: "connect", start: 0, end: 10, outcome: "network", status: 0 }, text: "network error", shape: "failed" },
    { give: { ...poll, end: null }, text: "parked 1.2 s …", shape: "" },
    // Event names come from strangers: a long one is cut, so it cannot crowd out the rest.
    { give: { ...poll, outcome: "answer", seqs: [5], events: ["x".repeat(500)] }, text: `seq 5 ${"x".repeat(24)}…`, shape: "arrival" },
    { give: { kind: "emit", start: 0, end: 10, event: "y".repeat(30), outcome: "ok", status: 204 }, text: `${"y".repeat(24)}… 204`, shape: "" },
  ];
  for (const tt of tests) {
    assert.equal(endText(tt.give, 1234), tt.text, JSON.stringify(tt.give));
    assert.equal(endShape(tt.give), tt.shape, JSON.stringify(tt.give));
  }
});

test("a tab that joined late draws an end whose start it never heard from ms", () => {
  const L = play([[3000, end("poll", 9, 3000, { after: 4, outcome: "empty", status: 200, parkedMs: 3000, seqs: [], events: [] })]]).layout(
    T0 + 3000,
    W,
  );
  assert.deepEqual(pick(L.bars, ["n", "x", "w", "start"]), [{ n: 9, x: 614, w: 30, start: T0 }]);
  assert.deepEqual(texts(L, geo.pollBelow), [["timeout", 597.8]]);
});

test("a tab that closes ends its open requests, and the next leader is marked", () => {
  const tl = full();
  tl.record({ kind: "poll", phase: "start", n: 1, tab: "old", at: T0, after: 5 }, false);
  tl.record({ kind: "left", tab: "old", at: T0 + 1000 }, false);
  tl.record({ kind: "role", role: "leader", tab: "new", at: T0 + 1010 }, false);
  tl.record({ kind: "role", role: "follower", tab: "other", at: T0 + 1010 }, false); // not a mark
  tl.record({ kind: "poll", phase: "start", n: 1, tab: "new", at: T0 + 1020, after: 5 }, false);
  const L = tl.layout(T0 + 2000, W);
  assert.deepEqual(pick(L.bars, ["tab", "open", "outcome", "x", "w"]), [
    { tab: "new", open: true, outcome: "", x: 634.2, w: 9.8 },
    { tab: "old", open: false, outcome: "left", x: 624, w: 10 },
  ]);
  assert.deepEqual(L.marks, [
    { x: 634.1, text: "tab new leads" },
    { x: 634, text: "a tab closed" },
  ]);
  assert.deepEqual(texts(L, geo.pollBelow), [["tab closed", 568]]);
  assert.deepEqual(tl.size, { done: 1, open: 1, marks: 2 });
});

test("the record is bounded, and what scrolled out is not drawn", () => {
  const tl = full();
  for (let n = 1; n <= 10_000; n++) {
    tl.record({ kind: "poll", phase: "start", n, tab: "a", at: T0 + n * 10, after: n }, true);
    tl.record({ kind: "poll", phase: "end", n, tab: "a", at: T0 + n * 10 + 5, ms: 5, outcome: "empty", seqs: [], events: [] }, true);
  }
  // Starts that never end (a tab that vanished without a word).
  for (let n = 1; n <= 100; n++) tl.record({ kind: "emit", phase: "start", n, tab: `gone${n}`, at: T0 + 100_000, event: "chat" }, false);
  for (let n = 1; n <= 100; n++) tl.record({ kind: "role", role: "leader", tab: `t${n}`, at: T0 + 100_000 }, false);
  assert.deepEqual(tl.size, { done: settings.maxSpans, open: settings.maxOpen, marks: settings.maxMarks });
  const L = tl.layout(T0 + 100_005, W);
  assert.equal(L.bars.length, settings.maxSpans + settings.maxOpen);
  assert.equal(L.bars.at(-1).n, 10_000 - settings.maxSpans + 1, "the oldest kept is the 150th newest");
  const later = tl.layout(T0 + 100_005 + settings.windowMs + 1, W);
  assert.equal(later.bars.length, settings.maxOpen, "only the ones still open");
  assert.equal(later.marks.length, 0);
});

// fakeFrames stands in for requestAnimationFrame, setTimeout and the clock:
// it lists what is pending, and runs it when asked.
function fakeFrames() {
  let next = 0;
  const f = {
    at: 0,
    frames: new Map(),
    timers: new Map(), // id -> {fn, ms}
    now: () => f.at,
    frame: (fn) => (f.frames.set(++next, fn), next),
    cancelFrame: (h) => f.frames.delete(h),
    setTimeout: (fn, ms) => (f.timers.set(++next, { fn, ms, at: f.at + ms }), next),
    clearTimeout: (h) => f.timers.delete(h),
    runFrames() {
      const due = [...f.frames.values()];
      f.frames.clear();
      for (const fn of due) fn();
    },
    // advance moves the clock by ms and runs the timers due by then.
    advance(ms) {
      f.at += ms;
      for (const [id, t] of [...f.timers]) {
        if (t.at > f.at) continue;
        f.timers.delete(id);
        t.fn();
      }
    },
    waits: () => [...f.timers.values()].map((t) => t.at - f.at).sort((a, b) => a - b),
  };
  return f;
}

test("the timeline draws only while the panel is open, at most ten times a second however many events come", () => {
  const f = fakeFrames();
  let open = false;
  let draws = 0;
  const r = redrawer({ isOpen: () => open, draw: () => draws++, everyMs: () => 137, minGapMs: 100, ...f });

  r.toggled(); // the page starts with the panel closed
  for (let i = 0; i < 1000; i++) r.changed();
  assert.equal(f.frames.size + f.timers.size, 0, "closed: no frame and no timer");

  open = true;
  r.toggled();
  assert.equal(f.frames.size, 1, "opened: one frame asked for");
  assert.deepEqual(f.waits(), [137], "and the scrolling tick");
  for (let i = 0; i < 1000; i++) r.changed(); // a flood of events
  assert.equal(f.frames.size, 1, "a flood still asks for one frame");
  f.runFrames();
  assert.equal(draws, 1);

  f.advance(30);
  for (let i = 0; i < 1000; i++) r.changed(); // more, 30 ms after a drawing
  assert.equal(f.frames.size, 0, "no frame before 100 ms have passed");
  assert.deepEqual(f.waits(), [70, 107], "a wait until then, and the tick");
  f.advance(70);
  assert.equal(f.frames.size, 1);
  f.runFrames();
  assert.equal(draws, 2);
  f.advance(37); // the tick, 37 ms after that drawing: a wait, and the next tick
  assert.deepEqual(f.waits(), [63, 137]);
  f.advance(63);
  assert.equal(f.frames.size, 1);
  f.runFrames();
  assert.equal(draws, 3, "the tick draws, so the picture scrolls");

  f.advance(50);
  r.changed(); // a wait is pending as the panel closes
  open = false;
  r.toggled();
  assert.equal(f.frames.size + f.timers.size, 0, "closed: its wait and its tick are cancelled");
  r.changed();
  f.advance(10_000);
  f.runFrames();
  assert.equal(draws, 3, "nothing drawn while closed");
});
