// emit.js owns the page's emits: one at a time per browser, in the order
// emit() was called, each under the id of the moment.
import { errorText } from "./session.js";

// failed words ask's errors for an emit's rejection, which the page shows.
const failed = { network: "network error", hung: "no answer from the server", stopped: "the page is closing" };

// emitter returns emit(event, data) for socket state s; inOrder(fn) is the
// tabs' browser-wide order, or null when this tab is alone.
export function emitter(s, inOrder) {
  let chain = Promise.resolve(); // orders emits when there are no tabs
  const inTurn = (fn) => {
    const shared = inOrder(fn);
    if (shared) return shared;
    const p = chain.then(fn);
    chain = p.catch(() => {});
    return p;
  };
  // Data JSON cannot hold (a cycle, a BigInt, an array 10,000 deep) rejects
  // the emit's promise, like every other failure, instead of throwing.
  return (event, data) => {
    let body;
    try {
      body = JSON.stringify({ event, data });
    } catch (err) {
      return Promise.reject(err);
    }
    return inTurn(() => emitOnce(s, event, body));
  };
}

// emitOnce posts one emit, waiting for an id if there is none yet.
async function emitOnce(s, event, body) {
  for (let tries = 0; ; tries++) {
    const used = s.id || (await new Promise((resolve) => s.idWaiters.push(resolve)));
    const end = s.wire.begin("emit", { event, id: used });
    const r = await s.ask(`/emit?id=${used}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    end({ outcome: r.error ?? (r.status === 204 ? "ok" : "http"), status: r.status, why: errorText(r.text) });
    if (r.status === 204) return;
    // The leader may have replaced the id while we sent: try the new one once.
    if (r.status === 410 && s.id && s.id !== used && tries === 0) continue;
    throw new Error(failed[r.error] ?? (errorText(r.text) || "HTTP " + r.status));
  }
}
