/**
 * Races: 1,000 requests for one new device name at once (HTTP and MQTT, from many
 * loopback addresses) give exactly one SUCCESS; devices provisioning at the same time
 * never see each other's answers, and the registry holds what each one got.
 * Run on its own: `npx mocha dist/test/abuse/races.suite.js`.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { DEMO_SECRETS, startSoakDemo, type SoakDemo } from "../support/soak-demo";
import { emptyRow, formatTable, recordRow, type SummaryRow } from "../support/soak-summary";
import { demoReady } from "../soak/soak";
import { mqttFrom, tbHttp } from "../support/soak-devices";
import { registryTokens, sourceAddress, storm } from "./storm";

const RACERS = Number(process.env.RACERS ?? 1000);

describe("races", () => {
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

  it(`${RACERS} requests for one new name at once give exactly one SUCCESS`, async () => {
    const row = emptyRow("races: one name");
    rows.push(row);
    const name = "race-one-name";
    const answers = await storm(demo, {
      count: RACERS,
      concurrency: RACERS,
      prefix: "x",
      names: () => name,
    });
    row.inputs = answers.length;
    const ok = answers.filter((a) => a.answer?.status === "SUCCESS");
    const failures = answers.filter((a) => a.answer?.status === "FAILURE").length;
    const refused = answers.filter(
      (a) => a.answer && a.answer.status !== "SUCCESS" && a.answer.status !== "FAILURE",
    );
    // No answer at all: reset, or closed without one (a refusal must be the protocol's, defect 14).
    const other = answers.filter((a) => !a.answer);
    row.duplicates = Math.max(0, ok.length - 1);
    row.lost = other.length;
    row.notes = `${ok.length} SUCCESS, ${failures} FAILURE, ${refused.length} refused (${[...new Set(refused.map((o) => o.answer?.status))].join(", ")}), ${other.length} without an answer (${[...new Set(other.map((o) => `${o.via}: ${o.error ?? o.answer?.status}`))].slice(0, 3).join("; ")})`;
    assert.equal(ok.length, 1, row.notes);
    assert.equal(other.length, 0, `every request gets an answer in its protocol's terms: ${row.notes}`);
    const { byName } = registryTokens(demo.userDir);
    assert.equal(
      byName.get(name),
      String(ok[0].answer?.credentialsValue),
      "the registry holds what the winner got",
    );
  }).timeout(180000);

  it("devices provisioning at the same time never see each other's answers", async () => {
    const row = emptyRow("races: distinct devices");
    rows.push(row);
    const n = 300;
    // Every MQTT session also watches the response topic: it must only ever get its own answer.
    const watchers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const c = mqttFrom(demo.ports.mqtt, sourceAddress(5000 + i), {
          username: "provision",
          protocolVersion: 4,
          reconnectPeriod: 0,
        });
        const seen: string[] = [];
        c.on("message", (_t, p) => seen.push(p.toString()));
        c.on("error", () => undefined);
        return new Promise<{ end: () => void; seen: string[] }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("watcher: no CONNACK within 15 s")), 15000);
          c.once("close", () => reject(new Error("watcher: closed before it subscribed")));
          c.on("connect", () =>
            c.subscribe("/provision/response", { qos: 1 }, () => {
              clearTimeout(timer);
              resolve({ end: () => c.end(true), seen });
            }),
          );
        });
      }),
    );
    const answers = await storm(demo, { count: n, concurrency: 60, prefix: "distinct" });
    row.inputs = answers.length;
    const ok = answers.filter((a) => a.answer?.status === "SUCCESS");
    const tokens = ok.map((a) => String(a.answer?.credentialsValue));
    row.duplicates = tokens.length - new Set(tokens).size;
    const { byName } = registryTokens(demo.userDir);
    const mismatched = ok
      .filter((a) => byName.get(a.name) !== String(a.answer?.credentialsValue))
      .map((a) => a.name);
    const leakedToWatchers = watchers.reduce((s, w) => s + w.seen.length, 0);
    for (const w of watchers) w.end();
    row.lost = answers.length - ok.length;
    row.leaks = leakedToWatchers;
    assert.equal(
      ok.length,
      n,
      `every distinct device gets SUCCESS: ${answers
        .filter((a) => !ok.includes(a))
        .slice(0, 3)
        .map((a) => `${a.via}: ${a.error ?? JSON.stringify(a.answer)}`)
        .join("; ")}`,
    );
    assert.equal(row.duplicates, 0, "no token handed to two devices");
    assert.deepEqual(mismatched, [], "each device's registry entry holds what that device got");
    assert.equal(leakedToWatchers, 0, "no session receives an answer meant for another device");
  }).timeout(180000);

  it("a client-chosen access token is never given to two devices (defect 10)", async () => {
    const row = emptyRow("races: one chosen token");
    rows.push(row);
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        tbHttp(demo.ports.http, `chosen-token-${i}`, {
          localAddress: sourceAddress(7000 + i),
          extra: { credentialsType: "ACCESS_TOKEN", token: "the-same-chosen-token" },
        }),
      ),
    );
    row.inputs = answers.length;
    const ok = answers.filter((a) => a.answer?.status === "SUCCESS");
    row.duplicates = Math.max(0, ok.length - 1);
    assert.ok(ok.length <= 1, `${ok.length} devices got SUCCESS with the same access token`);
  }).timeout(60000);

  it("names that differ only in lone UTF-16 surrogates are refused or kept apart (defect 11)", async () => {
    const row = emptyRow("races: lone surrogates");
    rows.push(row);
    const names = ["\ud800-x", "\udc00-x", "\ufffd-x"];
    const answers = [];
    for (const [i, name] of names.entries())
      answers.push({
        name,
        a: await tbHttp(demo.ports.http, name, { localAddress: sourceAddress(7100 + i) }),
      });
    row.inputs = answers.length;
    const ok = answers.filter((x) => x.a.answer?.status === "SUCCESS");
    const { byName } = registryTokens(demo.userDir);
    const kept = ok.filter((x) => byName.get(x.name) === String(x.a.answer?.credentialsValue));
    row.lost = ok.length - kept.length + (answers[2].a.answer?.status === "SUCCESS" ? 0 : 1);
    assert.equal(
      kept.length,
      ok.length,
      `${ok.length} SUCCESS, but only ${kept.length} registry entries hold what their device got`,
    );
    // "\ufffd-x" is well-formed and new: the surrogates before it must not have taken its place.
    assert.equal(answers[2].a.answer?.status, "SUCCESS", `U+FFFD-x got ${answers[2].a.body}`);
  }).timeout(60000);

  it("one MQTT session with 5 pipelined requests gets 5 answers (defect 13)", async () => {
    const row = emptyRow("races: pipelined MQTT");
    rows.push(row);
    const c = mqttFrom(demo.ports.mqtt, sourceAddress(7200), {
      username: "provision",
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    c.on("error", () => undefined);
    const got: string[] = [];
    c.on("message", (_t, p) => got.push(p.toString()));
    await new Promise<void>((resolve, reject) => {
      c.once("connect", () => resolve());
      c.once("close", () => reject(new Error("closed before CONNACK")));
    });
    await c.subscribeAsync("/provision/response", { qos: 1 });
    for (let i = 0; i < 5; i++)
      c.publish(
        "/provision/request",
        JSON.stringify({
          deviceName: `pipelined-${i}`,
          provisionDeviceKey: DEMO_SECRETS.PROVISION_DEVICE_KEY,
          provisionDeviceSecret: DEMO_SECRETS.PROVISION_DEVICE_SECRET,
        }),
        { qos: 1 },
      );
    row.inputs = 5;
    for (let k = 0; k < 150 && got.length < 5 && c.connected; k++) await delay(100);
    c.end(true);
    row.lost = 5 - got.length;
    assert.equal(got.length, 5, `answers: ${got.join(" | ")}`);
  }).timeout(60000);
});
