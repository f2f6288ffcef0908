// backoff.test.js checks backoff.js against the back-off cases the load
// tool's Go rules are checked against too (testdata/backoff-cases.json).
// Run: node --test static/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { backoff, retryWait, pollExit, connectExit } from "../backoff.js";

const cases = JSON.parse(readFileSync(new URL("../../testdata/backoff-cases.json", import.meta.url), "utf8"));

test("backoff(n): the shared cases", () => {
  for (const c of cases.backoff) assert.equal(backoff(c.failures), c.ms, `backoff(${c.failures})`);
});

test("retryWait: the shared cases", () => {
  assert.ok(cases.waits.length > 0);
  for (const c of cases.waits) {
    for (const [random, want] of c.at) {
      const got = retryWait(c.exit, c.failures, c.retryAfter, random);
      assert.ok(Math.abs(got - want) < 1e-9, `${c.name}, random ${random}: waits ${got}, want ${want}`);
    }
  }
});

test("pollExit: the shared cases", () => {
  assert.ok(cases.exits.length > 0);
  for (const c of cases.exits) {
    const got = pollExit({ error: c.error ?? undefined, status: c.status, ms: c.parkedMs }, c.wellFormed);
    assert.equal(got, c.exit, c.name);
  }
});

test("connectExit: the shared cases", () => {
  assert.ok(cases.connects.length > 0);
  for (const c of cases.connects) {
    assert.equal(connectExit({ error: c.error ?? undefined, status: c.status }, c.hasId), c.exit, c.name);
  }
});
