/**
 * Abuse (issue 8): silent and slow peers on every listener, brute force, TLS
 * renegotiation, oversized and deep bodies. A hostile peer may be refused or cut; it may
 * never lock an honest device on another address out, and what it holds is bounded in
 * time. Run on its own: `npx mocha dist/test/abuse/abuse.suite.js`.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { gzipSync } from "node:zlib";
import { encodeMessage } from "../../lib/transports/coap-tcp/frame";
import { honest, mb } from "../fuzz/fuzz";
import { coapTcpCsm, deepCbor, deepJson, mqttConnect } from "../fuzz/generators";
import { DEMO_SECRETS, startSoakDemo, type SoakDemo } from "../support/soak-demo";
import { httpCall, tbHttp } from "../support/soak-devices";
import { emptyRow, formatTable, recordRow, type SummaryRow } from "../support/soak-summary";
import { demoReady } from "../soak/soak";

/** How long a silent or slow peer may hold a slot, at most, before the listener cuts it. */
const CUT_WITHIN_MS = Number(process.env.CUT_WITHIN_MS ?? 90000);

function rawSocket(port: number, localAddress: string): Promise<Socket> {
  const s = netConnect({ host: "127.0.0.1", port, localAddress });
  s.on("error", () => undefined);
  s.on("data", () => undefined);
  return Promise.race([once(s, "connect").then(() => s), once(s, "close").then(() => s)]);
}

/** Resolves with how many of `sockets` the server had closed when `ms` ran out (or all closed). */
async function closedWithin(sockets: Socket[], ms: number): Promise<number> {
  const end = Date.now() + ms;
  const closed = () => sockets.filter((s) => s.destroyed || s.closed).length;
  for (let i = 0; i < 10000 && closed() < sockets.length && Date.now() < end; i++) await delay(250);
  return closed();
}

function mtls(demo: SoakDemo, extra: Record<string, unknown> = {}): TLSSocket {
  const pki = join(demo.userDir, "plgd-dps-demo-pki");
  const s = tlsConnect({
    socket: netConnect({ host: "127.0.0.1", port: demo.ports.dps, localAddress: "127.0.0.90" }),
    cert: readFileSync(join(pki, "device-manufacturer.pem")),
    key: readFileSync(join(pki, "device-manufacturer.key")),
    ca: readFileSync(join(pki, "dps-ca.pem")),
    rejectUnauthorized: false,
    ...extra,
  });
  s.on("error", () => undefined);
  return s;
}

