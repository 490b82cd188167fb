/**
 * Issue 8, defects 3, 13 (first half) and 14 over MQTT: silent sessions, pipelined
 * requests and throttled devices, with real sockets on loopback (127.0.0.2 and up are
 * loopback on Linux too, so several remote addresses are real source addresses).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "mocha";
import { provision } from "../../../lib/dialects/thingsboard/device-dialect";
import type { ProvisioningError as TbError } from "../../../lib/model/errors";
import { startTbMqttServer } from "../../../lib/dialects/thingsboard/server-mqtt";
import { addressGroup } from "../../../lib/transports/embedded-broker";
import { DEFAULT_RATE_LIMIT, RateLimiter } from "../../../lib/service/rate-limit";
import {
  CONNACK,
  connectPacket,
  publishOf,
  publishPacket,
  PUBLISH,
  RawSession,
  subscribePacket,
} from "../../support/mqtt-raw";
import { PROJECT_ROOT } from "../../support/node-red";
import { makeTestPki } from "../../support/pki";
import { run } from "../../support/process";
import { KEY, makeService, request, SECRET } from "../../support/tbserve-fixtures";

const PAHO_DEVICE = join(PROJECT_ROOT, "test", "support", "tbserve-paho-device.py");
const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';

/** Rejects after ms: a generous bound that only ends a test that would otherwise hang. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

let silentCount = 0;
/** CONNECT with keepalive 0, then nothing; resolves once the broker has read the CONNECT. */
async function silentSession(port: number, localAddress?: string): Promise<RawSession> {
  const s = await RawSession.open(port, localAddress);
  s.write(connectPacket({ clientId: `silent-${silentCount++}`, username: "provision", keepalive: 0 }));
  await s.until((p) => p.some((x) => x.type === CONNACK));
  return s;
}

/** `count` silent sessions, opened 100 at a time (the listen backlog is finite). */
async function silentSessions(port: number, count: number, address: (i: number) => string | undefined) {
  const all: RawSession[] = [];
  for (let i = 0; i < count; i += 100) {
    const batch = Array.from({ length: Math.min(100, count - i) }, (_, j) =>
      silentSession(port, address(i + j)),
    );
    all.push(...(await Promise.all(batch)));
  }
  return all;
}

function deviceInput(port: number, deviceName: string) {
  return {
    endpoint: `mqtt://127.0.0.1:${port}`,
    provisionDeviceKey: KEY,
    provisionDeviceSecret: SECRET,
    deviceName,
  };
}

async function pahoDevice(port: number, name: string): Promise<string> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    THINGSBOARD_PROVISION_DEVICE_KEY: KEY,
    THINGSBOARD_PROVISION_DEVICE_SECRET: SECRET,
  };
  delete env.THINGSBOARD_CA_CERT;
  const out = await run("/usr/bin/python3", [PAHO_DEVICE, "127.0.0.1", String(port), name], { env });
  const line = out.stdout
    .toString()
    .split("\n")
    .find((l) => l.startsWith("REPLY "));
  assert.ok(line, `paho: no reply (exit ${out.code}): ${out.stdout.toString()} ${out.stderr}`);
  return line.slice(6);
}

async function honestDevicesProvision(port: number, tag: string) {
  const own = await bounded(
    provision(deviceInput(port, `${tag}-own`), {
      timeoutMs: 15000,
      // Silent sessions younger than the eviction grace (2 s) keep their slots: until they
      // are older, the device hears CONNACK 3 (BUSY) and retries, as any device should.
      policy: { intervals: [0.5], jitter: 0, maxAttempts: 20 },
    }),
    30000,
    "the package's client",
  );
  assert.equal(own.credentials.type, "ACCESS_TOKEN");
  const paho = JSON.parse(await bounded(pahoDevice(port, `${tag}-paho`), 30000, "paho"));
  assert.equal(paho.status, "SUCCESS");
}

