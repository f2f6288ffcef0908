// shown.js owns the rule for what of a stranger's message the chat page
// shows. Anyone can send any JSON, so a field is shown only if it is a
// string, cut to the length the page's own form allows; anything else is
// never turned into text (String() of {"toString":1} throws, and of an array
// 10,000 deep runs out of stack). No DOM here, so node --test checks it.

// Lengths the page's own form allows (index.html's maxlength): a longer
// field is cut there, with "…", so one message cannot fill the screen.
export const limits = { name: 40, text: 2000 };

// chatLine returns {name, text} to show for a chat's data, or null to skip
// it: data must be an object whose text is a string. A name that is not a
// string shows as "?".
export function chatLine(data) {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return null;
  if (typeof data.text !== "string") return null;
  const name = typeof data.name === "string" ? cut(data.name, limits.name) : "?";
  return { name, text: cut(data.text, limits.text) };
}

// countText returns the online count to show: a whole number as digits,
// anything else as "?".
export function countText(n) {
  return Number.isSafeInteger(n) && n >= 0 ? String(n) : "?";
}

// cut shortens s to at most max UTF-16 units plus "…", never splitting a
// surrogate pair (half an emoji would show as a replacement character).
export function cut(s, max) {
  if (s.length <= max) return s;
  const end = /[\uD800-\uDBFF]/.test(s[max - 1]) ? max - 1 : max;
  return s.slice(0, end) + "…";
}
