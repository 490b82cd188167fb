/**
 * Every registered protocol runs the seams' contract suites: a dialect listed in
 * lib/dialects/index.ts without its contract registrations is a copy nothing checks.
 */
import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DEVICE_DIALECTS, SERVING_DIALECTS } from "../../lib/dialects";

/** The sources, from dist/test/contract. */
const SOURCES = join(__dirname, "..", "..", "..", "test", "contract");

function registration(file: string, suite: string, dialectExport: string): void {
  const path = join(SOURCES, file);
  assert.ok(existsSync(path), `${file} registers the dialect with the contract suite`);
  const text = readFileSync(path, "utf8");
  assert.ok(text.includes(`${suite}`), `${file} runs ${suite}`);
  assert.ok(text.includes(`dialect: ${dialectExport}`), `${file} runs it against ${dialectExport}`);
}

describe("protocol registrations", () => {
  for (const [id, dialect] of Object.entries(DEVICE_DIALECTS)) {
    it(`device dialect ${id}: its id is its key, and it runs the device contract`, () => {
      assert.equal(dialect.id, id);
      assert.match(id, /^[a-z][a-z0-9-]*$/, "a dialect id is a folder name and a store-key segment");
      registration(`device-${id}.test.ts`, "deviceDialectContract(", exportName(DEVICE_DIALECTS, id));
    });
  }
  for (const [id, dialect] of Object.entries(SERVING_DIALECTS)) {
    it(`serving dialect ${id}: its id is its key, and it runs the serving contract`, () => {
      assert.equal(dialect.id, id);
      registration(`serving-${id}.test.ts`, "servingDialectContract", exportName(SERVING_DIALECTS, id));
    });
  }
});

/** The name lib/dialects/index.ts gives the dialect's export ("thingsboardServing"). */
function exportName(table: object, id: string): string {
  const index = readFileSync(join(SOURCES, "..", "..", "lib", "dialects", "index.ts"), "utf8");
  const side = table === DEVICE_DIALECTS ? "DEVICE_DIALECTS" : "SERVING_DIALECTS";
  const block = index.slice(index.indexOf(side));
  const m = new RegExp(`^\\s*"?${id}"?: (\\w+),`, "m").exec(block);
  assert.ok(m, `${id} is listed in ${side}`);
  return m[1];
}
