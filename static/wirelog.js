// wirelog.js owns the socket's wire events: each request and back-off wait,
// numbered and timed, for the onWire listeners here and in the other tabs.
// docs/browser.md lists every event and its fields.

// wireLog reports for the socket state s (its tab, clock, listeners and
// post to the other tabs).
export function wireLog(s) {
  let n = 0; // numbers this tab's requests and waits
  const tell = (ev) => {
    s.post({ type: "wire", ev });
    s.hooks.call("wire", ev);
  };
  return {
    // begin reports that a request or wait starts, and returns end(more),
    // which reports how it ended.
    begin(kind, fields = {}) {
      const ev = { kind, n: ++n, tab: s.tab, at: s.T.now(), ...fields };
      tell({ ...ev, phase: "start" });
      return (more = {}) => tell({ ...ev, phase: "end", at: s.T.now(), ms: s.T.now() - ev.at, ...more });
    },
    // note reports a moment without a start and an end (role, goodbye).
    note(kind, fields = {}) {
      tell({ kind, tab: s.tab, at: s.T.now(), ...fields });
    },
    // heard passes on an event another tab reported.
    heard(ev) {
      s.hooks.call("wire", ev);
    },
  };
}
