// tabs.js lets the tabs of one browser share one client: one id, one cursor
// and one parked poll, whatever the number of tabs.
//
// Why: over HTTP/1.1 a browser opens at most 6 connections to one host, and
// a parked poll holds one of them for up to the server's poll timeout. With
// one poll per tab, 6 tabs hold all 6: every other request of the page (an
// emit, a 7th tab's /connect, even its script) queues behind a parked poll
// until the server's timeout frees a connection, 25 s later. Over HTTP/2 all
// requests to a host share one connection as streams (100 or more at once),
// so the limit moves far away; but browsers speak HTTP/2 only over TLS, and
// every tab would still cost the server its own mailbox and parked poll.
//
// How: the tabs elect a leader with a Web Lock. Each tab asks for the lock
// "longpoll-leader"; the browser grants it to one tab and queues the others.
// The leader alone polls, and hands every message (with its seq), the id and
// the cursor to the other tabs over a BroadcastChannel. When the leader's tab
// closes, the browser releases its lock and grants it to the next tab in the
// queue, which polls on with the same id from the cursor it last heard. The
// server keeps each message until a later poll acknowledges it, so nothing
// that was in flight is lost, and every tab skips seqs it already has, so
// nothing shows twice. A lock, unlike a flag in localStorage, cannot be left
// held by a tab that crashed: the browser frees it with the tab.
//
// The tabs also keep count of each other, so that a closing tab knows at
// once, without asking anything asynchronous, whether it is the browser's
// last tab and must say goodbye to the server: each tab holds a lock named
// after itself while it lives and greets the others on the channel; they
// queue for that lock, and the browser grants it to them when the tab ends.
//
// The leader may sit in a background tab. That is fine: an answer's arrival
// is not throttled like timers are, and Chromium's Energy Saver does not
// freeze a tab that holds a Web Lock others wait for (a frozen leader would
// stall every tab; a discarded one frees its locks, and another tab leads).
//
// Both APIs exist in current Chromium and Firefox (ESR included). Web Locks
// are offered only in secure contexts (https, or http on localhost and
// 127.0.0.1), so a page served over plain http on a LAN address gets null
// here and falls back to one poll per tab. Firefox keeps private windows
// apart from normal ones: each side has its own leader, as two browsers.
//
// joinTabs returns null when the browser lacks either API. Otherwise it
// joins this tab (tab is its name in the posts) and
// starts the election: onLead() runs when this tab becomes the leader, and
// onMessage(msg) receives what the other tabs post. close() says bye and
// gives up the lock (or our place in its queue); a page going into the
// back/forward cache does that too, so a cached tab never stays the leader.
export function joinTabs({ name, tab, locks, BroadcastChannel: Channel, onLead, onMessage }) {
  if (typeof locks?.request !== "function" || typeof Channel !== "function") return null;

  const peers = new Set(); // the other live tabs of this browser
  const channel = new Channel(name);
  const life = new AbortController(); // aborts our places in lock queues on close
  let resign = () => {}; // releases the leader lock, once we hold it
  let vanish = () => {}; // releases this tab's own lock
  const hold = (lock, fn) => locks.request(lock, { signal: life.signal }, fn).catch(() => {}); // only close() rejects

  // gone forgets a tab, once, however we learn that it went.
  const gone = (other) => {
    if (peers.delete(other)) onMessage({ type: "bye", tab: other });
  };
  // watch adds a tab to the peers and queues for the lock that tab holds
  // while it lives: the browser grants it to us when the tab is gone, closed
  // or crashed. A "bye" posted while a tab closes is quicker where it arrives
  // (Chromium), but Firefox does not deliver it, and a crash sends none.
  const watch = (other) => {
    if (peers.has(other)) return;
    peers.add(other);
    hold(`${name}-tab-${other}`, () => gone(other));
  };

  channel.onmessage = ({ data: msg }) => {
    if (msg.type === "hello") {
      watch(msg.tab);
      channel.postMessage({ type: "here", tab, to: msg.tab });
    } else if (msg.type === "here" && msg.to === tab) {
      watch(msg.tab);
    } else if (msg.type === "bye") {
      gone(msg.tab);
      return;
    }
    onMessage(msg);
  };
  // Greet the others only once we hold our own lock, so that whoever
  // queues for it after hearing us is queued behind us.
  hold(`${name}-tab-${tab}`, () => {
    channel.postMessage({ type: "hello", tab });
    return new Promise((resolve) => (vanish = resolve));
  });

  // The lock is held for as long as the callback's promise is pending: until
  // close(), or until the browser ends the tab.
  hold(`${name}-leader`, () => {
    onLead();
    return new Promise((resolve) => (resign = resolve));
  });

  return {
    post: (msg) => channel.postMessage({ ...msg, tab }),
    // last tells pagehide, synchronously, whether no other tab is left.
    last: () => peers.size === 0,
    // inOrder runs fn once every earlier inOrder call of every tab has
    // settled: the browser grants a lock's waiters first come, first served.
    inOrder: (fn) => locks.request(`${name}-emit`, fn),
    close() {
      channel.postMessage({ type: "bye", tab });
      life.abort();
      resign();
      vanish();
      channel.close();
    },
  };
}
