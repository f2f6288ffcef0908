// client.js is the browser's side of the long-poll protocol: it keeps one
// poll request open at all times, hands each message to the page, and
// recovers by itself when the server goes away. The page only uses
// connect(), on(), emit() and the status callbacks (socket.js).
//
// The loop is the whole trick: ask, wait for the answer (the server holds it
// until it has something, or until its timeout), hand out what came, ask
// again at once. So a request is nearly always parked on the server, ready
// to carry the next message the moment it exists.
//
// Read later: the back-off rules (backoff.js), the state the pieces share
// (session.js), tab sharing (tabs.js), the page's comings and goings
// (page.js), emits (emit.js), wire events (wirelog.js).
import { rules, retryWait, pollExit, connectExit, seconds } from "./backoff.js";
import { openSession, parse, errorText } from "./session.js";
import { takePart } from "./tabs.js";
import { watchPage } from "./page.js";
import { socketApi } from "./socket.js";

// connect starts talking to the server at base (the page's own origin by
// default) and returns a socket in the style of socket.io. options replaces
// the browser's APIs, for tests (session.js says which).
export function connect(base = "", options = {}) {
  const s = openSession(base, options, rules);
  let page = null;
  const part = takePart(s, {
    // A tab that leads after being away first says what it may have missed.
    lead: (mine) => (page.back(true), pollLoop(s, mine, page.goneSince())),
    back: (behind) => page.back(behind),
  });
  page = watchPage(s, part);
  part.start();
  return socketApi(s, part, page);
}

// pollLoop asks, waits, hands out and asks again, while this tab's part
// lasts (mine === s.run). Each way a wait can end is one case of its switch,
// with its back-off. goneAt is when the page said goodbye, if it did.
async function pollLoop(s, mine, goneAt = 0) {
  let failures = 0; // failures in a row; only a well-formed answer resets it
  let lostAt = goneAt; // time of the first failure in this run of failures
  let lostId = goneAt > 0; // the server forgot our id: say so once a new one is here
  let told = false; // onMissed already fired for this run of failures
  const fail = () => {
    if (failures++ === 0) lostAt = s.T.now();
    s.setStatus("reconnecting");
  };
  const backOff = (exit, reason = exit, retryAfter = null) =>
    pause(s, retryWait(exit, failures, retryAfter, s.env.random()), reason, failures);

  if (!s.status) s.setStatus("connecting");
  while (mine === s.run) {
    if (!s.id) {
      const got = await connectOnce(s);
      if (mine !== s.run) return;
      if (got.exit !== "connected") { // a 503 or 429 says when to come back; else back off
        fail();
        await backOff(got.exit, got.exit === "busy" ? "retry-after" : got.exit, got.retryAfter);
        continue;
      }
      if (lostId && !told) {
        s.missed(lostAt);
        told = true;
      }
      lostId = false;
    }

    const end = await pollOnce(s);
    if (mine !== s.run) return;
    switch (end.exit) {
      case "answer": // a well-formed 200: messages, or none (the server's timeout)
        [failures, lostId, told] = [0, false, false];
        s.setStatus("connected");
        handOut(s, end.messages);
        break; // and ask again at once: that is what keeps a poll parked
      case "cut": // a proxy timed out our parked poll: ask again at once, quietly
        break;
      case "gone": // 410, or 400: the server forgot our id or our cursor
        s.setId("");
        lostId = true;
        fail();
        await backOff("gone", "reconnect");
        break;
      case "busy": // 503: the server is full or shutting down, and says when to come back
        fail();
        await backOff("busy", "retry-after", end.retryAfter);
        break;
      default: // network error, a hung poll aborted, another error, a malformed 200
        fail();
        await backOff(end.exit);
    }
  }
}

// connectOnce asks for a fresh client id, and learns the server's poll timeout.
// It says how the connect ended (backoff.js's connectExit) and any Retry-After.
async function connectOnce(s) {
  const end = s.wire.begin("connect");
  const r = await s.ask("/connect", { method: "POST" });
  const body = r.status === 200 ? parse(r.text) : undefined;
  const exit = connectExit(r, typeof body?.id === "string" && body.id !== "");
  if (exit !== "connected") {
    const retryAfter = exit === "busy" ? r.headers.get("Retry-After") : null;
    end({ outcome: r.error ?? "http", status: r.status, ...(exit === "busy" ? { retryAfter: seconds(retryAfter) } : {}) });
    return { exit, retryAfter };
  }
  // A server from before pollTimeoutMs does not say it: assume the default.
  const said = Number.isFinite(body.pollTimeoutMs) && body.pollTimeoutMs > 0;
  s.pollTimeoutMs = said ? body.pollTimeoutMs : rules.pollTimeoutMs;
  s.setId(body.id);
  end({ outcome: "ok", status: 200, id: body.id, pollTimeoutMs: s.pollTimeoutMs, said });
  return { exit };
}

// pollOnce asks for everything after our cursor and says how the wait
// ended: its exit (backoff.js's pollExit), messages and Retry-After.
async function pollOnce(s) {
  const end = s.wire.begin("poll", { after: s.after, id: s.id });
  const r = await s.ask(`/poll?id=${s.id}&after=${s.after}`);
  const body = r.status === 200 ? parse(r.text) : undefined;
  const exit = pollExit(r, wellFormed(body));
  const messages = exit === "answer" ? body.messages : [];
  const retryAfter = exit === "busy" ? r.headers.get("Retry-After") : null;
  end({
    outcome: exit === "answer" && !messages.length ? "empty" : exit,
    status: r.status,
    parkedMs: r.ms,
    seqs: messages.map((m) => m.seq),
    events: messages.map((m) => m.event),
    ...(exit === "gone" || exit === "http" ? { why: errorText(r.text) } : {}),
    ...(exit === "busy" ? { retryAfter: seconds(retryAfter) } : {}),
  });
  return { exit, messages, retryAfter };
}

// handOut moves the cursor past each new message and hands it to the other
// tabs and this tab's handlers; neither can stop the loop by throwing. A
// batch sent again (its answer was lost on the way) is skipped by seq.
function handOut(s, messages) {
  for (const { seq, event, data } of messages) {
    if (seq <= s.after) continue;
    s.after = seq;
    s.share({ type: "msg", id: s.id, seq, event, data });
    s.deliver(event, data);
  }
}

// pause waits ms, or less: the browser coming back online, or the socket
// stopping, ends the wait at once.
function pause(s, ms, reason, failures) {
  const end = s.wire.begin("wait", { waitMs: Math.round(ms), reason, failures });
  return new Promise((resolve) => {
    const wake = (cut) => {
      s.T.clearTimeout(timer);
      s.wakers.delete(wake);
      end({ cut });
      resolve();
    };
    const timer = s.T.setTimeout(() => wake(""), ms);
    s.wakers.add(wake);
  });
}

// wellFormed says whether a poll's 200 has the contract's shape.
function wellFormed(body) {
  return Array.isArray(body?.messages) && body.messages.every((m) => Number.isInteger(m?.seq) && typeof m.event === "string");
}
