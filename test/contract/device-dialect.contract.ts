/**
 * The device side's contract, written once and run against every DeviceDialect with its
 * own real peer (as MQTT.js runs one abstract client suite against every transport:
 * test/abstract_client.ts in mqttjs/MQTT.js). A registration (device-<dialect>.test.ts)
 * gives the dialect and a way to start a peer that answers success, a refusal, garbage,
 * nothing at all, or TLS with a certificate from a CA the device does not trust; the
 * behaviours below are then the same for every protocol, through the conductor every
 * device node uses (lib/client/conductor.ts).
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import type { ConnectionOptions } from "node:tls";
import { conduct, type ConductOptions } from "../../lib/client/conductor";
import type { DeviceDialect } from "../../lib/client/dialect";
import { ProvisioningError, type ErrorCode } from "../../lib/model/errors";
import type { ProvisioningResult } from "../../lib/model/result";
import { AbortedError } from "../../lib/retry/run";
import type { StoreBackend } from "../../lib/stores/backend";
import { MemoryBackend } from "../../lib/stores/memory";

export type PeerKind = "success" | "refusal" | "garbage" | "silence" | "tls-unknown-ca";

export interface ContractPeer<S> {
  /** The dialect's settings that point at this peer. */
  settings: S;
  /** TLS options the device uses with this peer (none: verification against the system CAs). */
  tls?: ConnectionOptions;
  /** Requests the peer has received so far. */
  requests: () => number;
  /** Resolves at the peer's next request. */
  nextRequest: () => Promise<void>;
  stop: () => Promise<void>;
}

export interface DeviceContractSubject<S, P> {
  /** "ThingsBoard over HTTP", ... */
  name: string;
  dialect: DeviceDialect<S, P>;
  /** A peer of this kind, listening on loopback. Kinds not in `kinds` are not asked for. */
  start: (kind: PeerKind) => Promise<ContractPeer<S>>;
  /** The kinds this peer can play (a transport without TLS leaves out "tls-unknown-ca"). */
  kinds: readonly PeerKind[];
  /** The neutral code and the peer's own word for the refusal peer's answer. */
  refusal: { code: ErrorCode; status?: string | number };
  /**
   * Whether the success peer answers every time, for the same identity too: then
   * "force" must end in a fresh result. A peer that refuses a second request for the
   * same device (ThingsBoard's "allow to create new devices" strategy) sets false.
   */
  answersAgain: boolean;
  /**
   * Makes `identity` known to the success and refusal peers before it is used, where the
   * protocol needs the operator to do so first (Mainflux: a configuration is uploaded).
   */
  enrol?: (identity: string) => Promise<void>;
  /**
   * The identity the dialect accepts for a name the suite makes up, where a dialect's
   * identity has a form of its own (plgd DPS: a device id is a UUID). Default: the name.
   */
  identityOf?: (name: string) => string;
}

/** A short, fixed schedule: retries without waiting the dialog's seconds. */
const FAST = { intervals: [0.01], jitter: 0, maxAttempts: 3 };

let serial = 0;

