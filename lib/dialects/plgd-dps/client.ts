/**
 * The plgd DPS device side as a step machine: time, ownership, cloud configuration,
 * credentials (a CSR made here; the key never leaves), ACLs. Retries as plgd does (each
 * schedule value is the step's timeout; wait t/2 + random[0, t/2) before a retry; the next
 * endpoint when the list is exhausted; full re-provision after a failure or after three
 * transient failures in a row), renews the identity certificate at 2/3 of its validity,
 * and keeps its result in a credential store so a restart resumes. Time is injectable.
 */
import { randomUUID, X509Certificate, createPrivateKey } from "node:crypto";
import type { Configuration, Endpoint, ProvisioningResult } from "../../model/result";
import { retryDelayMs, validateRetryPolicy, type RetryPolicy } from "../../retry/policy";
import type { JsonValue, StoreBackend } from "../../stores/backend";
import { createKeyAndCsr } from "../../pki/csr";
import { splitCertificates } from "../../pki/pem";
import { certificateState, DEFAULT_EXPIRING_LIMIT_S, renewalDelayMs } from "../../pki/validity";
import {
  CREDTYPE_SYMMETRIC_PAIR_WISE,
  CREDUSAGE_CERT,
  CREDUSAGE_TRUST_CA,
  OcfFormatError,
  UUID_RE,
  type Acl2Rep,
  type CloudConfRep,
  type CredRep,
  type Gateway,
} from "./ocf";
import {
  DpsErrorCode,
  DpsFlag,
  DpsStepError,
  ERROR_FLAGS,
  PROVISIONED_MASK,
  STEP_FLAGS,
  flagNames,
  legacyMask,
  nextStep,
  type DpsErrorName,
  type DpsFlagName,
  type DpsStep,
} from "./status";
import { getAcls, getCloudConfiguration, getCredentials, getOwner, getTime, type Send } from "./steps";
import type { DpsConnector, DpsTransport } from "./transport";
import { setLongTimeout, systemTimerClock, type LongTimer, type TimerClock } from "../../util/long-timer";

export type Clock = TimerClock;

export const systemClock: Clock = systemTimerClock;

export type DpsPhase = DpsStep | "start" | "provisioned" | "renew" | "reset" | "stopped";

export interface DpsStatusEvent {
  status: DpsFlagName[];
  mask: number;
  /** The same state in seed 001's older numbering. */
  legacyMask: number;
  step: DpsPhase;
  endpoint?: string;
  deviceId?: string;
  /** Set while waiting to retry. */
  retryInMs?: number;
  error?: { code: number; name: DpsErrorName; message: string; coapCode?: string; transient: boolean };
}

export interface DpsClientOptions {
  /** coaps+tcp:// URIs, tried in order. */
  endpoints: string[];
  connect: DpsConnector;
  /** A UUID; otherwise one is generated once and kept in the store. */
  deviceId?: string;
  deviceName?: string;
  store?: StoreBackend;
  storeKey?: string;
  /** Seconds, 1 to 8 values. Default 10, 20, 40, 80, 120. */
  retryIntervals?: number[];
  /** A certificate expiring within this many seconds is requested again. Default 3600. */
  expiringLimitS?: number;
  clock?: Clock;
  random?: () => number;
  onStatus?: (e: DpsStatusEvent) => void;
  onResult?: (r: ProvisioningResult) => void;
  /** Problems that do not stop provisioning (a failed store write). */
  onWarning?: (err: Error & { code?: string }) => void;
}

/** Consecutive transient failures that force a full re-provision (plgd). */
export const MAX_TRANSIENT_FAILURES = 3;

interface Partial {
  owner?: string;
  cloud?: CloudConfRep;
  creds?: { chain: string; privateKey: string; caCertificates: string[]; psk?: string; notAfter: Date };
  acls?: Acl2Rep;
}

const HAS_ALL = PROVISIONED_MASK & ~DpsFlag.INITIALIZED;

function isUuid(v: unknown): v is string {
  return typeof v === "string" && UUID_RE.test(v);
}

export class DpsClient {
  private readonly opts: DpsClientOptions;
  private readonly clock: Clock;
  private readonly policy: RetryPolicy;
  private readonly key: string;
  private mask = 0;
  private retryCount = 0;
  private endpointIndex = 0;
  private transientCount = 0;
  private gen = 0;
  private timer: LongTimer | undefined;
  private ac = new AbortController();
  private transport?: DpsTransport;
  private partial: Partial = {};
  private timeOffsetMs = 0;
  private di?: string;
  private current?: ProvisioningResult;
  private lastError?: DpsStatusEvent["error"];

