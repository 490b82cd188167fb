/**
 * Loaded by mocha before the test files (`require` in .mocharc.json). In mocha a test or
 * hook function that declares a parameter is a done-callback one: it passes only once it
 * calls that parameter, and an async one is an error ("Resolution method is
 * overspecified"). This suite writes async functions without parameters, so a parameter is
 * an accident (a context `t` left from node:test, or a helper passed by reference that
 * takes an argument). Fails the run before any test runs, naming each one.
 */
import type { Context, Runnable, Suite } from "mocha";

/** Mocha keeps a suite's hooks in these arrays (lib/suite.js); it has no public reader. */
type HookLists = Record<"_beforeAll" | "_beforeEach" | "_afterAll" | "_afterEach", Runnable[] | undefined>;

function withParameters(suite: Suite, out: string[]): void {
  const lists = suite as unknown as HookLists;
  const hooks = [lists._beforeAll, lists._beforeEach, lists._afterAll, lists._afterEach];
  if (hooks.some((h) => !Array.isArray(h)))
    throw new Error("mocha-guard: this mocha keeps its hooks elsewhere");
  for (const r of [...suite.tests, ...hooks.flat()] as Runnable[])
    if (r.fn && r.fn.length > 0) out.push(`${r.fullTitle() || r.title} (${r.file ?? "unknown file"})`);
  for (const child of suite.suites) withParameters(child, out);
}

export const mochaHooks = {
  beforeAll(this: Context): void {
    let root = this.test?.parent;
    while (root?.parent) root = root.parent;
    if (!root) throw new Error("mocha-guard: no root suite");
    const out: string[] = [];
    withParameters(root, out);
    if (out.length)
      throw new Error(
        `test or hook functions that take a parameter (mocha reads it as a done callback; ` +
          `write async functions without parameters):\n  ${out.join("\n  ")}`,
      );
  },
};
