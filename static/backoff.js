// backoff.js owns the back-off rules: how long the poll loop waits after
// each way a wait can end. The load tool follows the same rules in Go
// (loadtest/backoff.go); testdata/backoff-cases.json holds both to them.

export const rules = Object.freeze({
  backoffMs: 500, // the first back-off after a failure; it doubles per failure
  maxBackoffMs: 10000, // and never grows past this
  firstReconnectMs: 1000, // the first reconnect after a 410 waits [0, this)
  proxyCutMs: 1000, // a 502/504 after a poll parked this long is a proxy's cut
  hangGraceMs: 10000, // abort a request this long past the server's poll timeout
  pollTimeoutMs: 25000, // assumed when /connect does not say
});

// backoff(n) is the back-off ceiling after n failures in a row.
export function backoff(n) {
  return Math.min(rules.maxBackoffMs, rules.backoffMs * 2 ** (n - 1));
}

// retryWait is the wait in ms after a poll's exit, with failures already
// counting it; random is uniform in [0, 1) and spreads each wait over its
// range, so a thousand tabs that lost one server do not return in one instant.
export function retryWait(exit, failures, retryAfter, random) {
  const between = (lo, hi) => lo + random * (hi - lo);
  switch (exit) {
    case "answer": // ask again at once: that keeps a poll parked
    case "cut":
      return 0;
    case "gone": // the first reconnect spreads over [0, 1 s); later ones back off
      if (failures === 1) return between(0, rules.firstReconnectMs);
      break;
    case "busy": {
      const r = seconds(retryAfter); // [R, 2R) seconds, as the server asked
      if (r !== null) return between(r * 1000, r * 2000);
    }
  }
  const ceiling = backoff(failures); // "equal jitter": [ceiling/2, ceiling)
  return between(ceiling / 2, ceiling);
}

// pollExit names how a poll's wait ended, from ask's answer r and whether a
// 200's body has the contract's shape. error is "network", "hung" or "stopped".
export function pollExit({ error, status, ms }, wellFormed) {
  if (error) return error;
  if (status === 200) return wellFormed ? "answer" : "malformed"; // a broken proxy's page resets nothing
  if (status === 410 || status === 400) return "gone";
  if (status === 503) return "busy";
  if ((status === 502 || status === 504) && ms >= rules.proxyCutMs) return "cut";
  return "http";
}

// connectExit names how a /connect ended: connected, busy (503, or 429 when
// this address holds its share: both say when to come back), or connect failed.
export function connectExit({ error, status }, hasId) {
  if (error) return "connect failed";
  if (status === 200 && hasId) return "connected";
  if (status === 503 || status === 429) return "busy";
  return "connect failed";
}

// seconds reads a Retry-After in seconds; the HTTP-date form, which this
// server never sends, counts as missing.
export function seconds(header) {
  return header != null && /^\d+$/.test(header.trim()) ? Number(header) : null;
}