  constructor(opts: DpsClientOptions) {
    if (!opts.endpoints?.length)
      throw new Error("at least one DPS endpoint (coaps+tcp://host:port) is required");
    if (opts.deviceId !== undefined && opts.deviceId !== "" && !isUuid(opts.deviceId))
      throw new Error("the device id must be a UUID");
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.policy = validateRetryPolicy({
      intervals: opts.retryIntervals ?? [10, 20, 40, 80, 120],
      jitter: 0.5,
      maxAttempts: -1,
    });
    this.key = opts.storeKey ?? `plgd-dps/${opts.deviceId || "device"}`;
  }

  get status(): DpsFlagName[] {
    return flagNames(this.mask);
  }

  get statusMask(): number {
    return this.mask;
  }

  get deviceId(): string | undefined {
    return this.di;
  }

  get result(): ProvisioningResult | undefined {
    return this.current;
  }

  get endpoint(): string {
    return this.opts.endpoints[this.endpointIndex];
  }

  /** Time as the DPS service told it (plgd validates certificates by it). */
  private dpsNow(): number {
    return this.clock.now() + this.timeOffsetMs;
  }

  /**
   * Loads what the store keeps and either reuses a valid result, renews an expiring one,
   * or provisions. Rejects (and starts nothing) when the store cannot be read.
   */
  async start(): Promise<void> {
    const gen = ++this.gen;
    this.ac = new AbortController();
    const stored = await this.load();
    if (gen !== this.gen) return;
    this.mask = DpsFlag.INITIALIZED;
    if (stored) {
      this.current = stored;
      const notAfter = new Date(stored.expiresAt ?? 0);
      const leaf = splitCertificates(stored.credentials.certificate)[0];
      const state = leaf
        ? certificateState(
            new Date(new X509Certificate(leaf).validFrom),
            notAfter,
            this.dpsNow(),
            this.limit(),
          )
        : "expired";
      if (state === "valid") {
        this.mask |= HAS_ALL | DpsFlag.CLOUD_STARTED;
        this.emit("provisioned");
        this.opts.onResult?.({ ...stored, reused: true });
        this.scheduleRenewal(gen);
        return;
      }
      if (state === "expiring") {
        this.mask |= HAS_ALL | DpsFlag.RENEW_CREDENTIALS;
        this.emit("renew");
        this.schedule(gen, 0);
        return;
      }
    }
    this.emit("start");
    this.schedule(gen, 0);
  }

  /** Stops timers and the connection; what is stored stays. */
  async stop(): Promise<void> {
    this.gen++;
    this.clearTimer();
    this.ac.abort();
    await this.closeTransport();
  }

  /** plgd_dps_on_factory_reset: everything stored is cleared and provisioning starts over. */
  async factoryReset(): Promise<void> {
    await this.stop();
    this.mask = 0;
    this.partial = {};
    this.current = undefined;
    this.lastError = undefined;
    this.retryCount = 0;
    this.transientCount = 0;
    this.endpointIndex = 0;
    this.timeOffsetMs = 0;
    this.di = undefined;
    if (this.opts.store) await this.opts.store.delete(this.key);
    this.emit("reset");
    await this.start();
  }

  private limit(): number {
    return this.opts.expiringLimitS ?? DEFAULT_EXPIRING_LIMIT_S;
  }

  private async load(): Promise<ProvisioningResult | undefined> {
    const configured = this.opts.deviceId ? this.opts.deviceId.toLowerCase() : undefined;
    const store = this.opts.store;
    const entry = store ? await store.get(this.key) : undefined;
    const value = entry?.value as Record<string, unknown> | undefined;
    const device =
      value && typeof value.device === "object" && value.device !== null
        ? (value.device as { id?: unknown })
        : undefined;
    const storedDi = isUuid(device?.id) ? device.id.toLowerCase() : undefined;
    this.di = configured ?? storedDi ?? randomUUID();
    if (store && !storedDi)
      await store.set(this.key, { device: { id: this.di } }, { protocol: "plgd-dps", kind: "device-id" });
    if (!value || storedDi !== this.di) return undefined;
    const creds = value.credentials as { type?: unknown; certificate?: unknown } | undefined;
    if (
      value.dialect !== "plgd-dps" ||
      creds?.type !== "IDENTITY_CERTIFICATE" ||
      typeof creds.certificate !== "string"
    )
      return undefined;
    return value as unknown as ProvisioningResult;
  }

