// timeline.js owns the layout of the timeline in the "Show the wire" panel:
// this browser's requests over the last minute as bars, so a reader sees
// without reading a timestamp how long a poll stayed parked, that a message
// woke it, and that the next poll left at once. It only reads the socket's
// onWire events; wire.js's text log stays the accessible twin of the picture.
//
// This half keeps a bounded record of the events and lays them out as plain
// numbers, with no DOM, so Node tests it on a fake clock; timeline-draw.js
// draws that layout as SVG, and only while the panel is open.
import { cut } from "./shown.js";

// settings are the drawing's sizes in SVG units (one unit is one CSS pixel:
// the picture's width follows the panel's, so its text never shrinks).
export const settings = Object.freeze({
  windowMs: 60_000, // the time shown, the newest moment at the right edge
  minWindowMs: 15_000, // a young page shows only its own life, but at least this
  maxSpans: 150, // ended requests and waits kept; older ones are dropped
  maxOpen: 16, // started ones kept (a tab that vanished never ends its own)
  maxMarks: 20, // "a tab leads", "a tab closed" lines kept
  gutter: 44, // the left margin, for the lanes' names
  charW: 6.6, // one character of the 11 px monospace labels
  minW: 2, // the narrowest bar: a 5 ms emit must still be seen
  tickMs: 10_000, // a clock tick on the time axis every 10 s
});

// geo is where each row sits, top to bottom: leadership marks, the poll
// lane (its cursors above, its bars, how each ended below, then the back-off
// waits' lengths), the emit lane, the time axis.
export const geo = Object.freeze({
  mark: 11,
  pollAbove: 27,
  poll: { top: 31, h: 18 },
  pollBelow: 62,
  waitBelow: 75,
  emit: { top: 82, h: 10 },
  emitBelow: 105,
  axis: 112,
  axisLabel: 124,
  height: 128,
});

const laneOf = { poll: "poll", connect: "poll", wait: "poll", emit: "emit" };

// createTimeline keeps what the drawing needs from onWire events. record is
// cheap (a map and two bounded arrays), so the events can be recorded while
// the panel is closed; layout is the costly part, called only to draw.
export function createTimeline(options = {}) {
  const o = { ...settings, ...options };
  const open = new Map(); // "tab kind n" -> a span whose end has not come
  const done = []; // ended spans, in the order they ended, at most o.maxSpans
  const marks = []; // {at, text}, at most o.maxMarks
  let first = null; // when the first event was recorded

  const keep = (list, item, max) => {
    list.push(item);
    if (list.length > max) list.shift();
  };
  const finish = (span, ev) => {
    const { at, ms, phase, kind, n, tab, ...how } = ev;
    Object.assign(span, how, { end: at });
    keep(done, span, o.maxSpans);
  };

  return {
    // record takes one onWire event; self says whether this tab made it.
    record(ev, self) {
      first ??= ev.at;
      if (ev.kind === "role" && ev.role === "leader") {
        keep(marks, { at: ev.at, text: self ? "this tab leads" : `tab ${ev.tab} leads` }, o.maxMarks);
      } else if (ev.kind === "left") {
        for (const [key, span] of open) {
          if (span.tab !== ev.tab) continue;
          open.delete(key);
          finish(span, { at: ev.at, outcome: "left" });
        }
        keep(marks, { at: ev.at, text: "a tab closed" }, o.maxMarks);
      }
      if (!laneOf[ev.kind] || !ev.phase) return;
      const key = `${ev.tab} ${ev.kind} ${ev.n}`;
      if (ev.phase === "start") {
        open.set(key, spanOf(ev, self));
        if (open.size > o.maxOpen) open.delete(open.keys().next().value);
        return;
      }
      // An end whose start came before this tab listened: ms says when it began.
      const span = open.get(key) ?? spanOf({ ...ev, at: ev.at - (ev.ms ?? 0) }, self);
      open.delete(key);
      finish(span, ev);
    },

    // layout places what overlaps the last o.windowMs before now on a
    // picture width units wide. Until the page has lived that long, it
    // shows the page's life so far, so the first bars are not crammed
    // into the right edge; then the scale stays and the picture scrolls.
    layout(now, width) {
      const spanMs = Math.min(o.windowMs, Math.max(o.minWindowMs, now - (first ?? now)));
      return layout([...done, ...open.values()], marks, now, width, { ...o, spanMs });
    },

    // size says how much is kept, for tests of the bounds.
    get size() {
      return { done: done.length, open: open.size, marks: marks.length };
    },
  };
}

