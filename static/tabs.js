// tabs.js lets the tabs of one browser share one client: one id, one cursor
// and one parked poll, however many tabs are open. A browser opens at most 6
// HTTP/1.1 connections to a host and each parked poll holds one, so with a
// poll per tab a 7th request would queue until a poll's timeout. One tab,
// the leader (elected with a Web Lock), polls and posts what it hears to the
// others over a BroadcastChannel. docs/browser.md tells the whole story.
import { safely } from "./listeners.js";

// takePart runs this tab's part of socket state s: lead(mine) runs the poll
// loop when this tab leads (or polls alone), and back(behind) is the page's
// "this tab is part of the tabs again". It returns start, stop, last (no
// other tab is left) and inOrder (null without tabs).
export function takePart(s, { lead, back }) {
  let tabs = null; // the shared piece, or null when every tab polls alone
  s.post = (msg) => tabs && safely((m) => tabs.post(m), msg);
  const setRole = (role) => {
    s.role = role;
    s.wire.note("role", { role });
  };
  const hear = (msg) => follow(s, msg, back);
  return {
    // start begins (or, back from the back/forward cache, resumes) this
    // tab's part: leader or follower with tabs, or polling alone without.
    start() {
      const mine = ++s.run;
      s.tab = Math.random().toString(36).slice(2, 10);
      s.role = "follower"; // until the lock says otherwise, which may be at once
      const { name, env } = s;
      const onLead = () => (setRole("leader"), lead(mine));
      tabs = joinTabs({ name, tab: s.tab, locks: env.locks, BroadcastChannel: env.BroadcastChannel, onLead, onMessage: hear });
      if (!tabs) {
        s.tab = "solo";
        setRole("alone");
        lead(mine);
        return;
      }
      if (s.role === "follower") setRole("follower");
      if (!s.status) s.setStatus("connecting");
    },
    // stop ends this tab's part: the loop, its requests, its wait, its tabs.
    stop() {
      s.run++;
      s.abort("stopped");
      tabs?.close();
      tabs = null;
    },
    last: () => !tabs || tabs.last(),
    inOrder: (fn) => (tabs ? tabs.inOrder(fn) : null),
  };
}

// follow takes what the other tabs post. Only the leader answers a greeting;
// the others follow the leader's id, cursor, messages and status.
function follow(s, msg, back) {
  if (msg.type === "wire" || msg.type === "bye") {
    // A tab that leaves ends its requests with it: the panel closes their lines.
    s.wire.heard(msg.type === "wire" ? msg.ev : { kind: "left", tab: msg.tab, at: s.T.now() });
    return;
  }
  if (s.role === "leader") {
    if (msg.type === "hello") s.share({ type: "state", ...s.state() });
    return;
  }
  if (msg.id !== undefined && msg.id !== s.id) s.setId(msg.id);
  if (msg.type === "state") {
    const returning = back(msg.after > s.after);
    s.after = Math.max(s.after, msg.after);
    s.pollTimeoutMs = msg.pollTimeoutMs;
    if (msg.online !== null && (s.online === null || returning)) s.deliver("online", msg.online);
    if (msg.status) s.setStatus(msg.status);
  } else if (msg.type === "msg" && msg.seq > s.after) {
    s.after = msg.seq;
    s.deliver(msg.event, msg.data);
  } else if (msg.type === "status") {
    s.setStatus(msg.status);
  } else if (msg.type === "missed") {
    s.missedHere(msg.lostAt);
  }
}

// joinTabs returns null when the browser lacks Web Locks or BroadcastChannel
// (Web Locks need a secure context: https, or http on localhost). Otherwise
// it joins this tab (named tab in the posts) and starts the election:
// onLead() runs when this tab becomes the leader, and onMessage(msg)
// receives what the other tabs post. close() says bye and gives up the lock
// (or our place in its queue), so a page in the back/forward cache never
// stays the leader.
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