  private emit(step: DpsPhase, extra: { retryInMs?: number } = {}): void {
    const e: DpsStatusEvent = {
      status: flagNames(this.mask),
      mask: this.mask,
      legacyMask: legacyMask(this.mask),
      step,
      endpoint: this.endpoint,
    };
    if (this.di) e.deviceId = this.di;
    if (extra.retryInMs !== undefined) e.retryInMs = extra.retryInMs;
    if (this.lastError && (this.mask & ERROR_FLAGS) !== 0) e.error = this.lastError;
    try {
      this.opts.onStatus?.(e);
    } catch {
      // a listener's failure must not stop provisioning
    }
  }

  private clearTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /**
   * Every wait of the client goes through setLongTimeout: a renewal follows the
   * certificate's lifetime (243 days for a year-long one), beyond what setTimeout takes.
   */
  private schedule(gen: number, ms: number, before?: () => void): void {
    this.clearTimer();
    this.timer = setLongTimeout(
      () => {
        this.timer = undefined;
        if (gen !== this.gen) return;
        before?.();
        void this.tick(gen);
      },
      ms,
      { clock: this.clock },
    );
  }

  private async closeTransport(): Promise<void> {
    const t = this.transport;
    this.transport = undefined;
    if (t) await t.close().catch(() => undefined);
  }

  private timeoutMs(): number {
    return this.policy.intervals[this.retryCount] * 1000;
  }