describe("MQTT provisioning sessions: silent peers never lock honest devices out", () => {
  it("1,000 silent sessions (keepalive 0) from one address: an honest device still provisions", async () => {
    const { service } = makeService();
    const cuts: string[] = [];
    const server = await startTbMqttServer(service, { port: 0, onViolation: (what) => cuts.push(what) });
    const silent: RawSession[] = [];
    try {
      silent.push(...(await silentSessions(server.port, 1000, () => "127.0.0.1")));
      await honestDevicesProvision(server.port, "one-addr");
      assert.ok(await service.registry.get("fleet", "one-addr-own"));
      assert.ok(await service.registry.get("fleet", "one-addr-paho"));
      // Every silent session ends: taken for a newcomer, or cut at its first-request deadline.
      await bounded(Promise.all(silent.map((s) => s.closed)), 30000, "silent sessions closed");
      assert.ok(cuts.includes("session cut: no request in time"), cuts.slice(0, 3).join());
    } finally {
      for (const s of silent) s.destroy();
      await server.close();
    }
  });

  it("1,000 silent sessions from ten addresses fill the broker: an honest device takes the oldest slot", async () => {
    const { service } = makeService();
    const cuts: string[] = [];
    const server = await startTbMqttServer(service, { port: 0, onViolation: (what) => cuts.push(what) });
    const silent: RawSession[] = [];
    try {
      // 100 each from 127.0.0.2 ... 127.0.0.11: every address at its cap, the broker full.
      silent.push(...(await silentSessions(server.port, 1000, (i) => `127.0.0.${2 + (i % 10)}`)));
      assert.equal(server.connections(), 1000);
      await honestDevicesProvision(server.port, "ten-addr");
      assert.ok(cuts.includes("idle session cut to make room"));
      await bounded(Promise.all(silent.map((s) => s.closed)), 30000, "silent sessions closed");
      assert.ok(cuts.includes("session cut: no request in time"));
    } finally {
      for (const s of silent) s.destroy();
      await server.close();
    }
  });

  it("an address over its cap gives up its own oldest idle session, not another address's", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, {
      port: 0,
      maxSessionsPerRemote: 5,
      evictIdleAfterMs: 0,
    });
    const silent: RawSession[] = [];
    try {
      const other = await silentSession(server.port, "127.0.0.3");
      silent.push(other, ...(await silentSessions(server.port, 5, () => "127.0.0.2")));
      const oldest = silent[1];
      silent.push(await silentSession(server.port, "127.0.0.2"));
      await bounded(oldest.closed, 15000, "the oldest session of 127.0.0.2 closed");
      assert.ok(!other.socket.destroyed && !other.socket.readableEnded);
      assert.equal(server.connections(), 6);
    } finally {
      for (const s of silent) s.destroy();
      await server.close();
    }
  });

  it("TLS: connections silent before their handshake hold slots that an honest device can take", async () => {
    const pki = makeTestPki("TbSessions");
    const { service } = makeService();
    const server = await startTbMqttServer(service, {
      port: 0,
      tls: { key: pki.serverKey, cert: pki.serverCert },
      maxSessions: 20,
      evictIdleAfterMs: 0,
    });
    const silent: RawSession[] = [];
    try {
      // TCP connections that never send a ClientHello, from two addresses: every slot is taken.
      for (let i = 0; i < 20; i++) silent.push(await RawSession.open(server.port, `127.0.0.${2 + (i % 2)}`));
      const r = await bounded(
        provision(
          { ...deviceInput(server.port, "tls-own"), endpoint: `mqtts://127.0.0.1:${server.port}` },
          {
            timeoutMs: 15000,
            tls: { ca: pki.caCert },
            policy: { intervals: [1], jitter: 0, maxAttempts: 1 },
          },
        ),
        30000,
        "the package's client over TLS",
      );
      assert.equal(r.device.name, "tls-own");
      await bounded(silent[0].closed, 15000, "the oldest silent connection closed");
    } finally {
      for (const s of silent) s.destroy();
      await server.close();
    }
  });

  it("a burst of honest devices from one address over its cap: each provisions or hears BUSY, none is cut", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, { port: 0 });
    try {
      // 500 at once from one address, five times its cap (the default 100).
      const outcomes = await Promise.all(
        Array.from({ length: 500 }, (_, i) =>
          provision(deviceInput(server.port, `burst-${i}`), {
            timeoutMs: 15000,
            policy: { intervals: [1], jitter: 0, maxAttempts: 1 },
          }).then(
            () => "SUCCESS",
            (err: { code?: string }) => err.code ?? "ERROR",
          ),
        ),
      );
      const counts: Record<string, number> = {};
      for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
      // Evicting sessions between CONNACK and PUBLISH lost answers here (CONNECT errors).
      assert.deepEqual(
        Object.keys(counts).sort(),
        counts.BUSY ? ["BUSY", "SUCCESS"] : ["SUCCESS"],
        JSON.stringify(counts),
      );
      assert.ok(counts.SUCCESS >= 100, JSON.stringify(counts));
    } finally {
      await server.close();
    }
  });

  it("the per-address cap counts an IPv4 address, or an IPv6 /64", () => {
    assert.equal(addressGroup("127.0.0.2"), "127.0.0.2");
    assert.equal(addressGroup("::ffff:127.0.0.2"), "127.0.0.2");
    assert.equal(addressGroup("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    assert.equal(addressGroup("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
    assert.equal(addressGroup("2001:0db8:0001:0002:0:0:0:9"), "2001:db8:1:2::/64");
    assert.equal(addressGroup("fe80::1%eth0"), "fe80:0:0:0::/64");
    assert.equal(addressGroup("::1"), "0:0:0:0::/64");
    assert.equal(addressGroup("2001:db8::"), "2001:db8:0:0::/64");
    assert.equal(addressGroup(undefined), "");
  });

  it("a session is cut at the end of its lifetime whatever keepalive it asked for", async () => {
    const { service } = makeService();
    const cuts: string[] = [];
    const server = await startTbMqttServer(service, {
      port: 0,
      firstRequestMs: 0,
      sessionLifetimeMs: 1000,
      onViolation: (what) => cuts.push(what),
    });
    try {
      const s = await silentSession(server.port);
      s.write(subscribePacket(1, "/provision/response", 1));
      await bounded(s.closed, 20000, "the session closed");
      assert.deepEqual(cuts, ["session cut: lifetime over"]);
    } finally {
      await server.close();
    }
  });
});

