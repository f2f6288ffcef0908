// socket.js owns what the page sees of a connection: the socket object that
// connect() returns, in the style of socket.io.
import { emitter } from "./emit.js";

// socketApi wraps socket state s, this tab's part (tabs.js) and its page
// (page.js) in the object the page uses.
export function socketApi(s, part, page) {
  const emit = emitter(s, part.inOrder);
  return {
    // on registers fn for a server event, such as "chat" or "online".
    on: (event, fn) => s.handlers.add(event, fn),

    // onStatus registers fn(status) for changes of the connection state:
    // "connecting", "connected" or "reconnecting".
    onStatus(fn) {
      s.hooks.add("status", fn);
      if (s.status) fn(s.status);
    },

    // onMissed registers fn(lostAt) for "we were gone since lostAt (a Date);
    // messages sent meanwhile may be missing". It fires once per loss.
    onMissed: (fn) => s.hooks.add("missed", fn),

    // onWire registers fn(event) for every request and wait of this browser,
    // as it starts and as it ends: what the wire panel shows. The events are
    // listed in docs/browser.md.
    onWire(fn) {
      s.hooks.add("wire", fn);
      fn({ kind: "role", role: s.role, tab: s.tab, at: s.T.now() });
    },

    // emit sends an event to everyone, ourselves included: our own message
    // comes back through the poll like anyone else's, so every tab shows the
    // same order. Emits leave one at a time, in call order, and their
    // promises settle in that order: resolved once the server has the
    // message, rejected with the reason otherwise.
    emit,

    // close stops polling and leaves the other tabs (tests use it; a page
    // just goes away).
    close() {
      page.close();
      part.stop();
    },

    get tab() {
      return s.tab;
    },
    get role() {
      return s.role;
    },
  };
}
