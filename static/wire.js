// wire.js owns the "Show the wire" panel: a live list of this browser's
// requests, so a reader can watch what the lesson describes: a poll parks,
// a message wakes it, the next poll leaves at once; a failure waits out its
// back-off; one tab polls while the others listen. It only reads the
// socket's onWire events, which the chat itself never needs. The same events
// are drawn above the list as a timeline (timeline-draw.js).
import { showTimeline } from "./timeline-draw.js";
import { cut } from "./shown.js";

const maxLines = 200; // older lines are dropped, so an open tab cannot grow forever

// showWire fills list (an <ol>) with one line per request or wait, and role
// (a <p>) with what this tab does. A line appears when its request starts
// and is rewritten when it ends; while a poll is parked, its line counts the
// seconds.
export function showWire(socket, list, role) {
  showTimeline(socket, list);
  const open = new Map(); // "tab kind n" -> {li, ev}, for requests not yet ended

  socket.onWire((ev) => {
    const self = ev.tab === socket.tab;
    if (ev.kind === "left") {
      for (const [key, { li, ev: started }] of open) {
        if (started.tab !== ev.tab) continue;
        li.dataset.phase = "end";
        li.dataset.outcome = "left";
        li.textContent = line(started, false, ev.at) + " (the tab closed)";
        open.delete(key);
      }
      return;
    }
    if (ev.kind === "role" && self) role.textContent = roleText(ev.role);
    const key = `${ev.tab} ${ev.kind} ${ev.n}`;
    const started = ev.phase === "end" ? open.get(key) : null;
    let li = started?.li;
    if (!li) {
      li = document.createElement("li");
      li.className = "wire";
      list.append(li);
      while (list.children.length > maxLines) list.firstElementChild.remove();
    }
    li.dataset.kind = ev.kind;
    li.dataset.phase = ev.phase ?? "end";
    li.dataset.self = String(self);
    if (ev.outcome) li.dataset.outcome = ev.outcome;
    if (ev.kind === "poll" && ev.phase === "end") li.dataset.parkedMs = String(Math.round(ev.parkedMs));
    if (ev.kind === "wait" && ev.phase === "end") li.dataset.cut = ev.cut;
    if (ev.phase === "start") open.set(key, { li, ev });
    else open.delete(key);
    // A line keeps its start time: the lines stay in the order things began,
    // and "parked 3.0 s" says when the answer came.
    li.textContent = line(started ? { ...ev, at: started.ev.at } : ev, self, Date.now());
    // Follow the newest line only if the reader was already at the bottom.
    if (list.scrollTop + list.clientHeight >= list.scrollHeight - li.offsetHeight - 4) {
      list.scrollTop = list.scrollHeight;
    }
  });

  // A parked poll is silent until it answers; counting its seconds is what
  // makes the park visible. Only while the panel is open, and only a poll
  // started by a tab of this page's clock (others' clocks may differ slightly).
  setInterval(() => {
    if (!list.closest("details")?.open) return;
    for (const { li, ev } of open.values()) {
      if (ev.kind === "poll") li.textContent = line(ev, ev.tab === socket.tab, Date.now());
    }
  }, 1000);
}

function roleText(role) {
  if (role === "leader") return "This tab polls for every tab of this browser.";
  if (role === "follower") return "This tab listens: another tab of this browser polls and passes each message on.";
  return "This tab polls for itself (this browser cannot share one poll between tabs here).";
}

// line is one event as text: when, which tab, what was asked, how it ended.
function line(ev, self, now) {
  const who = self ? "" : `[tab ${ev.tab}] `;
  return `${clock(ev.at)} ${who}${what(ev, now)}`;
}

function what(ev, now) {
  const done = ev.phase === "end";
  switch (ev.kind) {
    case "role":
      return ev.role === "leader" ? "takes the lead: polls from now on" : ev.role === "follower" ? "listens" : "polls alone";
    case "goodbye":
      return "last tab closing: sendBeacon POST /disconnect";
    case "connect":
      if (!done) return "POST /connect …";
      return ev.outcome === "ok"
        ? `POST /connect → 200 in ${secs(ev.ms)}: id ${ev.id.slice(0, 8)}…; ` +
            (ev.said ? `the server parks a poll up to ${secs(ev.pollTimeoutMs)}` : `poll timeout not said, ${secs(ev.pollTimeoutMs)} assumed`)
        : `POST /connect → ${failure(ev)}`;
    case "poll": {
      const asked = `GET /poll after=${ev.after}`;
      if (!done) return `${asked} … parked ${secs(now - ev.at)}`;
      return `${asked} → parked ${secs(ev.parkedMs)} → ${pollEnd(ev)}`;
    }
    case "emit":
      if (!done) return `POST /emit "${ev.event}" …`;
      return `POST /emit "${ev.event}" → ${ev.outcome === "ok" ? "204" : failure(ev)} in ${secs(ev.ms)}`;
    case "wait": {
      const why = `after ${ev.failures} failure${ev.failures === 1 ? "" : "s"} (${ev.reason})`;
      if (!done) return `wait ${secs(ev.waitMs)} ${why} …`;
      return ev.cut
        ? `wait ${secs(ev.waitMs)} ${why}: cut short after ${secs(ev.ms)} (${ev.cut === "online" ? "back online" : ev.cut})`
        : `waited ${secs(ev.waitMs)} ${why}`;
    }
    default:
      return ev.kind;
  }
}

function pollEnd(ev) {
  switch (ev.outcome) {
    case "answer":
      return `200: ${ev.seqs.map((s, i) => `seq ${s} ${heard(ev.events[i])}`).join(", ")}`;
    case "empty":
      return "200: nothing (the server's poll timeout, or a newer poll took over)";
    case "cut":
      return `${ev.status}: a proxy cut the parked poll; ask again at once`;
    case "gone":
      return `${ev.status}: the server forgot this id (${heard(ev.why) || "gone"}); connect anew`;
    case "busy":
      return `503: server busy or shutting down${ev.retryAfter === null ? "" : `, Retry-After ${ev.retryAfter} s`}`;
    case "malformed":
      return "200 but not {\"messages\":[...]}: a failure";
    case "hung":
      return "aborted: no answer long past the server's poll timeout";
    case "stopped":
      return "aborted: the page is going away";
    default:
      return failure(ev);
  }
}

function failure(ev) {
  if (ev.outcome === "network") return "network error";
  if (ev.outcome === "hung") return "aborted: no answer";
  if (ev.outcome === "stopped") return "aborted: the page is going away";
  return `${ev.status}${ev.why ? ` (${heard(ev.why)})` : ""}`;
}

// heard shows a string that came over the network (an event name, an
// error's text) as a short piece of its own: cut to 64 characters and, if
// it is not plain ASCII, isolated (U+2068 … U+2069), so a right-to-left
// control in it cannot reorder the rest of the line.
function heard(s) {
  if (typeof s !== "string" || !s) return "";
  return /^[\x20-\x7e]*$/.test(s) ? cut(s, 64) : `\u2068${cut(s, 64)}\u2069`;
}

function secs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function clock(at) {
  const d = new Date(at);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
