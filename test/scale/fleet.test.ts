/**
 * Three Node-RED instances serving one fleet from one PostgreSQL registry behind HAProxy:
 * every device name is asked for by two racing devices, an instance is killed with SIGKILL
 * mid-storm and started again, then the same with PostgreSQL itself. What a fleet owner
 * depends on is asserted from the devices' answers and the table: one credential per name,
 * every SUCCESS is what is stored, no device gave up, and what was stored but never
 * answered is counted (and is none once the repeat window is on).
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect } from "node:net";
import { after, before, describe, it } from "mocha";
import {
  FLEET_KEY,
  FLEET_PROFILE,
  FLEET_SECRET,
  FLEET_TABLE,
  startFleet,
  type Fleet,
  type FleetInstance,
} from "../support/fleet";
import { HAPROXY_MISSING, haproxyPresent } from "../support/haproxy";
import { postgresBin, POSTGRES_MISSING } from "../support/postgres";
import { tbMqtt, type TbAnswer } from "../support/soak-devices";

interface DeviceRun {
  name: string;
  /** The loopback address the device connects from; HAProxy passes it on in a PROXY v2 header. */
  from: string;
  /** The final answer: SUCCESS, or FAILURE ("already provisioned") for the pair's loser. */
  final?: TbAnswer;
  /** Sessions that ended without a verdict (closed, cut, refused at CONNECT), retried. */
  retries: number;
  lastError?: string;
}

const NAMES = 300;
const CONCURRENCY = 40;
const DEVICE_DEADLINE_MS = 90000;

/** A device as ThingsBoard's are written: one request per session, tried again until it has a verdict. */
async function device(
  port: number,
  name: string,
  localAddress: string,
  deadline: number,
): Promise<DeviceRun> {
  const run: DeviceRun = { name, from: localAddress, retries: 0 };
  while (Date.now() < deadline) {
    try {
      const a = await tbMqtt(port, name, {
        key: FLEET_KEY,
        secret: FLEET_SECRET,
        localAddress,
        timeoutMs: 8000,
      });
      if (a.status === "SUCCESS" || a.status === "FAILURE" || a.status === "NOT_FOUND") {
        run.final = a;
        return run;
      }
      run.lastError = String(a.status);
    } catch (err) {
      run.lastError = (err as Error).message;
    }
    run.retries++;
    // A device's back-off, not the test waiting for something.
    await new Promise((r) => setTimeout(r, 100 + Math.floor(Math.random() * 200)));
  }
  return run;
}

/** Two devices per name, CONCURRENCY at a time; `midway` runs once half the devices are done. */
async function storm(fleet: Fleet, prefix: string, midway: () => Promise<void>): Promise<DeviceRun[]> {
  const jobs = Array.from({ length: NAMES * 2 }, (_, i) => ({ name: `${prefix}-${i >> 1}`, i }));
  const runs: DeviceRun[] = [];
  let next = 0;
  let fault: Promise<void> | undefined;
  const deadline = Date.now() + DEVICE_DEADLINE_MS;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const local = `127.0.${20 + (job.i % 50)}.${1 + (job.i % 200)}`;
      runs.push(await device(fleet.port, job.name, local, deadline));
      if (!fault && runs.length >= jobs.length / 3) fault = midway();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  await fault;
  return runs;
}

/** The registry's devices of one storm: name -> stored access token. */
async function stored(fleet: Fleet, prefix: string): Promise<Map<string, string>> {
  const rows = await fleet.pg.query(
    `SELECT key, value FROM "${FLEET_TABLE}" WHERE key LIKE $1`,
    [`thingsboard/${FLEET_PROFILE}/${prefix}-%`],
    fleet.pg.database,
  );
  const out = new Map<string, string>();
  for (const r of rows) {
    const name = String(r.key).slice(`thingsboard/${FLEET_PROFILE}/`.length);
    const v = r.value as { credentials?: { token?: string } };
    out.set(name, String(v.credentials?.token));
  }
  return out;
}

/** name -> the remote addresses the instances audited its requests from (their logs). */
function audited(fleet: Fleet, prefix: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const line = new RegExp(`audit (\\S+) (${prefix}-\\d+) `, "g");
  for (const inst of fleet.instances)
    for (const m of inst.log().matchAll(line)) {
      const set = out.get(m[2]!) ?? new Set<string>();
      set.add(m[1]!);
      out.set(m[2]!, set);
    }
  return out;
}

interface Verdict {
  successes: number;
  failures: number;
  storedNeverAnswered: number;
  retried: number;
}