/** Runs the device-side contract against one dialect and its peer. */
export function deviceDialectContract<S, P>(subject: DeviceContractSubject<S, P>): void {
  const has = (k: PeerKind) => subject.kinds.includes(k);
  const id = (name: string) => (subject.identityOf ? subject.identityOf(name) : name);

  describe(`device dialect contract: ${subject.name}`, () => {
    const peers = new Map<PeerKind, ContractPeer<S>>();

    before(async () => {
      for (const k of subject.kinds) peers.set(k, await subject.start(k));
    });

    after(async () => {
      for (const p of peers.values()) await p.stop();
    });

    const peer = (k: PeerKind) => peers.get(k) as ContractPeer<S>;

    async function run(
      k: PeerKind,
      over: Partial<ConductOptions> = {},
    ): Promise<Awaited<ReturnType<typeof conduct>>> {
      const p = peer(k);
      const identity = over.identity ?? { setting: id(`contract-${process.pid}-${++serial}`) };
      const name = typeof identity.message === "string" ? identity.message : identity.setting;
      if (name && subject.enrol) await subject.enrol(name);
      return conduct(subject.dialect, p.settings, {
        env: () => undefined,
        policy: FAST,
        timeoutMs: 5000,
        tls: p.tls,
        signal: new AbortController().signal,
        ...over,
        identity,
      });
    }

    async function failure(promise: Promise<unknown>): Promise<ProvisioningError> {
      try {
        await promise;
      } catch (err) {
        assert.ok(err instanceof ProvisioningError, `a ProvisioningError, not ${String(err)}`);
        return err;
      }
      assert.fail("resolved where it should have failed");
    }

    function assertNeutral(r: ProvisioningResult, identity: string): void {
      assert.equal(r.dialect, subject.dialect.id);
      assert.equal(typeof r.endpoint, "string");
      assert.ok(r.endpoint.length > 0);
      assert.ok(r.device.name === identity || r.device.id === identity, JSON.stringify(r.device));
      assert.equal(typeof r.proof, "string");
      assert.equal(typeof r.credentials.type, "string");
      assert.equal(typeof r.configuration, "object");
      assert.ok(!Number.isNaN(Date.parse(r.obtainedAt)), r.obtainedAt);
    }

    it("success: a result with dialect == id in the neutral shape, not reused", async () => {
      const identity = id(`contract-ok-${++serial}`);
      const out = await run("success", { identity: { setting: identity } });
      assertNeutral(out.result, identity);
      assert.equal(out.result.reused, false);
      assert.equal(out.identity, identity);
      assert.equal(out.storeKey, `${subject.dialect.id}/${identity}`);
    });

    it("the message's identity overrides the dialog's", async () => {
      const identity = id(`contract-msg-${++serial}`);
      const out = await run("success", { identity: { message: identity, setting: id("from-dialog") } });
      assert.equal(out.identity, identity);
      assertNeutral(out.result, identity);
    });

    it("a refusal is final, with the neutral code and the peer's word, and is not retried", async () => {
      const before = peer("refusal").requests();
      let attempts = 0;
      const e = await failure(run("refusal", { hooks: { onAttempt: () => attempts++ } }));
      assert.equal(e.code, subject.refusal.code, e.message);
      assert.equal(e.final, true);
      if (subject.refusal.status !== undefined) assert.equal(e.status, subject.refusal.status);
      assert.equal(attempts, 1);
      assert.equal(peer("refusal").requests() - before, 1);
    });

    it("garbage is a final INVALID_ANSWER", async () => {
      let attempts = 0;
      const e = await failure(run("garbage", { hooks: { onAttempt: () => attempts++ } }));
      assert.equal(e.code, "INVALID_ANSWER", e.message);
      assert.equal(e.final, true);
      assert.equal(attempts, 1);
    });

    it("a silent peer ends in TIMEOUT, which is retried", async () => {
      const before = peer("silence").requests();
      const retried: string[] = [];
      const e = await failure(
        run("silence", {
          timeoutMs: 300,
          policy: { intervals: [0.01], jitter: 0, maxAttempts: 2 },
          hooks: { onRetry: ({ error }) => retried.push((error as ProvisioningError).code) },
        }),
      );
      assert.equal(e.code, "TIMEOUT", e.message);
      assert.equal(e.final, false);
      assert.deepEqual(retried, ["TIMEOUT"]);
      assert.equal(peer("silence").requests() - before, 2, "both attempts reached the peer");
    });

    if (has("tls-unknown-ca")) {
      it("a certificate from an unknown CA is a final TLS failure, after one attempt", async () => {
        let attempts = 0;
        const e = await failure(run("tls-unknown-ca", { hooks: { onAttempt: () => attempts++ } }));
        assert.equal(e.code, "TLS", e.message);
        assert.equal(e.final, true);
        assert.equal(attempts, 1);
        assert.equal(peer("tls-unknown-ca").requests(), 0, "nothing was sent before the handshake");
      });
    }

    it("abort stops an attempt that waits for an answer (AbortedError, no retry)", async () => {
      const ac = new AbortController();
      const asked = peer("silence").nextRequest();
      // An attempt time of an hour and forever retries: only the abort can end this run.
      const pending = run("silence", {
        timeoutMs: 3_600_000,
        policy: { intervals: [3600], jitter: 0, maxAttempts: -1 },
        signal: ac.signal,
      });
      await asked;
      ac.abort();
      await assert.rejects(pending, AbortedError);
    });

    it("reuse: a second run with a store reuses the result and does not touch the peer", async () => {
      const store = new MemoryBackend();
      const identity = id(`contract-reuse-${++serial}`);
      const first = await run("success", { identity: { setting: identity }, store });
      assert.equal(first.result.reused, false);
      const before = peer("success").requests();
      const second = await run("success", { identity: { setting: identity }, store });
      assert.equal(second.result.reused, true);
      assert.deepEqual(second.result.credentials, first.result.credentials);
      assert.equal(peer("success").requests(), before, "the peer was not asked");
    });

    it("force asks the peer again although a stored result exists", async () => {
      const store = new MemoryBackend();
      const identity = id(`contract-force-${++serial}`);
      await run("success", { identity: { setting: identity }, store });
      const before = peer("success").requests();
      const forced = run("success", { identity: { setting: identity }, store, force: true });
      if (subject.answersAgain) {
        const out = await forced;
        assert.equal(out.result.reused, false);
        assert.equal((await store.get(out.storeKey))?.meta.obtainedAt, out.result.obtainedAt);
      } else {
        await forced.catch(() => undefined);
      }
      assert.equal(peer("success").requests() - before, 1, "the peer was asked again");
    });

    it("a store that cannot save gives storeError beside the result", async () => {
      const failing: StoreBackend = new MemoryBackend();
      failing.set = () => Promise.reject(Object.assign(new Error("disk full"), { code: "IO" }));
      const out = await run("success", { store: failing });
      assert.equal(out.result.reused, false);
      assert.equal(out.storeError?.code, "IO");
      assert.match(out.storeError?.message ?? "", /disk full/);
    });

    it("settings that cannot work fail with CONFIG before any byte is sent", async () => {
      const before = peer("success").requests();
      const e = await failure(run("success", { policy: { intervals: [], jitter: 0, maxAttempts: 1 } }));
      assert.equal(e.code, "CONFIG");
      assert.equal(peer("success").requests(), before);
    });
  });
}
