// e2e.test.js runs every scenario of scenarios.js once in each browser that
// E2E_BROWSERS selects (default: chromium,firefox), one after another: the
// stories time things in milliseconds, so they do not share the CPU.
//
//   npm test                                  # both browsers
//   E2E_BROWSERS=firefox npm test             # one
//   npm test -- --test-name-pattern="eight"   # one story
//
// A browser that is not installed skips its stories, unless E2E_REQUIRE=1
// (as in CI) makes that a failure. E2E_RACE=1 builds the server with -race.

import { describe, test } from "node:test";
import { findBrowser, missingBrowser, Run, selectedBrowsers } from "./harness.js";
import { scenarios } from "./scenarios.js";

const require = process.env.E2E_REQUIRE === "1";

for (const browser of selectedBrowsers()) {
  const missing = findBrowser(browser) ? "" : missingBrowser(browser);
  describe(browser, { skip: missing && !require ? missing : false }, () => {
    for (const s of scenarios) {
      if (s.browsers && !s.browsers.includes(browser)) continue;
      // A story known to fail in one browser still runs there, and its
      // result is printed, but as a TODO that does not fail the run.
      const todo = s.todo ?? s.knownToFail?.[browser];
      test(s.name, { timeout: s.timeout ?? 30_000, todo }, async (t) => {
        if (s.todo) return;
        if (missing) throw new Error(`${missing} (E2E_REQUIRE=1 makes this a failure)`);
        const r = new Run(t, browser);
        try {
          await s.run(r);
          r.checkConsoles();
        } catch (err) {
          // Add what the servers and tabs said to the message, and to the
          // stack, which is what the reporter prints.
          const at = err.stack?.indexOf("\n    at ") ?? -1;
          err.message += `\n${await r.diagnostics()}`;
          err.stack = `${err.name}: ${err.message}${at >= 0 ? err.stack.slice(at) : ""}`;
          throw err;
        } finally {
          await r.close();
        }
      });
    }
  });
}
