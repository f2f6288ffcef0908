// client.js owns the browser's side of the long-poll protocol: it keeps one
// poll request open at all times, hands each message to the page's handlers,
// and recovers by itself when the server goes away. The page never calls
// fetch; it only uses connect(), on(), emit() and the status callbacks.
//
// The loop is the whole trick of long-polling: ask, wait for the answer (the
// server holds it until it has something, or until its timeout), ask again at
// once. So there is nearly always a request parked on the server, ready to
// carry the next message the moment it exists.

const minDelay = 500; // first back-off after a failure, in ms
const maxDelay = 10000; // back-off never grows past this

// connect starts talking to the server at base (the page's own origin by
// default) and returns a socket: a small object in the style of socket.io.
export function connect(base = "") {
  const handlers = new Map(); // event name -> list of functions
  const statusHandlers = []; // called with "connecting", "connected" or "reconnecting"
  const missedHandlers = []; // called when messages may have been lost
  let id = ""; // our client id; empty until /connect answers
  let after = 0; // highest seq we have handled; the next poll acknowledges it
  let status = "";
  let ready = null; // a promise for the current id, shared by emit()

  // setStatus tells the status handlers, only when the state really changes.
  function setStatus(s) {
    if (s === status) return;
    status = s;
    for (const fn of statusHandlers) fn(s);
  }

  // dispatch hands one message to everyone who listens for its event. A
  // handler that throws must not stop the loop or the other handlers, but
  // its bug must not vanish either: reportError shows it like any uncaught
  // error.
  function dispatch(msg) {
    for (const fn of handlers.get(msg.event) ?? []) {
      try {
        fn(msg.data);
      } catch (err) {
        reportError(err);
      }
    }
  }

  // open asks for a fresh client id. A fresh id starts a fresh mailbox, so
  // the cursor starts again at 0.
  async function open() {
    const res = await fetch(base + "/connect", { method: "POST" });
    if (!res.ok) throw new Error("connect: HTTP " + res.status);
    const body = await res.json();
    id = body.id;
    after = 0;
  }

  // run is the poll loop. It never ends while the page is open.
  async function run() {
    let failures = 0; // failures in a row, for the back-off
    let lost = false; // true after a 410: tell the page once we are back
    setStatus("connecting");
    for (;;) {
      try {
        if (!id) {
          ready = open();
          await ready;
          if (lost) {
            lost = false;
            for (const fn of missedHandlers) fn();
          }
        }
        const res = await fetch(`${base}/poll?id=${id}&after=${after}`);
        if (res.status === 410) {
          // The server forgot us (it restarted, or we were silent too long,
          // or our mailbox overflowed). Whatever was sent meanwhile is gone,
          // so start over and say so; never lose messages silently.
          id = "";
          lost = true;
          continue;
        }
        if (!res.ok) throw new Error("poll: HTTP " + res.status);
        const body = await res.json();
        // Only an answer proves the server knows us, so this is the moment
        // to say "connected" (a parked poll is silent until it answers).
        failures = 0;
        setStatus("connected");
        for (const msg of body.messages) {
          // A batch that was lost on the way is sent again, so skip what we
          // already have: the cursor makes redelivery harmless.
          if (msg.seq <= after) continue;
          after = msg.seq;
          dispatch(msg);
        }
        // No delay here: polling again at once keeps a request parked on
        // the server, which is what makes the push feel instant.
      } catch (err) {
        // A network error or a 5xx: the server is down or restarting. Wait
        // longer after each failure so a dead server is not hammered, with
        // jitter so that many tabs do not all come back in the same instant.
        // Not a console error: this is an expected, handled condition.
        setStatus("reconnecting");
        const delay = Math.min(maxDelay, minDelay * 2 ** failures);
        failures++;
        await sleep(delay / 2 + (Math.random() * delay) / 2);
      }
    }
  }

  // Say goodbye when the page goes away, so the others see the online count
  // drop now instead of after the server's client timeout. sendBeacon is made
  // for this: the browser delivers it even while the page is being unloaded.
  addEventListener("pagehide", () => {
    if (id) navigator.sendBeacon(`${base}/disconnect?id=${id}`);
  });

  run();

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

    // onMissed registers fn() for "we were gone; messages may be missing".
    onMissed(fn) {
      missedHandlers.push(fn);
    },

    // emit sends an event to everyone, ourselves included: our own message
    // comes back through the poll like anyone else's, so every tab shows the
    // same order. It resolves when the server has it and rejects otherwise.
    async emit(event, data) {
      if (!id) await ready;
      const res = await fetch(`${base}/emit?id=${id}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ event, data }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new Error(body.error ?? "HTTP " + res.status);
      }
    },
  };
}

// sleep resolves after ms milliseconds: await sleep(500) pauses a loop
// without blocking the page.
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
