/**
 * Faults (issue 8, "The suite that would have found them"): kill -9 of node-red during a
 * provisioning storm and a restart on the same user directory; peers cut mid-exchange on
 * every listener; a redeploy through the admin API during a storm. Run on its own:
 * `npx mocha dist/test/abuse/faults.suite.js` (scripts/soak.js runs it too).
 */
import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { connect as tlsConnect } from "node:tls";
import { TRANSPORTS, honest } from "../fuzz/fuzz";
import { coapTcpCsm, mqttConnect, mqttPublish } from "../fuzz/generators";
import { DEMO_SECRETS, startSoakDemo, type SoakDemo } from "../support/soak-demo";
import { httpCall } from "../support/soak-devices";
import { emptyRow, formatTable, recordRow, type SummaryRow } from "../support/soak-summary";
import { demoReady } from "../soak/soak";
import { registryTokens, storm } from "./storm";

describe("abuse/faults", () => {
  const rows: SummaryRow[] = [];
  after(() => {
    for (const r of rows) recordRow(r);
    process.stdout.write("\n" + formatTable(rows) + "\n");
  });

  /** Polls `read` until it is at most `limit` or `ms` pass; returns the last value read. */
  async function settlesTo(read: () => number, limit: number, ms = 15000): Promise<number> {
    let v = read();
    for (let i = 0; i < 150 && v > limit; i++) {
      await delay(ms / 150);
      v = read();
    }
    return v;
  }

  describe("faults", () => {
    it("kill -9 during a provisioning storm: every SUCCESS is in the registry with what it received, nothing issued twice, every file readable", async () => {
      const row = emptyRow("faults: kill -9 in a storm");
      rows.push(row);
      let demo: SoakDemo = await startSoakDemo();
      try {
        await demoReady(demo);
        const answers: Awaited<ReturnType<typeof storm>> = [];
        const rounds = Number(process.env.KILL_ROUNDS ?? 3);
        for (let round = 0; round < rounds; round++) {
          const before = answers.length;
          const current = demo;
          const stormDone = storm(current, {
            count: 400,
            concurrency: 24,
            prefix: `kill${round}`,
            stop: () => !current.alive(),
            sink: answers,
          });
          // Kill once some devices of this round have their answer: the rest are in flight.
          const killAt = before + 30 + round * 20;
          for (let i = 0; i < 3000 && current.alive() && answers.length < killAt; i++) await delay(10);
          await current.kill9();
          row.faults++;
          await stormDone;
          demo = await startSoakDemo({ userDir: current.userDir, ports: current.ports });
          await demoReady(demo);
        }
        const { byName, unreadable } = registryTokens(demo.userDir);
        const ok = answers.filter((a) => a.answer?.status === "SUCCESS");
        const lost = ok.filter((a) => byName.get(a.name) !== String(a.answer?.credentialsValue));
        const tokens = [...byName.values()].filter(Boolean);
        const dup = tokens.length - new Set(tokens).size;
        const givenTwice = ok.length - new Set(ok.map((a) => a.name)).size;
        // Registered without the device having its answer (defect 9, reported, not asserted:
        // the opt-in replay window is off by default, as in ThingsBoard).
        const answered = new Set(ok.map((a) => a.name));
        const unanswered = [...byName.keys()].filter((n) => /^kill\d-/.test(n) && !answered.has(n));
        row.inputs = answers.length;
        row.lost = lost.length;
        row.duplicates = dup + givenTwice;
        row.notes = `${ok.length} SUCCESS received; ${unanswered.length} devices registered whose answer was lost in the crash (defect 9)`;
        assert.deepEqual(unreadable, [], "every store file parses after kill -9");
        assert.deepEqual(
          lost.map((a) => a.name),
          [],
          "every SUCCESS the storm received is in the registry with that token",
        );
        assert.equal(dup + givenTwice, 0, "nothing issued twice");
        assert.ok(ok.length > 0, "the storm got answers before the kill");
      } finally {
        await demo.remove();
      }
    }).timeout(240000);

    it("peers cut mid-exchange on every listener: nothing leaks, every transport still serves", async () => {
      const row = emptyRow("faults: peers cut mid-exchange");
      rows.push(row);
      const demo = await startSoakDemo();
      try {
        await demoReady(demo);
        await demo.stats({ gc: true });
        const fds0 = demo.proc().fds;
        const pki = join(demo.userDir, "plgd-dps-demo-pki");
        const tlsOpts = {
          cert: readFileSync(join(pki, "device-manufacturer.pem")),
          key: readFileSync(join(pki, "device-manufacturer.key")),
          ca: readFileSync(join(pki, "dps-ca.pem")),
          rejectUnauthorized: false,
        };
        const half = (b: Buffer) => b.subarray(0, Math.max(1, b.length >> 1));
        const body = JSON.stringify({
          deviceName: "cut",
          provisionDeviceKey: "k",
          provisionDeviceSecret: "s",
        });
        const httpReq = Buffer.from(
          `POST /api/v1/provision HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
        const cuts: Array<() => Promise<void>> = [];
        for (let i = 0; i < 100; i++) {
          // A TCP peer that sends part of its exchange and resets the connection.
          const tcp = (port: number, bytes: Buffer) => async () => {
            const s = netConnect({ host: "127.0.0.1", port, localAddress: "127.0.0.4" });
            s.on("error", () => undefined);
            await once(s, "connect");
            s.write(bytes);
            await delay(i % 5);
            s.resetAndDestroy();
          };
          cuts.push(tcp(demo.ports.http, half(httpReq)));
          cuts.push(
            tcp(
              demo.ports.mqtt,
              Buffer.concat([
                mqttConnect(`cut-${i}`),
                half(mqttPublish("/provision/request", Buffer.from(body), 1)),
              ]),
            ),
          );
          cuts.push(tcp(demo.ports.dps, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01])));
          cuts.push(async () => {
            const s = tlsConnect({
              socket: netConnect({ host: "127.0.0.1", port: demo.ports.dps, localAddress: "127.0.0.4" }),
              ...tlsOpts,
            });
            s.on("error", () => undefined);
            await Promise.race([once(s, "secureConnect"), once(s, "close")]);
            s.write(Buffer.concat([coapTcpCsm(), Buffer.from([0xd1, 0x40, 0x01])]));
            s.destroy();
          });
        }
        for (let k = 0; k < cuts.length; k += 20) await Promise.all(cuts.slice(k, k + 20).map((c) => c()));
        row.faults = cuts.length;
        const problems: string[] = [];
        for (const t of TRANSPORTS) {
          const bad = await honest(demo, t);
          if (bad) {
            row.lost++;
            problems.push(bad);
          }
        }
        const fds = await settlesTo(() => demo.proc().fds, fds0 + 2);
        if (fds > fds0 + 2) {
          row.leaks = fds - fds0;
          problems.push(`file descriptors ${fds0} before, ${fds} after the cut peers`);
        }
        assert.ok(demo.alive(), "node-red is running");
        assert.deepEqual(problems, []);
      } finally {
        await demo.remove();
      }
    }).timeout(180000);

    it("a redeploy (admin API POST /flows) during a storm leaves no socket, timer or handle behind", async () => {
      const row = emptyRow("faults: redeploy in a storm");
      rows.push(row);
      const demo = await startSoakDemo();
      try {
        await demoReady(demo);
        const base = await demo.stats({ gc: true });
        const fds0 = demo.proc().fds;
        const flows = readFileSync(join(demo.userDir, "flows.json"), "utf8");
        const running = storm(demo, { count: 300, concurrency: 16, prefix: "redeploy" });
        const deploys = Number(process.env.REDEPLOYS ?? 3);
        for (let i = 0; i < deploys; i++) {
          const before = demo.output().length;
          const res = await fetch(`${demo.url}/flows`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "Node-RED-Deployment-Type": "full",
              "Node-RED-API-Version": "v2",
            },
            body: JSON.stringify({ flows: JSON.parse(flows) }),
          });
          assert.equal(res.status, 200, await res.text());
          for (let k = 0; k < 300 && !/Started flows|Flows started/.test(demo.output().slice(before)); k++)
            await delay(100);
          row.faults++;
        }
        const answers = await running;
        row.inputs = answers.length;
        await demoReady(demo);
        const problems: string[] = [];
        for (const t of TRANSPORTS) if (await honest(demo, t)) row.lost++;
        const fds = await settlesTo(() => demo.proc().fds, fds0 + 2);
        // In-flight requests (fs, immediates) come and go; sockets, servers and timers must not pile up.
        const lasting = (r: Record<string, number>) =>
          Object.fromEntries(
            Object.entries(r).filter(([k]) => !/^FSReq|^Immediate|^TickObject|^GetAddrInfo/.test(k)),
          );
        const baseLasting = lasting(base.resources);
        const grownIn = (r: Record<string, number>) =>
          Object.entries(lasting(r))
            .filter(([k, n]) => n > (baseLasting[k] ?? 0) + (k === "Timeout" ? 2 : 0))
            .map(([k, n]) => `${k} ${baseLasting[k] ?? 0} -> ${n}`);
        let after = await demo.stats({ gc: true });
        for (let i = 0; i < 30 && grownIn(after.resources).length; i++) {
          await delay(500);
          after = await demo.stats();
        }
        const grew = grownIn(after.resources);
        if (fds > fds0 + 2) problems.push(`file descriptors ${fds0} -> ${fds}`);
        if (grew.length) problems.push(`active resources grew: ${grew.join(", ")}`);
        row.leaks = problems.length;
        row.notes = `fds ${fds0} -> ${fds}; resources ${JSON.stringify(base.resources)} -> ${JSON.stringify(after.resources)}`;
        assert.equal(row.lost, 0, "every transport serves after the redeploys");
        assert.deepEqual(problems, []);
      } finally {
        await demo.remove();
      }
    }).timeout(180000);

    it("a restart with another initial bootstrap configuration serves the new one (defect 2)", async () => {
      const row = emptyRow("faults: restart, other settings");
      rows.push(row);
      let demo = await startSoakDemo();
      try {
        await demoReady(demo);
        await demo.stop();
        row.faults++;
        const id = "soak-device-02";
        demo = await startSoakDemo({
          userDir: demo.userDir,
          ports: demo.ports,
          env: { BOOTSTRAP_EXTERNAL_ID: id },
        });
        // The service stores its initial configuration at deploy: ask until it answers 200
        // (bounded; a 404 that lasts 10 s is the defect).
        let a = { status: 0, body: "" };
        for (let i = 0; i < 20 && a.status !== 200; i++) {
          if (i) await delay(500);
          a = await httpCall(demo.ports.http, `/things/bootstrap/${id}`, {
            method: "GET",
            headers: { authorization: `Thing ${DEMO_SECRETS.BOOTSTRAP_EXTERNAL_KEY}` },
          });
        }
        row.inputs++;
        if (a.status !== 200) row.lost++;
        const conflict = demo
          .output()
          .split("\n")
          .filter((l) => /CONFLICT|belongs to another configuration/.test(l));
        assert.equal(
          a.status,
          200,
          `the new external id got ${a.status}: ${a.body.slice(0, 120)}; ${conflict[0] ?? ""}`,
        );
      } finally {
        await demo.remove();
      }
    }).timeout(120000);
  });
});
