/**
 * The fuzz part on its own: the demo in node-red, FUZZ_COUNT generated inputs per serving
 * transport (default 100,000: the full run), the corpus replayed first. FUZZ_TRANSPORTS
 * (comma-separated) picks transports, FUZZ_SEED the seed, FUZZ_MINUTES bounds the time
 * per transport. Run: `npm run soak -- --only fuzz` or
 * `FUZZ_COUNT=5000 npx mocha dist/test/fuzz/fuzz.suite.js`.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { startSoakDemo, type SoakDemo } from "../support/soak-demo";
import { formatTable, recordRow, type SummaryRow } from "../support/soak-summary";
import { demoReady } from "../soak/soak";
import { fuzzTransport, TRANSPORTS, type Transport } from "./fuzz";

const COUNT = Number(process.env.FUZZ_COUNT ?? 100000);
const SEED = Number(process.env.FUZZ_SEED ?? 8);
const MINUTES = Number(process.env.FUZZ_MINUTES ?? 120);
const ONLY = (process.env.FUZZ_TRANSPORTS ?? "").split(",").filter(Boolean) as Transport[];

describe(`fuzz: ${COUNT} inputs per transport (seed ${SEED})`, () => {
  let demo: SoakDemo;
  const rows: SummaryRow[] = [];
  before(async () => {
    demo = await startSoakDemo();
    await demoReady(demo);
  });
  after(async () => {
    for (const r of rows) recordRow(r);
    process.stdout.write("\n" + formatTable(rows) + "\n");
    await demo?.remove();
  });
  for (const t of ONLY.length ? ONLY : TRANSPORTS) {
    it(`${t}: no crash, no stall over 500 ms, honest request after every batch, memory back`, async () => {
      // A transport that crashed node-red leaves the next ones a fresh process.
      if (!demo.alive()) {
        await demo.remove();
        demo = await startSoakDemo();
        await demoReady(demo);
      }
      const r = await fuzzTransport(demo, t, {
        count: COUNT,
        seed: SEED,
        batch: 100,
        concurrency: 8,
        deadline: Date.now() + MINUTES * 60000,
      });
      rows.push(r.row);
      assert.deepEqual(
        r.failures.slice(0, 20),
        [],
        r.saved.length ? `kept as corpus cases: ${r.saved.join(", ")}` : undefined,
      );
    }).timeout(MINUTES * 60000 + 60000);
  }
});
