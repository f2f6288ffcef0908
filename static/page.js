// page.js owns the page's comings and goings: it stops the socket when the
// page goes away (closed, reloaded, or into the back/forward cache), says
// goodbye to the server if this is the browser's last tab, and starts the
// socket again when the page comes back. docs/browser.md has the browser lore.

// stayedMs is how long a page that left at beforeunload waits for the unload
// to happen before it comes back (the unload was cancelled).
export const stayedMs = 3000;

// watchPage listens to the page of socket state s; part is this tab's part
// (start, stop, last). It returns back, goneSince and close.
export function watchPage(s, part) {
  const { T, env } = s;
  let away = false; // the page is going away; comeBack() undoes it
  let stayed = null; // the timer that brings back a page whose unload was cancelled
  let goneAt = 0; // when we said goodbye, if we did
  let leftAt = 0; // when we left without a goodbye (other tabs stayed), if we did

  // leave stops this tab's part and, if it is the browser's last tab, says
  // goodbye. It stops first, so that our parked poll is cancelled before the
  // goodbye can have it answered 410.
  const leave = () => {
    if (away) return;
    away = true;
    const id = s.id && part.last() ? s.id : "";
    part.stop();
    if (id) {
      disconnect(s, id);
      goneAt = T.now();
    } else {
      leftAt = T.now();
    }
  };
  const comeBack = () => {
    away = false;
    part.start();
  };
  // Firefox may stop a closing tab's script before pagehide runs, so the
  // goodbye leaves at beforeunload; an unload cancelled after it comes back
  // stayedMs later. Phones often skip beforeunload: pagehide covers them.
  const on = {
    online: () => s.wake("online"), // cut a back-off wait short: try at once
    beforeunload: () => {
      leave();
      T.clearTimeout(stayed);
      stayed = T.setTimeout(() => away && comeBack(), stayedMs);
    },
    pagehide: () => {
      T.clearTimeout(stayed);
      leave();
    },
    pageshow: (e) => e.persisted && comeBack(),
  };
  for (const [type, fn] of Object.entries(on)) env.window?.addEventListener(type, fn);

  return {
    // back is called once a tab that left without a goodbye is part of the
    // tabs again, with whether it is behind them: what they heard meanwhile
    // was kept for nobody, so it says that may be missing. It returns
    // whether it said so.
    back(behind) {
      const since = leftAt;
      leftAt = 0;
      if (!since || !behind) return false;
      s.missedHere(since);
      return true;
    },
    // goneSince says when this tab last said goodbye (0: it did not), once.
    goneSince() {
      const at = goneAt;
      goneAt = 0;
      return at;
    },
    close() {
      for (const [type, fn] of Object.entries(on)) env.window?.removeEventListener(type, fn);
      T.clearTimeout(stayed);
    },
  };
}

// disconnect says goodbye to the server for id: the others see the online
// count drop now instead of after the server's client timeout. sendBeacon is
// made for this: the browser delivers it even while the page unloads.
function disconnect(s, id) {
  s.env.sendBeacon?.(`${s.base}/disconnect?id=${id}`);
  s.wire.note("goodbye", { id });
  s.setId("");
}