function spanOf(ev, self) {
  const { kind, tab, n, at, after, event, waitMs, reason } = ev;
  return { kind, lane: laneOf[kind], tab, n, self, start: at, end: null, after, event, waitMs, reason };
}

// layout turns spans into bars, gaps, end markers and labels with x
// positions. Labels are placed newest first and one that would overlap a
// placed one is left out: the newest are the ones a reader is watching, and
// the text log has every one.
function layout(spans, marks, now, width, o) {
  const t0 = now - o.spanMs;
  const plotW = width - o.gutter;
  const X = (t) => round(o.gutter + ((Math.min(now, Math.max(t0, t)) - t0) / o.spanMs) * plotW);
  const out = { width, height: geo.height, now, spanMs: o.spanMs, bars: [], gaps: [], ends: [], marks: [], ticks: [], labels: [] };
  const label = placer(o, width, out.labels);
  const shown = spans.filter((s) => (s.end ?? now) >= t0 && s.start <= now).sort((a, b) => b.start - a.start);

  for (const s of shown) {
    const x = X(s.start);
    const w = Math.max(round(X(s.end ?? now) - x), o.minW);
    const from = s.start >= t0; // its start is in the picture, so its label may be
    if (s.kind === "wait") {
      const gap = { x, w, y: geo.poll.top, h: geo.poll.h, ms: (s.end ?? now) - s.start, open: s.end === null };
      out.gaps.push(gap);
      label(`wait ${secs(s.end === null ? s.waitMs : gap.ms)}`, x + w / 2, geo.waitBelow, "middle");
      continue;
    }
    const bar = barOf(s, x, w, X, now);
    out.bars.push(bar);
    const shape = endShape(s);
    if (shape) out.ends.push({ shape, kind: s.kind, tab: s.tab, n: s.n, x: round(x + w), y: bar.y + bar.h / 2 });
    if (s.end === null && s.kind === "poll") {
      // A parked poll counts its seconds inside its bar, once they fit: the
      // row below is kept for how the previous ones ended.
      const text = endText(s, now);
      const tw = text.length * o.charW;
      if (tw + 6 <= w) out.labels.push({ text, x: round(x + w - 3 - tw), y: geo.poll.top + 13, inside: true });
    } else {
      label(endText(s, now), x + w, s.lane === "poll" ? geo.pollBelow : geo.emitBelow, "end");
    }
    if (from && s.lane === "poll") label(s.kind === "poll" ? `after=${s.after}` : "connect", x, geo.pollAbove, "start");
  }
  for (const m of [...marks].reverse()) {
    if (m.at < t0 || m.at > now) continue;
    const x = X(m.at);
    out.marks.push({ x, text: m.text });
    label(m.text, x + 2, geo.mark, "start");
  }
  for (let t = Math.ceil(t0 / o.tickMs) * o.tickMs; t <= now; t += o.tickMs) out.ticks.push({ x: X(t), at: t });
  for (const tick of [...out.ticks].reverse()) tick.labelled = label(clock(tick.at), tick.x, geo.axisLabel, "middle");
  out.summary = summary(shown, now, o);
  return out;
}

// barOf is one request's bar. A poll's parked part (until its answer began,
// or until now while it waits) is drawn tall; the rest of a request thin.
function barOf(s, x, w, X, now) {
  const lane = s.lane === "poll" ? geo.poll : geo.emit;
  const tall = s.kind === "poll";
  const h = tall ? lane.h : geo.emit.h;
  const y = tall ? lane.top : lane.top + (lane.h - h) / 2;
  const parkedMs = s.end === null ? now - s.start : (s.parkedMs ?? s.end - s.start);
  const pw = tall ? round(Math.min(w, X(s.start + parkedMs) - x)) : 0;
  return {
    kind: s.kind,
    tab: s.tab,
    n: s.n,
    self: s.self,
    open: s.end === null,
    start: s.start,
    end: s.end,
    x,
    w,
    pw,
    y,
    h,
    parkedMs,
    outcome: s.outcome ?? "",
    after: s.after,
    event: s.event,
    seqs: s.seqs ?? [],
    events: s.events ?? [],
  };
}

