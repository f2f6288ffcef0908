// listeners.js owns the page's handlers: named lists of functions, and the
// one guarded call that hands each of them something.

// listeners returns a registry: add(name, fn) keeps fn under name, and
// call(name, arg) hands arg to each fn kept under it, in the order added.
export function listeners() {
  const lists = new Map(); // name -> functions
  return {
    add(name, fn) {
      if (!lists.has(name)) lists.set(name, []);
      lists.get(name).push(fn);
    },
    call(name, arg) {
      for (const fn of lists.get(name) ?? []) safely(fn, arg);
    },
  };
}

// safely runs fn(arg): a hand-out that throws must not stop the poll loop or
// the other handlers, but its bug must not vanish either: reportError shows
// it like any uncaught error.
export function safely(fn, arg) {
  try {
    fn(arg);
  } catch (err) {
    (globalThis.reportError ?? console.error)(err);
  }
}