describe("abuse", () => {
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

  it("1,000 silent MQTT sessions (keepalive 0) from one address neither lock honest devices out nor live for ever", async () => {
    const row = emptyRow("abuse: silent MQTT sessions");
    rows.push(row);
    const silent: Socket[] = [];
    for (let i = 0; i < 1000; i++) {
      const s = await rawSocket(demo.ports.mqtt, "127.0.0.70");
      s.write(mqttConnect(`silent-${i}`, "provision", 0));
      silent.push(s);
    }
    row.inputs = silent.length;
    const bad = await honest(demo, "mqtt");
    if (bad) row.lost++;
    const cut = await closedWithin(silent, CUT_WITHIN_MS);
    row.leaks = silent.length - cut;
    for (const s of silent) s.destroy();
    row.notes = `honest device: ${bad ?? "served"}; ${cut} of ${silent.length} silent sessions cut within ${CUT_WITHIN_MS / 1000} s`;
    assert.equal(bad, undefined, "an honest device on another address is served (defect 3)");
    assert.equal(
      cut,
      silent.length,
      `every silent session is cut within ${CUT_WITHIN_MS / 1000} s (defect 3)`,
    );
  }).timeout(CUT_WITHIN_MS + 120000);

  it("silent and slow peers on the HTTP port and the coaps+tcp port are cut, honest devices served meanwhile", async () => {
    const row = emptyRow("abuse: silent and slow peers");
    rows.push(row);
    const peers: Array<{ what: string; s: Socket }> = [];
    for (let i = 0; i < 100; i++) {
      peers.push({
        what: "silent TCP on the DPS port (no ClientHello)",
        s: await rawSocket(demo.ports.dps, "127.0.0.71"),
      });
      const slowHttp = await rawSocket(demo.ports.http, "127.0.0.72");
      slowHttp.write("POST /api/v1/provision HTTP/1.1\r\nHost: x\r\n");
      peers.push({ what: "HTTP headers one byte a second", s: slowHttp });
    }
    // Frames sent one byte a second after a valid mutual-TLS handshake (defect 7: each byte refreshed the idle timer).
    for (let i = 0; i < 20; i++) {
      const s = mtls(demo);
      await Promise.race([once(s, "secureConnect"), once(s, "close")]);
      s.write(coapTcpCsm());
      peers.push({ what: "coaps+tcp frame one byte a second", s });
    }
    row.inputs = peers.length;
    const frame = encodeMessage({
      code: 0x02,
      token: Buffer.from([1]),
      options: [{ number: 11, value: Buffer.from("x") }],
      payload: Buffer.alloc(200, 0x61),
    });
    let k = 0;
    const drip = setInterval(() => {
      k++;
      for (const p of peers) {
        if (p.s.destroyed) continue;
        if (p.what.startsWith("HTTP")) p.s.write("X");
        else if (p.what.startsWith("coaps"))
          p.s.write(frame.subarray((k - 1) % frame.length, ((k - 1) % frame.length) + 1));
      }
    }, 1000);
    try {
      const problems: string[] = [];
      for (const t of ["http-tb", "coap-tcp-tls"] as const) {
        const bad = await honest(demo, t);
        if (bad) {
          row.lost++;
          problems.push(`honest ${t}: ${bad}`);
        }
      }
      await closedWithin(
        peers.map((p) => p.s),
        CUT_WITHIN_MS,
      );
      const open = new Map<string, number>();
      for (const p of peers) if (!p.s.destroyed && !p.s.closed) open.set(p.what, (open.get(p.what) ?? 0) + 1);
      for (const [what, n] of open)
        problems.push(`${n} peers "${what}" still held after ${CUT_WITHIN_MS / 1000} s`);
      row.leaks = [...open.values()].reduce((a, b) => a + b, 0);
      row.notes = problems.join("; ") || "all cut";
      assert.deepEqual(problems, []);
    } finally {
      clearInterval(drip);
      for (const p of peers) p.s.destroy();
    }
  }).timeout(CUT_WITHIN_MS + 120000);

  it("brute force: 1,000 wrong secrets from one address are slowed then refused, promptly; honest devices elsewhere served", async () => {
    const row = emptyRow("abuse: brute force");
    rows.push(row);
    const deadline = Date.now() + 90000;
    const tally = { tbEvaluated: 0, tbRefused: 0, mfEvaluated: 0, mfRefused: 0, hung: 0, notSent: 0 };
    let next = 0;
    const worker = async () => {
      while (next < 2000) {
        const i = next++;
        if (Date.now() > deadline) {
          tally.notSent++;
          continue;
        }
        try {
          if (i % 2 === 0) {
            const a = await tbHttp(demo.ports.http, `brute-${i}`, {
              secret: `wrong-${i}`,
              localAddress: "127.0.0.80",
            });
            if (a.answer?.status === "NOT_FOUND") tally.tbEvaluated++;
            else tally.tbRefused++;
          } else {
            const a = await httpCall(
              demo.ports.http,
              `/things/bootstrap/${DEMO_SECRETS.BOOTSTRAP_EXTERNAL_ID}`,
              {
                method: "GET",
                headers: { authorization: `Thing wrong-${i}` },
                localAddress: "127.0.0.81",
                timeoutMs: 5000,
              },
            );
            if (a.status === 403) tally.mfEvaluated++;
            else tally.mfRefused++;
          }
        } catch {
          tally.hung++;
        }
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    row.inputs = 2000 - tally.notSent;
    const tbHonest = await honest(demo, "http-tb");
    const mfHonest = await honest(demo, "http-bootstrap");
    row.lost = (tbHonest ? 1 : 0) + (mfHonest ? 1 : 0) + tally.hung;
    row.notes = JSON.stringify(tally);
    assert.equal(tbHonest, undefined, "an honest ThingsBoard device on another address is served");
    assert.equal(mfHonest, undefined, "an honest Mainflux device on another address is served");
    assert.equal(tally.hung, 0, "a throttled guess gets a prompt refusal, never a hang (defect 14)");
    // OWASP ASVS: at most 100 failed attempts per hour per account (defect 8).
    assert.ok(
      tally.tbEvaluated <= 100,
      `ThingsBoard evaluated ${tally.tbEvaluated} wrong secrets (defect 8)`,
    );
    assert.ok(
      tally.mfEvaluated <= 100,
      `bootstrap evaluated ${tally.mfEvaluated} wrong external keys (defect 8)`,
    );
  }).timeout(240000);

  it("TLS renegotiation on the coaps+tcp listener is refused after a few (Node's tls.CLIENT_RENEG_LIMIT)", async () => {
    const row = emptyRow("abuse: TLS renegotiation");
    rows.push(row);
    const s = mtls(demo, { maxVersion: "TLSv1.2" });
    await Promise.race([once(s, "secureConnect"), once(s, "close")]);
    let ok = 0;
    for (let i = 0; i < 300 && !s.destroyed; i++) {
      const err = await new Promise<Error | null>((resolve) => {
        const timer = setTimeout(() => resolve(new Error("no answer to the renegotiation")), 5000);
        const done = s.renegotiate({ rejectUnauthorized: false }, (e) => {
          clearTimeout(timer);
          resolve(e ?? null);
        });
        if (!done) {
          clearTimeout(timer);
          resolve(new Error("renegotiation not possible"));
        }
      });
      if (err) break;
      ok++;
      row.inputs++;
    }
    s.destroy();
    row.notes = `${ok} of 300 renegotiations succeeded`;
    assert.ok(ok <= 10, `${ok} renegotiations succeeded on one connection (defect 7)`);
  }).timeout(120000);

  it("oversized, compressed and deep bodies are refused before they are parsed whole, in the protocol's own terms", async () => {
    const row = emptyRow("abuse: oversized and deep bodies");
    rows.push(row);
    const problems: string[] = [];
    const rss0 = demo.proc().rssBytes;
    const heap0 = (await demo.stats({ gc: true })).heapUsed;
    const big = Buffer.alloc(4.8 * 1048576, 0x20);
    big.write('{"deviceName":"big","provisionDeviceKey":"k","provisionDeviceSecret":"s","x":"');
    big.write('"}', big.length - 2);
    const bomb = gzipSync(Buffer.alloc(64 * 1048576, 0x20));
    const send = (body: Buffer, headers: Record<string, string>, path = "/api/v1/provision") =>
      httpCall(demo.ports.http, path, {
        body,
        headers,
        localAddress: "127.0.0.85",
        timeoutMs: 30000,
      }).catch((err: Error) => ({ status: 0, headers: {}, body: err.message }));
    const bigAnswers = await Promise.all(
      Array.from({ length: 10 }, () => send(big, { "content-type": "application/json" })),
    );
    const gzAnswers = await Promise.all(
      Array.from({ length: 10 }, () =>
        send(bomb, { "content-type": "application/json", "content-encoding": "gzip" }),
      ),
    );
    row.inputs += 20;
    const rssPeak = demo.proc().rssBytes;
    for (const a of [...bigAnswers, ...gzAnswers]) {
      if (a.status >= 500) problems.push(`a big or compressed body got HTTP ${a.status}`);
      if (/<html|<!DOCTYPE/i.test(a.body))
        problems.push(`a big or compressed body got an HTML page (HTTP ${a.status})`);
    }
    if (rssPeak - rss0 > 64 * 1048576)
      problems.push(
        `10 bodies of 4.8 MB and 10 gzip bombs took resident memory from ${mb(rss0)} to ${mb(rssPeak)} MB (defect 4)`,
      );
    const deep = await send(Buffer.from(deepJson(20000)), { "content-type": "application/json" });
    if (deep.status >= 500 || !/^\s*[{[]/.test(deep.body))
      problems.push(`JSON 20,000 deep got HTTP ${deep.status}: ${deep.body.slice(0, 80)}`);
    const broken = await send(Buffer.from('{"deviceName": '), { "content-type": "application/json" });
    if (/<html|<!DOCTYPE/i.test(broken.body) || broken.status >= 500)
      problems.push(`malformed JSON got HTTP ${broken.status} ${broken.body.slice(0, 60)}`);
    const unknownEnc = await send(Buffer.from("{}"), {
      "content-type": "application/json",
      "content-encoding": "x-unknown",
    });
    if (/<html|<!DOCTYPE/i.test(unknownEnc.body))
      problems.push(`unknown Content-Encoding got an HTML ${unknownEnc.status}`);
    const plain = await httpCall(demo.ports.http, "/api/v1/provision", {
      body: JSON.stringify({
        deviceName: "text-plain-device",
        provisionDeviceKey: DEMO_SECRETS.PROVISION_DEVICE_KEY,
        provisionDeviceSecret: DEMO_SECRETS.PROVISION_DEVICE_SECRET,
      }),
      headers: { "content-type": "text/plain" },
      localAddress: "127.0.0.2",
    });
    if (!/"SUCCESS"/.test(plain.body))
      problems.push(`a valid request sent as text/plain got ${plain.status} ${plain.body.slice(0, 80)}`);
    const mgmt = await send(
      Buffer.from('{"external_id":"x","external_key":"y","thing_id":"t"}'),
      { "content-type": "application/json" },
      "/things/configs",
    );
    if (mgmt.status === 0)
      problems.push(`POST /things/configs with a JSON body never answered: ${mgmt.body}`);
    row.inputs += 5;
    // Deep CBOR to the DPS (defect 6): refused, and the event loop never stalls on it.
    await demo.stats({ reset: true });
    const cborPeers = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const s = mtls(demo);
        await Promise.race([once(s, "secureConnect"), once(s, "close")]);
        s.write(coapTcpCsm());
        for (let k = 0; k < 3; k++)
          s.write(
            encodeMessage({
              code: 0x02,
              token: Buffer.from([k]),
              options: ["api", "v1", "provisioning", "ownership"].map((p) => ({
                number: 11,
                value: Buffer.from(p),
              })),
              payload: deepCbor(250000),
            }),
          );
        s.end();
        await Promise.race([once(s, "close"), delay(20000)]);
        s.destroy();
      }),
    );
    row.inputs += cborPeers.length * 3;
    const eld = (await demo.stats({ reset: true })).blockedMaxMs;
    if (eld > 100) {
      row.stalls++;
      problems.push(
        `24 deep CBOR bodies from 8 clients blocked the event loop ${eld.toFixed(0)} ms (defect 6)`,
      );
    }
    const heap1 = (await demo.stats({ gc: true })).heapUsed;
    if (heap1 > heap0 * 1.25 + 16 * 1048576) {
      row.leaks++;
      problems.push(`heap after GC ${mb(heap1)} MB, ${mb(heap0)} MB before`);
    }
    for (const t of ["http-tb", "http-bootstrap", "coap-tcp-tls"] as const) {
      const bad = await honest(demo, t);
      if (bad) problems.push(`honest ${t} after the bodies: ${bad}`);
    }
    row.notes = `rss ${mb(rss0)} -> peak ${mb(rssPeak)} MB; ${problems.length} problems`;
    assert.deepEqual(problems, []);
  }).timeout(180000);
});
