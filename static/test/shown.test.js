// shown.test.js checks the rule for what of a stranger's message the chat
// page shows (shown.js): only strings, cut to the form's lengths; nothing
// anyone can send makes it throw.
// Run: node --test static/
import { test } from "node:test";
import assert from "node:assert/strict";
import { chatLine, countText, cut, limits } from "../shown.js";

const deep = JSON.parse("[".repeat(10000) + "0" + "]".repeat(10000));
const big = "x".repeat(60 * 1024);

test("a chat's fields are shown only if they are strings", () => {
  const tests = [
    { name: "plain", give: { name: "Ada", text: "hi" }, want: { name: "Ada", text: "hi" } },
    { name: "name with toString", give: { name: { toString: 1 }, text: "hi" }, want: { name: "?", text: "hi" } },
    { name: "name an array", give: { name: ["Ada"], text: "hi" }, want: { name: "?", text: "hi" } },
    { name: "name null", give: { name: null, text: "hi" }, want: { name: "?", text: "hi" } },
    { name: "name a number", give: { name: 7, text: "hi" }, want: { name: "?", text: "hi" } },
    { name: "name left out", give: { text: "hi" }, want: { name: "?", text: "hi" } },
    { name: "name 10,000 deep", give: { name: deep, text: "hi" }, want: { name: "?", text: "hi" } },
    { name: "bidi controls stay, as text", give: { name: "\u202Eevil", text: "\u2067x\u202E" }, want: { name: "\u202Eevil", text: "\u2067x\u202E" } },
    { name: "60 KB name and text are cut", give: { name: big, text: big }, want: { name: "x".repeat(40) + "…", text: "x".repeat(2000) + "…" } },
    { name: "text with toString", give: { name: "Ada", text: { toString: 1 } }, want: null },
    { name: "text an array", give: { name: "Ada", text: ["hi"] }, want: null },
    { name: "text null", give: { name: "Ada", text: null }, want: null },
    { name: "text a number", give: { name: "Ada", text: 5 }, want: null },
    { name: "text left out", give: { name: "Ada" }, want: null },
    { name: "data a string", give: "hi", want: null },
    { name: "data a number", give: 42, want: null },
    { name: "data null", give: null, want: null },
    { name: "data left out", give: undefined, want: null },
    { name: "data an array", give: ["Ada", "hi"], want: null },
    { name: "data 10,000 deep", give: deep, want: null },
    { name: "data with toString and valueOf", give: { toString: 1, valueOf: 1 }, want: null },
    { name: "data without a prototype", give: Object.assign(Object.create(null), { name: "Ada", text: "hi" }), want: { name: "Ada", text: "hi" } },
  ];
  for (const tt of tests) assert.deepEqual(chatLine(tt.give), tt.want, tt.name);
});

test("the online count is shown only if it is a whole number", () => {
  const tests = [
    [3, "3"],
    [0, "0"],
    [-1, "?"],
    [1.5, "?"],
    [NaN, "?"],
    ["3", "?"],
    [big, "?"],
    [{ toString: 1 }, "?"],
    [null, "?"],
    [undefined, "?"],
    [deep, "?"],
    [2 ** 60, "?"],
  ];
  for (const [give, want] of tests) assert.equal(countText(give), want, `countText(${typeof give})`);
});

test("cut never splits a surrogate pair", () => {
  assert.equal(cut("abc", 3), "abc");
  assert.equal(cut("abcd", 3), "abc…");
  assert.equal(cut("ab\u{1F600}", 3), "ab…", "the emoji's high half is not left alone");
  assert.equal(cut("a\u{1F600}b", 3), "a\u{1F600}…");
  assert.equal(limits.name, 40);
});
