/**
 * The small fuzz batch that `npm test` runs: FUZZ_COUNT (default 150) generated inputs per
 * serving transport, the corpus replayed first, against the demo in node-red; then the
 * secrets scan of that run. The full run is `npm run soak -- --fuzz` (fuzz.suite.ts,
 * 100,000 per transport). Bounded to fit the 180 s that scripts/test.sh gives a file.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DEMO_SECRETS, startSoakDemo, type SoakDemo } from "../support/soak-demo";
import { httpCall, pemNeedles, scanForSecrets } from "../support/soak-devices";
import { formatTable, recordRow, type SummaryRow } from "../support/soak-summary";
import { demoReady } from "../soak/soak";
import { fuzzTransport, TRANSPORTS, type FuzzResult } from "./fuzz";

const COUNT = Number(process.env.FUZZ_COUNT ?? 150);

describe(`fuzz (short): ${COUNT} inputs per transport against the demo`, () => {
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

  it("no crash, no unhandled error, no stall over 500 ms, honest requests served after every batch, memory back", async () => {
    const deadline = Date.now() + 110000;
    const results: FuzzResult[] = [];
    for (const t of TRANSPORTS) {
      const r = await fuzzTransport(demo, t, { count: COUNT, batch: 25, concurrency: 6, deadline });
      results.push(r);
      rows.push(r.row);
      if (!demo.alive()) break;
    }
    const saved = results.flatMap((r) => r.saved);
    assert.deepEqual(
      results.flatMap((r) => r.failures),
      [],
      saved.length ? `kept as corpus cases: ${saved.join(", ")}` : undefined,
    );
  }).timeout(150000);

  it("secrets: the fuzzed run's log, status, debug messages and flows.json hold none", async () => {
    // Malformed JSON that carries the real key and secret, cut right after each of them:
    // a parser error that quotes the bytes around its position would quote them (defect 5).
    const whole = JSON.stringify({
      deviceName: "quoted",
      provisionDeviceKey: DEMO_SECRETS.PROVISION_DEVICE_KEY,
      provisionDeviceSecret: DEMO_SECRETS.PROVISION_DEVICE_SECRET,
    });
    for (const secret of [DEMO_SECRETS.PROVISION_DEVICE_KEY, DEMO_SECRETS.PROVISION_DEVICE_SECRET]) {
      const end = whole.indexOf(secret) + secret.length;
      for (const cut of [end, end - 4, end + 1])
        await httpCall(demo.ports.http, "/api/v1/provision", {
          body: whole.slice(0, cut) + "\u0000}",
          localAddress: "127.0.0.2",
        });
    }
    const pki = join(demo.userDir, "plgd-dps-demo-pki");
    const secrets = [
      ...Object.entries(DEMO_SECRETS)
        .filter(([k]) => k !== "BOOTSTRAP_EXTERNAL_ID")
        .flatMap(([label, value]) => [
          { label, value },
          // Ten characters is what a JSON parser error quotes: any 9 of a secret's are a hit.
          { label: `${label} (its last 9 characters)`, value: value.slice(-9) },
        ]),
      ...readdirSync(pki)
        .filter((f) => f.endsWith(".key"))
        .flatMap((f) => pemNeedles(`private key ${f}`, readFileSync(join(pki, f), "utf8"))),
    ];
    const places = [
      { place: "the node-red log (trace level)", text: demo.output() },
      { place: "node status and debug messages (comms)", text: JSON.stringify(demo.comms.all()) },
      { place: "flows.json", text: readFileSync(join(demo.userDir, "flows.json"), "utf8") },
    ];
    assert.deepEqual(scanForSecrets(places, secrets), []);
  }).timeout(60000);
});
