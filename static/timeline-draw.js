// timeline-draw.js owns the timeline's SVG in the wire panel and when it is
// drawn: it records every onWire event (cheap), and draws timeline.js's
// layout with DOM calls, text only through textContent, only while the panel
// is open, and at most ten times a second however many events come.

import { createTimeline, geo, settings } from "./timeline.js";

const svgNS = "http://www.w3.org/2000/svg";

// showTimeline puts the timeline above the wire panel's list (an element
// inside the panel's <details>) and keeps it drawn while the panel is open.
export function showTimeline(socket, list) {
  const details = list.closest("details");
  const model = createTimeline();
  const svg = el("svg", { class: "timeline-svg", role: "img", width: "100%", "aria-labelledby": "timeline-title" });
  const title = el("title", { id: "timeline-title" });
  const plot = el("g");
  svg.append(title, patterns(), plot);
  const figure = document.createElement("figure");
  figure.className = "timeline";
  figure.append(svg, legend());
  list.before(figure);

  let width = 600; // the picture's width in CSS pixels, once the panel has been laid out
  const reduce = window.matchMedia?.("(prefers-reduced-motion: reduce)");
  const redraw = redrawer({
    isOpen: () => details.open,
    draw: () => draw(svg, title, plot, model.layout(Date.now(), width)),
    // Scroll a pixel at a time; with reduced motion, jump once a second.
    everyMs: () => (reduce?.matches ? 1000 : Math.max(100, settings.windowMs / (width - settings.gutter))),
    now: () => performance.now(),
    frame: (fn) => requestAnimationFrame(fn),
    cancelFrame: (h) => cancelAnimationFrame(h),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h),
  });
  // A closed panel has no width: keep the last one.
  new ResizeObserver(([entry]) => {
    const w = Math.round(entry.contentRect.width);
    if (w <= settings.gutter + 100 || w === width) return;
    width = w;
    redraw.changed();
  }).observe(svg);
  socket.onWire((ev) => {
    model.record(ev, ev.tab === socket.tab);
    redraw.changed();
  });
  details.addEventListener("toggle", redraw.toggled);
  redraw.toggled();
}

// redrawer decides when to draw: on an animation frame after a change, but
// at most once per minGapMs however many events come (a flood of messages
// costs ten drawings a second), every everyMs() while the panel is open so
// that the picture scrolls, and never while it is closed: no frame, no
// timer. toggled() is called when the panel opens or closes.
export function redrawer({ isOpen, draw, everyMs, minGapMs = 100, now, frame, cancelFrame, setTimeout, clearTimeout }) {
  let asked = null; // the animation frame asked for
  let soon = null; // the timer that asks for it, when the last drawing is too recent
  let tick = null; // the scrolling tick, while open
  let last = -Infinity; // when the last drawing was made
  const ask = () => {
    soon = null;
    asked = frame(() => {
      asked = null;
      last = now();
      draw();
    });
  };
  const changed = () => {
    if (asked !== null || soon !== null || !isOpen()) return;
    const wait = last + minGapMs - now();
    if (wait > 0) soon = setTimeout(ask, wait);
    else ask();
  };
  const scroll = () => {
    tick = setTimeout(() => {
      changed();
      scroll();
    }, everyMs());
  };
  return {
    changed,
    toggled() {
      if (isOpen()) {
        if (tick === null) scroll();
        changed();
        return;
      }
      for (const t of [tick, soon]) if (t !== null) clearTimeout(t);
      if (asked !== null) cancelFrame(asked);
      [tick, soon, asked] = [null, null, null];
    },
  };
}