// endShape is the marker where a request ended: "arrival" when it brought
// messages, "quiet" when it ended with nothing wrong but nothing brought,
// "failed" otherwise; none while it runs or when all went as planned.
export function endShape(s) {
  if (s.end === null) return "";
  if (s.outcome === "answer") return "arrival";
  if (s.outcome === "empty" || s.outcome === "cut") return "quiet";
  if (s.outcome === "ok") return "";
  return "failed";
}

// endText says what ended a request, in a few characters.
export function endText(s, now) {
  if (s.end === null) {
    return s.kind === "poll" ? `parked ${secs(now - s.start)} …` : s.kind === "emit" ? `${s.event} …` : "…";
  }
  if (s.kind === "emit") return `${cut(String(s.event), 24)} ${s.outcome === "ok" ? "204" : failText(s)}`;
  if (s.kind === "connect") return s.outcome === "ok" ? "new id" : failText(s);
  if (s.outcome === "answer") return seqText(s.seqs ?? [], s.events ?? []);
  if (s.outcome === "empty") return "timeout";
  return failText(s);
}

function seqText(seqs, events) {
  if (!seqs.length) return "nothing";
  const range = seqs.length === 1 ? `seq ${seqs[0]}` : `seq ${seqs[0]}-${seqs[seqs.length - 1]}`;
  return `${range} ${[...new Set(events)].map((e) => cut(String(e), 24)).join(",")}`;
}

function failText(s) {
  switch (s.outcome) {
    case "network":
      return "network error";
    case "hung":
      return "aborted: hung";
    case "stopped":
      return "aborted";
    case "left":
      return "tab closed";
    case "busy":
      return s.retryAfter === null || s.retryAfter === undefined ? "503" : `503 Retry-After ${s.retryAfter} s`;
    case "gone":
      return `${s.status} gone`;
    case "cut":
      return `${s.status} cut`;
    case "malformed":
      return "bad 200";
    default:
      return String(s.status || s.outcome);
  }
}

// placer returns label(text, x, y, anchor), which adds a label to labels
// unless it would overlap one already in its row or leave the picture.
// Labels are monospace, so their width is known without asking the browser.
function placer(o, width, labels) {
  const rows = new Map(); // y -> [[from, to], ...]
  return (text, x, y, anchor) => {
    const w = text.length * o.charW;
    let from = anchor === "end" ? x - w : anchor === "middle" ? x - w / 2 : x;
    from = Math.max(o.gutter, Math.min(width - w, from));
    const taken = rows.get(y) ?? [];
    if (taken.some(([a, b]) => from < b + 6 && from + w > a - 6)) return false;
    taken.push([from, from + w]);
    rows.set(y, taken);
    labels.push({ text, x: round(from), y });
    return true;
  };
}

// summary is the picture in one sentence, for its text alternative.
function summary(shown, now, o) {
  const count = (kind) => shown.filter((s) => s.kind === kind).length;
  const n = (k, one) => `${count(k)} ${one}${count(k) === 1 ? "" : "s"}`;
  let text = `The last ${Math.round(o.spanMs / 1000)} s of this browser's requests, newest at the right: ${n("poll", "poll")}, ${n("emit", "emit")}, ${n("wait", "back-off wait")}.`;
  const last = shown.find((s) => s.kind === "poll");
  if (last) text += ` Latest poll, after=${last.after}: ${last.end === null ? `parked ${secs(now - last.start)} so far` : endText(last, now)}.`;
  return text + " The list below says the same in words.";
}

function secs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// clock is a tick's label, minutes and seconds of the local time, as in the
// text log's timestamps.
function clock(at) {
  const d = new Date(at);
  const pad = (v) => String(v).padStart(2, "0");
  return `${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function round(v) {
  return Math.round(v * 10) / 10;
}