/** The invariants of every storm; resolves with the counts worth reporting. */
async function check(fleet: Fleet, prefix: string, runs: DeviceRun[]): Promise<Verdict> {
  assert.equal(runs.length, NAMES * 2);
  const gaveUp = runs.filter((r) => !r.final);
  assert.deepEqual(
    gaveUp.map((r) => `${r.name}: ${r.lastError}`),
    [],
    "every device got a verdict before its deadline",
  );
  const table = await stored(fleet, prefix);
  const tokens = new Map<string, Set<string>>();
  for (const r of runs) {
    if (r.final?.status !== "SUCCESS") continue;
    const set = tokens.get(r.name) ?? new Set<string>();
    set.add(String(r.final.credentialsValue));
    tokens.set(r.name, set);
  }
  for (const [name, set] of tokens) {
    assert.equal(set.size, 1, `${name}: at most one distinct credential was handed out`);
    assert.equal(table.get(name), [...set][0], `${name}: the SUCCESS is what the registry holds`);
  }
  for (const r of runs) {
    if (r.final?.status === "FAILURE")
      assert.ok(table.has(r.name), `${r.name}: a FAILURE only because the name is already provisioned`);
    assert.notEqual(r.final?.status, "NOT_FOUND", "the profile's key and secret are right");
  }
  // One record per name: every name of the storm was created once.
  assert.equal(table.size, NAMES);
  const allTokens = [...table.values()];
  assert.equal(new Set(allTokens).size, allTokens.length, "credentials are unique across devices");
  // Behind HAProxy, each instance saw the device's own address (PROXY v2), never the proxy's.
  const remotes = audited(fleet, prefix);
  for (const name of table.keys()) {
    const own = new Set(runs.filter((r) => r.name === name).map((r) => r.from));
    const seen = [...(remotes.get(name) ?? [])];
    assert.ok(seen.length > 0, `${name}: audited by an instance`);
    for (const a of seen)
      assert.ok(own.has(a), `${name}: audited from ${a}, one of its devices' ${[...own]}`);
  }
  let storedNeverAnswered = 0;
  for (const name of table.keys()) if (!tokens.has(name)) storedNeverAnswered++;
  return {
    successes: runs.filter((r) => r.final?.status === "SUCCESS").length,
    failures: runs.filter((r) => r.final?.status === "FAILURE").length,
    storedNeverAnswered,
    retried: runs.filter((r) => r.retries > 0).length,
  };
}

describe("scale: three Node-RED instances, one PostgreSQL registry, HAProxy in front", function () {
  let fleet: Fleet;
  before(async function () {
    if (!postgresBin() || !haproxyPresent()) {
      console.warn(!postgresBin() ? POSTGRES_MISSING : HAPROXY_MISSING);
      this.skip();
    }
    fleet = await startFleet({ instances: 3, repeatWindowS: 0, proxyProtocol: true });
  });
  after(async () => {
    await fleet?.stop();
  });

  /** SIGKILL, HAProxy sees it DOWN, started again, HAProxy sees it UP. */
  const killAndRestart = async (victim: FleetInstance) => {
    const from = fleet.haproxyLog().length;
    await victim.kill();
    await fleet.serverState(victim.index, "DOWN", from);
    const back = fleet.haproxyLog().length;
    await victim.start();
    await fleet.serverState(victim.index, "UP", back);
  };

  const report = (what: string, v: Verdict) =>
    console.log(
      `      ${what}: ${v.successes} SUCCESS, ${v.failures} FAILURE (already provisioned), ` +
        `${v.retried} devices retried, ${v.storedNeverAnswered} stored but never answered`,
    );

  it("an instance killed with SIGKILL mid-storm and started again: one credential per name, nobody gave up", async () => {
    const victim = fleet.instances[1]!;
    const runs = await storm(fleet, "kill", () => killAndRestart(victim));
    const v = await check(fleet, "kill", runs);
    report("repeat window off", v);
    // Without the window the pair's second device is told "already provisioned"; an answer
    // lost with the killed instance is then never given again, which the count shows.
    assert.ok(v.successes >= NAMES - v.storedNeverAnswered);
  });

  it("the same with the repeat window on: a retried request gets its credentials again, none is left unanswered", async () => {
    await fleet.redeploy({ instances: 3, repeatWindowS: 120, proxyProtocol: true });
    const victim = fleet.instances[2]!;
    const runs = await storm(fleet, "window", () => killAndRestart(victim));
    const v = await check(fleet, "window", runs);
    report("repeat window on", v);
    assert.equal(v.storedNeverAnswered, 0);
    // Both devices of a pair send the same request, so both get the name's one credential.
    assert.equal(v.successes, NAMES * 2);
  });

  it("PostgreSQL killed with SIGKILL mid-storm and started again: devices wait it out, every SUCCESS is still stored", async () => {
    const runs = await storm(fleet, "pgkill", async () => {
      await fleet.pg.kill();
      await fleet.pg.start();
    });
    const v = await check(fleet, "pgkill", runs);
    report("PostgreSQL restarted", v);
    assert.equal(v.storedNeverAnswered, 0);
    // The instances came through: nothing in their logs says a store stayed broken.
    for (const inst of fleet.instances) {
      const lines = inst.log().split("\n");
      const at = lines.findIndex((l) => /Unhandled|uncaught/i.test(l));
      // The line and the stack after it, to say where it came from.
      assert.deepEqual(at < 0 ? [] : lines.slice(at, at + 25), [], "no unhandled error in an instance's log");
      // HAProxy checked every instance every 200 ms for the whole run, each check a
      // connection with a PROXY v2 LOCAL header: accepted, so never a refusal in the log.
      assert.deepEqual(
        lines.filter((l) => /PROXY protocol header/i.test(l)),
        [],
        "health checks are not refusals",
      );
    }
  });

  it("control: a connection straight to an instance, without the PROXY header, is refused and logged", async () => {
    const inst = fleet.instances[0]!;
    const seen = inst.logged(/no valid PROXY protocol header/);
    const sock = connect(inst.mqttPort, "127.0.0.1");
    sock.on("error", () => undefined);
    // An MQTT CONNECT where the header must come first.
    sock.write(Buffer.from([0x10, 0x10, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]));
    await Promise.all([once(sock, "close"), seen]);
  });
});