// draw replaces the picture with layout L. Every bar carries its times and
// how it ended as data attributes, so tests read the picture from the DOM.
function draw(svg, title, plot, L) {
  svg.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
  svg.dataset.spanMs = String(L.spanMs); // the time across the picture, for tests
  if (title.textContent !== L.summary) title.textContent = L.summary;
  const nodes = [
    el("text", { x: 0, y: geo.poll.top + 13, class: "tl-lane" }, "polls"),
    el("text", { x: 0, y: geo.emit.top + 9, class: "tl-lane" }, "emits"),
    el("line", { x1: settings.gutter, x2: L.width, y1: geo.axis, y2: geo.axis, class: "tl-grid" }),
  ];
  for (const t of L.ticks) nodes.push(el("line", { x1: t.x, x2: t.x, y1: 14, y2: geo.axis + 3, class: "tl-grid" }));
  for (const m of L.marks) nodes.push(el("line", { x1: m.x, x2: m.x, y1: 2, y2: geo.axis, class: "tl-mark" }));
  for (const g of L.gaps) {
    nodes.push(el("rect", { x: g.x, y: g.y, width: g.w, height: g.h, class: "tl-wait", "data-open": g.open }));
  }
  for (const b of L.bars) nodes.push(bar(b));
  for (const e of L.ends) nodes.push(endMark(e));
  for (const l of L.labels) nodes.push(el("text", { x: l.x, y: l.y, class: l.inside ? "tl-label tl-inside" : "tl-label" }, l.text));
  plot.replaceChildren(...nodes);
  svg.dataset.draws = String(Number(svg.dataset.draws ?? 0) + 1);
}

// bar is one request: a thin line from sent to answered and, for a poll,
// the tall block of the time it stayed parked.
function bar(b) {
  const g = el("g", {
    class: `tl-bar tl-${b.kind}`,
    "data-kind": b.kind,
    "data-tab": b.tab,
    "data-n": b.n,
    "data-self": b.self,
    "data-open": b.open,
    "data-start": b.start,
    "data-end": b.end ?? "",
    "data-parked-ms": Math.round(b.parkedMs),
    "data-outcome": b.outcome,
    "data-after": b.after ?? "",
    "data-events": b.events.join(","),
  });
  if (b.kind !== "poll") {
    g.append(el("rect", { x: b.x, y: b.y, width: b.w, height: b.h, class: "tl-span" }));
    return g;
  }
  g.append(
    el("rect", { x: b.x, y: b.y + b.h / 2 - 2, width: b.w, height: 4, class: "tl-span" }),
    el("rect", { x: b.x, y: b.y, width: b.pw, height: b.h, class: "tl-parked" }),
  );
  return g;
}

// endMark is the shape where a request ended: a dot for messages brought, a
// tick for an empty answer, a cross for a failure. Shapes, not only
// colours, so that every reader can tell them apart.
function endMark(e) {
  const data = { "data-kind": e.kind, "data-n": e.n, "data-tab": e.tab, "data-x": e.x };
  if (e.shape === "arrival") return el("circle", { cx: e.x, cy: e.y, r: 5, class: "tl-end tl-arrival", ...data });
  if (e.shape === "quiet") return el("path", { d: `M${e.x} ${e.y - 10}v20`, class: "tl-end tl-quiet", ...data });
  return el("path", { d: `M${e.x - 4} ${e.y - 4}l8 8m0 -8l-8 8`, class: "tl-end tl-failed", ...data });
}

// patterns defines the hatching of a back-off wait.
function patterns() {
  const p = el("pattern", { id: "tl-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  p.append(el("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "tl-hatch" }));
  const defs = el("defs");
  defs.append(p);
  return defs;
}

// legend names each shape, drawn the same way as in the picture.
function legend() {
  const items = [
    [bar({ kind: "poll", x: 1, y: 1, w: 22, pw: 22, h: 12, events: [], parkedMs: 0 }), "poll, parked (after=N: its cursor)"],
    [endMark({ shape: "arrival", x: 12, y: 7 }), "messages arrived"],
    [endMark({ shape: "quiet", x: 12, y: 7 }), "empty (timeout)"],
    [endMark({ shape: "failed", x: 12, y: 7 }), "failed"],
    [el("rect", { x: 1, y: 1, width: 22, height: 12, class: "tl-wait" }), "back-off wait"],
    [bar({ kind: "emit", x: 1, y: 3, w: 22, h: 8, events: [], parkedMs: 0 }), "emit"],
    [bar({ kind: "connect", x: 1, y: 3, w: 22, h: 8, events: [], parkedMs: 0 }), "connect"],
  ];
  const ul = document.createElement("ul");
  ul.className = "timeline-legend";
  for (const [shape, text] of items) {
    const swatch = el("svg", { width: 24, height: 14, viewBox: "0 0 24 14", "aria-hidden": "true" });
    swatch.append(shape);
    const li = document.createElement("li");
    li.append(swatch, text);
    ul.append(li);
  }
  return ul;
}

// el makes an SVG element with attributes (those given) and, if given, text.
function el(name, attrs = {}, text) {
  const e = document.createElementNS(svgNS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