describe("MQTT provisioning sessions: pipelined requests", () => {
  it("answers the 3 allowed requests, refuses the rest with FAILURE, then closes", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, { port: 0, closeAfterMs: 60000 });
    try {
      const s = await RawSession.open(server.port);
      // Everything back to back in one write: CONNECT, SUBSCRIBE and six requests.
      s.write(
        connectPacket({ clientId: "pipeliner", username: "provision", keepalive: 0 }),
        subscribePacket(1, "/provision/response", 0),
        ...Array.from({ length: 6 }, (_, i) =>
          publishPacket("/provision/request", request({ deviceName: `pipe-${i}` })),
        ),
      );
      await bounded(s.closed, 20000, "the session closed");
      const answers = s.packets.filter((p) => p.type === PUBLISH).map(publishOf);
      assert.equal(answers.length, 6, `got ${answers.length} answers`);
      assert.ok(answers.every((a) => a.topic === "/provision/response"));
      for (let i = 0; i < 3; i++) {
        const res = JSON.parse(answers[i].payload);
        assert.equal(res.status, "SUCCESS", answers[i].payload);
        assert.equal(
          (await service.registry.get("fleet", `pipe-${i}`))?.credentials?.token,
          res.credentialsValue,
        );
      }
      for (let i = 3; i < 6; i++) assert.equal(answers[i].payload, FAILURE);
      const names = (await service.registry.list()).map((d) => d.name).sort();
      assert.deepEqual(names, ["pipe-0", "pipe-1", "pipe-2"]);
    } finally {
      await server.close();
    }
  });
});

describe("MQTT provisioning sessions: throttled devices get a prompt refusal", () => {
  it("CONNACK 3 for MQTT 3.1.1 and 0x89 for MQTT 5 once the remote is over its rate", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, {
      port: 0,
      connectLimiter: new RateLimiter({ perSecond: 0.001, burst: 1 }),
    });
    try {
      const first = await RawSession.open(server.port);
      first.write(connectPacket({ clientId: "first", username: "provision" }));
      await first.until((p) => p.some((x) => x.type === CONNACK));
      assert.equal(first.packets[0].body[1], 0);

      for (const version of [4, 5] as const) {
        const s = await RawSession.open(server.port);
        s.write(connectPacket({ clientId: `over-${version}`, username: "provision", version }));
        await bounded(s.closed, 15000, "the throttled session closed");
        const connack = s.packets.find((p) => p.type === CONNACK);
        assert.ok(connack, `MQTT ${version}: closed without a CONNACK`);
        assert.equal(connack.body[1], version === 5 ? 0x89 : 3);
      }
      first.destroy();
    } finally {
      await server.close();
    }
  });

  it("the service's limiter is charged once per device: at CONNECT, not again for its request", async () => {
    const limiter = new RateLimiter({ perSecond: 0.001, burst: 2 });
    const { service } = makeService({ limiter });
    const server = await startTbMqttServer(service, { port: 0, serviceLimiter: limiter });
    const once = { timeoutMs: 15000, policy: { intervals: [1], jitter: 0, maxAttempts: 1 } };
    try {
      for (const name of ["paid-1", "paid-2"]) {
        const r = await provision(deviceInput(server.port, name), once);
        assert.equal(r.device.name, name);
      }
      const err = await provision(deviceInput(server.port, "paid-3"), once).then(
        () => undefined,
        (e: TbError) => e,
      );
      assert.equal(err?.code, "BUSY", String(err));
    } finally {
      await server.close();
    }
  });

  it("a gateway onboards 300 children from one address, 50 at a time, with the default limits", async () => {
    // As provision-response sets it up: one limiter, the service's, also asked at CONNECT.
    const limiter = new RateLimiter(DEFAULT_RATE_LIMIT);
    const { service } = makeService({ limiter });
    const server = await startTbMqttServer(service, { port: 0, serviceLimiter: limiter });
    const retryCodes = new Map<string, number>();
    const policy = { intervals: [0.5, 1, 2], jitter: 0.5, maxAttempts: -1 };
    try {
      let next = 0;
      const worker = async () => {
        while (next < 300) {
          const name = `child-${next++}`;
          const r = await provision(deviceInput(server.port, name), {
            timeoutMs: 15000,
            policy,
            onRetry: ({ error }) => {
              const code = (error as TbError).code;
              retryCodes.set(code, (retryCodes.get(code) ?? 0) + 1);
            },
          });
          assert.equal(r.device.name, name);
        }
      };
      await bounded(Promise.all(Array.from({ length: 50 }, worker)), 100000, "300 children");
      assert.equal((await service.registry.list()).length, 300);
      // Every attempt that failed was refused promptly as busy: none hung, none was cut unread.
      assert.deepEqual(
        [...retryCodes.keys()].filter((c) => c !== "BUSY"),
        [],
        JSON.stringify([...retryCodes]),
      );
    } finally {
      await server.close();
    }
  });
});
