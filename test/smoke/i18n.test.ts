import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/node-red";

describe("smoke/i18n", () => {
  /**
   * Every message key the editor (data-i18n, this._) and the runtime (RED._) ask for exists
   * in the English catalogue: a missing key shows its raw name to the person at the editor.
   */
  const NODES = join(PROJECT_ROOT, "nodes");
  const LOCALES = join(NODES, "locales", "en-US");

  /** A message, or (for a key ending in "." that code completes at run time) a group of them. */
  function has(catalogue: Record<string, unknown>, key: string): boolean {
    const group = key.endsWith(".");
    let at: unknown = catalogue;
    for (const part of (group ? key.slice(0, -1) : key).split(".")) {
      if (typeof at !== "object" || at === null || !(part in at)) return false;
      at = (at as Record<string, unknown>)[part];
    }
    return group ? typeof at === "object" && at !== null : typeof at === "string";
  }

  const catalogue: Record<string, unknown> = {};
  for (const f of readdirSync(LOCALES).filter((n) => n.endsWith(".json")))
    Object.assign(catalogue, JSON.parse(readFileSync(join(LOCALES, f), "utf8")) as Record<string, unknown>);

  it("every i18n key used by the node dialogs, help and labels is in the catalogue", () => {
    const missing: string[] = [];
    for (const f of readdirSync(NODES).filter((n) => n.endsWith(".html"))) {
      const html = readFileSync(join(NODES, f), "utf8");
      const keys = [
        ...[...html.matchAll(/data-i18n="([^"]+)"/g)].flatMap((m) =>
          m[1].split(";").map((k) => k.replace(/^\[[^\]]+\]/, "")),
        ),
        ...[...html.matchAll(/this\._\("([^"]+)"/g)].map((m) => m[1]),
      ];
      assert.ok(keys.length > 0 || !html.includes("data-template-name"), `${f} uses no i18n keys`);
      for (const k of keys) if (!k.includes(":") && !has(catalogue, k)) missing.push(`${f}: ${k}`);
    }
    assert.deepEqual(missing, []);
  });

  it("every key the runtime side of the nodes asks RED._ for is in the catalogue", () => {
    const missing: string[] = [];
    for (const f of readdirSync(NODES).filter((n) => n.endsWith(".ts"))) {
      const src = readFileSync(join(NODES, f), "utf8");
      const prefixes = new Map<string, string>();
      for (const m of src.matchAll(/^const (\w+) = "([\w.-]+\.)";/gm)) prefixes.set(m[1], m[2]);
      for (const m of src.matchAll(/RED\._\((?:(\w+) \+ )?"([^"]+)"/g)) {
        const key = (m[1] ? (prefixes.get(m[1]) ?? `<${m[1]}>`) : "") + m[2];
        if (!has(catalogue, key)) missing.push(`${f}: ${key}`);
      }
    }
    assert.deepEqual(missing, []);
  });
});