  /** Races `p` against the step timeout on the injected clock. */
  private withTimeout<T>(p: Promise<T>, ms: number, ac: AbortController): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const h = this.clock.setTimeout(() => {
        ac.abort();
        reject(new DpsStepError(true, "CONNECT", `no answer within ${ms / 1000} s`, undefined, true));
      }, ms);
      p.then(
        (v) => {
          this.clock.clearTimeout(h);
          resolve(v);
        },
        (e: unknown) => {
          this.clock.clearTimeout(h);
          reject(e);
        },
      );
    });
  }

  private async tick(gen: number): Promise<void> {
    const renewing = (this.mask & DpsFlag.RENEW_CREDENTIALS) !== 0;
    const step = renewing ? "credentials" : nextStep(this.mask);
    if (!step) return this.finish(gen);
    const flags = STEP_FLAGS[step];
    const ms = this.timeoutMs();
    this.mask = (this.mask | flags.get) & ~ERROR_FLAGS;
    this.emit(step);
    const stepAc = new AbortController();
    const onAbort = () => stepAc.abort();
    this.ac.signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (!this.transport) {
        this.transport = await this.withTimeout(
          this.opts.connect(this.endpoint, { timeoutMs: ms, signal: stepAc.signal }),
          ms,
          stepAc,
        );
        if (gen !== this.gen) {
          await this.closeTransport();
          return;
        }
      }
      const t = this.transport;
      const send: Send = (req) =>
        this.withTimeout(t.request(req, { timeoutMs: ms, signal: stepAc.signal }), ms, stepAc);
      await this.runStep(step, send);
      if (gen !== this.gen) return;
      this.mask = (this.mask | flags.has) & ~flags.get & ~ERROR_FLAGS;
      this.retryCount = 0;
      this.transientCount = 0;
      this.lastError = undefined;
      if (renewing) return await this.renewed(gen);
      this.emit(step);
      this.schedule(gen, 0);
    } catch (err) {
      if (gen !== this.gen) return;
      await this.failed(gen, step, err, renewing);
    } finally {
      this.ac.signal.removeEventListener("abort", onAbort);
    }
  }

  private async runStep(step: DpsStep, send: Send): Promise<void> {
    const di = this.di as string;
    switch (step) {
      case "time": {
        const t = await getTime(send);
        this.timeOffsetMs = Date.parse(t.time) - this.clock.now();
        return;
      }
      case "owner":
        this.partial.owner = await getOwner(send);
        return;
      case "cloud": {
        const prev = this.current?.configuration;
        const selected: Gateway | undefined =
          prev?.servers?.[0]?.uri && prev.hubId ? { uri: prev.servers[0].uri, id: prev.hubId } : undefined;
        this.partial.cloud = await getCloudConfiguration(send, di, selected);
        return;
      }
      case "credentials": {
        const { privateKey, csr } = createKeyAndCsr(`uuid:${di}`);
        const rep = await getCredentials(send, di, csr);
        this.partial.creds = this.acceptCredentials(rep, privateKey, di);
        return;
      }
      case "acls":
        this.partial.acls = await getAcls(send);
        return;
    }
  }

  private acceptCredentials(rep: CredRep, privateKey: string, di: string): NonNullable<Partial["creds"]> {
    const fail = (msg: string) => new DpsStepError(false, "GET_CREDENTIALS", msg);
    const own = rep.creds.find(
      (c) => c.credusage === CREDUSAGE_CERT && c.subjectuuid.toLowerCase() === di && c.publicdata,
    );
    if (!own?.publicdata) throw fail("the answer holds no identity certificate for this device");
    const chain = splitCertificates(own.publicdata.data.toString());
    if (chain.length === 0) throw fail("the identity certificate is not PEM");
    const leaf = new X509Certificate(chain[0]);
    if (!leaf.checkPrivateKey(createPrivateKey(privateKey)))
      throw fail("the identity certificate is not for the key of this device's CSR");
    const notAfter = new Date(leaf.validTo);
    const state = certificateState(new Date(leaf.validFrom), notAfter, this.dpsNow(), this.limit());
    if (state !== "valid") throw fail(`valid certificates not found: the identity certificate is ${state}`);
    const caCertificates = rep.creds
      .filter((c) => c.credusage === CREDUSAGE_TRUST_CA && c.publicdata)
      .flatMap((c) => splitCertificates(c.publicdata?.data.toString()));
    const pskCred = rep.creds.find((c) => c.credtype === CREDTYPE_SYMMETRIC_PAIR_WISE && c.privatedata);
    const out: NonNullable<Partial["creds"]> = {
      chain: chain.join(""),
      privateKey,
      caCertificates,
      notAfter,
    };
    if (pskCred?.privatedata) out.psk = Buffer.from(pskCred.privatedata.data).toString("utf8");
    return out;
  }

  private classify(step: DpsStep, err: unknown): DpsStepError {
    if (err instanceof DpsStepError) return err;
    if (err instanceof OcfFormatError) return new DpsStepError(false, STEP_FLAGS[step].error, err.message);
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    return new DpsStepError(true, "CONNECT", message, undefined, code === "COAP_TIMEOUT");
  }

  private async failed(gen: number, step: DpsStep, err: unknown, renewing: boolean): Promise<void> {
    const e = this.classify(step, err);
    await this.closeTransport();
    if (gen !== this.gen) return;
    this.mask &= ~STEP_FLAGS[step].get;
    let reprovision = false;
    if (e.transient) {
      this.mask |= DpsFlag.TRANSIENT_FAILURE;
      if (++this.transientCount >= MAX_TRANSIENT_FAILURES) {
        this.transientCount = 0;
        reprovision = true;
      }
    } else {
      this.mask |= DpsFlag.FAILURE;
      reprovision = true;
    }
    if (renewing) {
      // A renewal keeps the device provisioned while its certificate lasts.
      const notAfter = new Date(this.current?.expiresAt ?? 0);
      reprovision = this.dpsNow() > notAfter.getTime();
      if (reprovision) this.mask &= ~(DpsFlag.RENEW_CREDENTIALS | DpsFlag.CLOUD_STARTED);
    }
    if (reprovision) {
      this.mask &= ~HAS_ALL;
      this.partial = {};
    }
    this.lastError = {
      code: DpsErrorCode[e.error],
      name: e.error,
      message: e.message,
      transient: e.transient,
    };
    if (e.coapCode) this.lastError.coapCode = e.coapCode;
    const delay = e.timedOut
      ? 0
      : (retryDelayMs(this.policy, this.retryCount + 1, this.opts.random) as number);
    this.emit(renewing && !reprovision ? "renew" : step, { retryInMs: delay });
    this.schedule(gen, delay, () => {
      this.retryCount++;
      if (this.retryCount >= this.policy.intervals.length) {
        this.retryCount = 0;
        this.endpointIndex = (this.endpointIndex + 1) % this.opts.endpoints.length;
      }
    });
  }

  private buildResult(): ProvisioningResult {
    const { owner, cloud, creds, acls } = this.partial;
    if (!owner || !cloud || !creds || !acls)
      throw new Error("provisioning finished without every step's answer");
    const servers: Endpoint[] = [{ uri: cloud.cis, id: cloud.sid }];
    for (const s of cloud["x.org.iotivity.servers"] ?? []) {
      if (!servers.some((x) => x.uri === s.uri && x.id === s.id)) servers.push({ uri: s.uri, id: s.id });
    }
    const configuration: Configuration = {
      owner,
      hubId: cloud.sid,
      servers,
      authorizationProvider: cloud.apn,
      acls: acls.aclist2,
    };
    const result: ProvisioningResult = {
      dialect: "plgd-dps",
      endpoint: this.endpoint,
      device: { id: this.di as string },
      proof: "manufacturer-certificate",
      credentials: {
        type: "IDENTITY_CERTIFICATE",
        certificate: creds.chain,
        privateKey: creds.privateKey,
        caCertificates: creds.caCertificates,
        token: cloud.at,
      },
      configuration,
      obtainedAt: new Date(this.clock.now()).toISOString(),
      expiresAt: creds.notAfter.toISOString(),
      reused: false,
    };
    if (this.opts.deviceName) result.device.name = this.opts.deviceName;
    if (creds.psk) result.credentials.password = creds.psk;
    return result;
  }

  private async save(result: ProvisioningResult): Promise<void> {
    const store = this.opts.store;
    if (!store) return;
    try {
      await store.set(this.key, { ...result, reused: false } as unknown as JsonValue, {
        protocol: "plgd-dps",
        endpoint: result.endpoint,
        obtainedAt: result.obtainedAt,
        expiresAt: result.expiresAt,
        kind: result.credentials.type,
      });
    } catch (err) {
      this.opts.onWarning?.(err as Error);
    }
  }

  /** Every step done: hand over (plgd closes the DPS connection and starts the cloud). */
  private async finish(gen: number): Promise<void> {
    let result: ProvisioningResult;
    try {
      result = this.buildResult();
    } catch (err) {
      this.mask &= ~HAS_ALL;
      return this.failed(gen, "time", new DpsStepError(false, "START_CLOUD", (err as Error).message), false);
    }
    await this.closeTransport();
    await this.save(result);
    if (gen !== this.gen) return;
    this.current = result;
    this.mask |= DpsFlag.CLOUD_STARTED;
    this.emit("provisioned");
    this.opts.onResult?.(result);
    this.scheduleRenewal(gen);
  }

  private async renewed(gen: number): Promise<void> {
    const creds = this.partial.creds;
    const prev = this.current;
    await this.closeTransport();
    if (!creds || !prev) return;
    const result: ProvisioningResult = {
      ...prev,
      endpoint: this.endpoint,
      credentials: {
        ...prev.credentials,
        certificate: creds.chain,
        privateKey: creds.privateKey,
        caCertificates: creds.caCertificates,
      },
      obtainedAt: new Date(this.clock.now()).toISOString(),
      expiresAt: creds.notAfter.toISOString(),
      reused: false,
    };
    if (creds.psk) result.credentials.password = creds.psk;
    await this.save(result);
    if (gen !== this.gen) return;
    this.current = result;
    this.mask = (this.mask & ~DpsFlag.RENEW_CREDENTIALS) | DpsFlag.CLOUD_STARTED | HAS_ALL;
    this.emit("provisioned");
    this.opts.onResult?.(result);
    this.scheduleRenewal(gen);
  }

  /** Renewal at 2/3 of the remaining validity (sooner near the end), as plgd schedules it. */
  private scheduleRenewal(gen: number): void {
    const notAfter = new Date(this.current?.expiresAt ?? 0);
    const delay = renewalDelayMs(notAfter, this.dpsNow(), this.limit());
    this.clearTimer();
    // Unref'd: a wait of months must not be what keeps a process alive.
    this.timer = setLongTimeout(
      () => {
        this.timer = undefined;
        if (gen !== this.gen) return;
        this.retryCount = 0;
        this.mask |= DpsFlag.RENEW_CREDENTIALS;
        this.emit("renew");
        void this.tick(gen);
      },
      delay,
      { clock: this.clock, unref: true },
    );
  }
}
