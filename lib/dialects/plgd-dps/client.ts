/**
 * The long-running plgd DPS device: what plgd's client library does around the
 * provisioning run (run.ts). It keeps the status mask and reports every change, retries as
 * plgd does (plgd-dev/doc, "Retry mechanism": each schedule value is the step's timeout;
 * wait t/2 + random[0, t/2) before a retry; the next endpoint once the schedule is
 * exhausted; a full re-provision after a failure or after three transient failures in a
 * row; never giving up), renews the identity certificate at 2/3 of its validity, resets to
 * factory state on request, and keeps its result in a credential store so that a restart
 * resumes. Time is injectable.
 *
 * Every start begins a new run with its own AbortController; stop and factory reset abort
 * it. Everything a run changes lives in that run's object, and nothing it does after an
 * await happens once its signal is aborted, so a stopped run cannot reach a new one.
 */
import { randomUUID, X509Certificate } from "node:crypto";
import type { ProvisioningResult } from "../../model/result";
import { retryDelayMs, validateRetryPolicy, type RetryPolicy } from "../../retry/policy";
import type { StoreBackend } from "../../stores/backend";
import { splitCertificates } from "../../pki/pem";
import { certificateState, DEFAULT_EXPIRING_LIMIT_S, renewalDelayMs } from "../../pki/validity";
import { resultFromStored, saveResult, storeKeyFor } from "../../client/reuse";
import { setLongTimeout, systemTimerClock, type LongTimer, type TimerClock } from "../../util/long-timer";
import { DpsStepError, errorInfo, type DpsErrorInfo } from "./errors";
import { UUID_RE, type Gateway } from "./ocf";
import { buildResult } from "./result";
import { missingSteps, provisionOnce, RunAborted, type DpsAnswers } from "./run";
import {
  DpsFlag,
  ERROR_FLAGS,
  PROVISIONED_MASK,
  STEP_FLAGS,
  flagNames,
  legacyMask,
  type DpsFlagName,
  type DpsStep,
} from "./status";
import type { DpsConnector } from "./transport";

export type Clock = TimerClock;

export const systemClock: Clock = systemTimerClock;

export type DpsPhase = DpsStep | "start" | "provisioned" | "renew" | "reset" | "stopped";

export interface DpsStatusEvent {
  status: DpsFlagName[];
  mask: number;
  /** The same state in the numbering of plgd's first DPS client library (0.0.1). */
  legacyMask: number;
  step: DpsPhase;
  endpoint?: string;
  deviceId?: string;
  /** Set while waiting to retry. */
  retryInMs?: number;
  error?: DpsErrorInfo;
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

const HAS_ALL = PROVISIONED_MASK & ~DpsFlag.INITIALIZED;

function isUuid(v: unknown): v is string {
  return typeof v === "string" && UUID_RE.test(v);
}

/** Everything one run (one start) changes. */
class Run {
  readonly ac = new AbortController();
  mask = 0;
  retryCount = 0;
  endpointIndex = 0;
  transientCount = 0;
  /** DPS time minus local time, from the last time step. */
  timeOffsetMs = 0;
  answers: DpsAnswers = {};
  di?: string;
  current?: ProvisioningResult;
  lastError?: DpsErrorInfo;
  timer?: LongTimer;
  /** The attempt under way, awaited by stop so that no socket outlives it. */
  inFlight?: Promise<void>;

  get stopped(): boolean {
    return this.ac.signal.aborted;
  }
}

export class DpsClient {
  private readonly opts: DpsClientOptions;
  private readonly clock: Clock;
  private readonly policy: RetryPolicy;
  private readonly key: string;
  /** The current run, or the blank state a factory reset left; never undefined after start. */
  private run = new Run();

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
    this.key = opts.storeKey ?? storeKeyFor("plgd-dps", opts.deviceId || "device");
  }

  get status(): DpsFlagName[] {
    return flagNames(this.run.mask);
  }

  get statusMask(): number {
    return this.run.mask;
  }

  get deviceId(): string | undefined {
    return this.run.di;
  }

  get result(): ProvisioningResult | undefined {
    return this.run.current;
  }

  get endpoint(): string {
    return this.endpointOf(this.run);
  }

  private endpointOf(run: Run): string {
    return this.opts.endpoints[run.endpointIndex];
  }

  /** Time as the DPS service told it (plgd validates certificates by it). */
  private dpsNow(run: Run): number {
    return this.clock.now() + run.timeOffsetMs;
  }

  private limit(): number {
    return this.opts.expiringLimitS ?? DEFAULT_EXPIRING_LIMIT_S;
  }

  /**
   * Loads what the store keeps and either reuses a valid result, renews an expiring one,
   * or provisions. Rejects (and starts nothing) when the store cannot be read.
   */
  async start(): Promise<void> {
    this.abort(this.run);
    const run = new Run();
    this.run = run;
    const stored = await this.load(run);
    if (run.stopped) return;
    run.mask = DpsFlag.INITIALIZED;
    if (stored) {
      run.current = stored;
      const leaf = splitCertificates(stored.credentials.certificate)[0];
      const state = leaf
        ? certificateState(
            new Date(new X509Certificate(leaf).validFrom),
            new Date(stored.expiresAt ?? 0),
            this.dpsNow(run),
            this.limit(),
          )
        : "expired";
      if (state === "valid") {
        run.mask |= HAS_ALL | DpsFlag.CLOUD_STARTED;
        this.emit(run, "provisioned");
        this.opts.onResult?.({ ...stored, reused: true });
        this.scheduleRenewal(run);
        return;
      }
      if (state === "expiring") {
        run.mask |= HAS_ALL | DpsFlag.RENEW_CREDENTIALS;
        this.emit(run, "renew");
        this.schedule(run, 0);
        return;
      }
    }
    this.emit(run, "start");
    this.schedule(run, 0);
  }

  /** Stops timers and the connection; what is stored stays. */
  async stop(): Promise<void> {
    const run = this.run;
    this.abort(run);
    await run.inFlight;
  }

  /** plgd_dps_on_factory_reset: everything stored is cleared and provisioning starts over. */
  async factoryReset(): Promise<void> {
    await this.stop();
    const blank = new Run();
    this.run = blank;
    if (this.opts.store) await this.opts.store.delete(this.key);
    this.emit(blank, "reset");
    await this.start();
  }

  private abort(run: Run): void {
    run.ac.abort();
    run.timer?.cancel();
    run.timer = undefined;
  }

  /** The device id (configured, else stored, else new and stored) and a stored result for it. */
  private async load(run: Run): Promise<ProvisioningResult | undefined> {
    const configured = this.opts.deviceId ? this.opts.deviceId.toLowerCase() : undefined;
    const store = this.opts.store;
    const entry = store ? await store.get(this.key) : undefined;
    const value = entry?.value as Record<string, unknown> | undefined;
    const device =
      value && typeof value.device === "object" && value.device !== null
        ? (value.device as { id?: unknown })
        : undefined;
    const storedDi = isUuid(device?.id) ? device.id.toLowerCase() : undefined;
    run.di = configured ?? storedDi ?? randomUUID();
    if (store && !storedDi)
      await store.set(this.key, { device: { id: run.di } }, { protocol: "plgd-dps", kind: "device-id" });
    if (!entry || !value || storedDi !== run.di) return undefined;
    const creds = value.credentials as { type?: unknown; certificate?: unknown } | undefined;
    if (
      value.dialect !== "plgd-dps" ||
      creds?.type !== "IDENTITY_CERTIFICATE" ||
      typeof creds.certificate !== "string"
    )
      return undefined;
    return resultFromStored(entry.value, {
      dialect: "plgd-dps",
      endpoint: this.endpointOf(run),
      deviceName: this.opts.deviceName ?? "",
      obtainedAt: entry.meta.obtainedAt,
    });
  }

  private emit(run: Run, step: DpsPhase, extra: { retryInMs?: number } = {}): void {
    if (run.stopped) return;
    const e: DpsStatusEvent = {
      status: flagNames(run.mask),
      mask: run.mask,
      legacyMask: legacyMask(run.mask),
      step,
      endpoint: this.endpointOf(run),
    };
    if (run.di) e.deviceId = run.di;
    if (extra.retryInMs !== undefined) e.retryInMs = extra.retryInMs;
    if (run.lastError && (run.mask & ERROR_FLAGS) !== 0) e.error = run.lastError;
    try {
      this.opts.onStatus?.(e);
    } catch {
      // a listener's failure must not stop provisioning
    }
  }

  /**
   * The next attempt after `ms`. Every wait of the client goes through setLongTimeout: a
   * renewal follows the certificate's lifetime (243 days for a year-long one), beyond what
   * setTimeout takes.
   */
  private schedule(run: Run, ms: number, before?: () => void, unref = false): void {
    run.timer?.cancel();
    run.timer = setLongTimeout(
      () => {
        run.timer = undefined;
        if (run.stopped) return;
        before?.();
        run.inFlight = this.attempt(run);
      },
      ms,
      { clock: this.clock, unref },
    );
  }

  /** One provisioning run (or a renewal's credentials step), then its outcome. */
  private async attempt(run: Run): Promise<void> {
    const renewing = (run.mask & DpsFlag.RENEW_CREDENTIALS) !== 0;
    // A renewal asks for credentials only; the rest of the result stays.
    const answers: DpsAnswers = renewing ? { timeOffsetMs: run.timeOffsetMs } : run.answers;
    const steps: DpsStep[] = renewing ? ["credentials"] : missingSteps(answers);
    const prev = run.current?.configuration;
    const selectedGateway: Gateway | undefined =
      prev?.servers?.[0]?.uri && prev.hubId ? { uri: prev.servers[0].uri, id: prev.hubId } : undefined;
    try {
      await provisionOnce({
        connect: this.opts.connect,
        endpoint: this.endpointOf(run),
        deviceId: run.di as string,
        steps,
        answers,
        selectedGateway,
        signal: run.ac.signal,
        stepTimeoutMs: () => this.policy.intervals[run.retryCount] * 1000,
        expiringLimitS: this.limit(),
        clock: this.clock,
        onStep: (step, phase) => this.stepChanged(run, step, phase, renewing),
      });
    } catch (err) {
      if (run.stopped || err instanceof RunAborted) return;
      return this.failed(run, err as DpsStepError, renewing);
    }
    if (run.stopped) return;
    let result: ProvisioningResult;
    try {
      result = buildResult(answers, {
        endpoint: this.endpointOf(run),
        deviceId: run.di as string,
        deviceName: this.opts.deviceName,
        obtainedAt: this.clock.now(),
        previous: renewing ? run.current : undefined,
      });
    } catch (err) {
      run.mask &= ~HAS_ALL;
      run.answers = {};
      const e = new DpsStepError("INTERNAL", "START_CLOUD", (err as Error).message, { final: true });
      e.step = "time";
      return this.failed(run, e, false);
    }
    await this.save(result);
    if (run.stopped) return;
    // Every step done: hand over (plgd closes the DPS connection and starts the cloud).
    run.current = result;
    run.mask = (run.mask & ~DpsFlag.RENEW_CREDENTIALS) | DpsFlag.CLOUD_STARTED | HAS_ALL;
    this.emit(run, "provisioned");
    this.opts.onResult?.(result);
    this.scheduleRenewal(run);
  }

  private stepChanged(run: Run, step: DpsStep, phase: "get" | "has", renewing: boolean): void {
    if (run.stopped) return;
    const flags = STEP_FLAGS[step];
    if (phase === "get") {
      run.mask = (run.mask | flags.get) & ~ERROR_FLAGS;
      this.emit(run, step);
      return;
    }
    run.mask = (run.mask | flags.has) & ~flags.get & ~ERROR_FLAGS;
    run.retryCount = 0;
    run.transientCount = 0;
    run.lastError = undefined;
    if (step === "time" && run.answers.timeOffsetMs !== undefined)
      run.timeOffsetMs = run.answers.timeOffsetMs;
    // A renewal reports "provisioned" once the new certificate is saved.
    if (!renewing) this.emit(run, step);
  }

  private async save(result: ProvisioningResult): Promise<void> {
    const store = this.opts.store;
    if (!store) return;
    try {
      await saveResult(store, this.key, result);
    } catch (err) {
      this.opts.onWarning?.(err as Error);
    }
  }

  private failed(run: Run, e: DpsStepError, renewing: boolean): void {
    const step = e.step ?? "time";
    run.mask &= ~STEP_FLAGS[step].get;
    let reprovision = false;
    if (e.transient) {
      run.mask |= DpsFlag.TRANSIENT_FAILURE;
      if (++run.transientCount >= MAX_TRANSIENT_FAILURES) {
        run.transientCount = 0;
        reprovision = true;
      }
    } else {
      run.mask |= DpsFlag.FAILURE;
      reprovision = true;
    }
    if (renewing) {
      // A renewal keeps the device provisioned while its certificate lasts.
      reprovision = this.dpsNow(run) > new Date(run.current?.expiresAt ?? 0).getTime();
      if (reprovision) run.mask &= ~(DpsFlag.RENEW_CREDENTIALS | DpsFlag.CLOUD_STARTED);
    }
    if (reprovision) {
      run.mask &= ~HAS_ALL;
      run.answers = {};
    }
    run.lastError = errorInfo(e);
    let delay = e.timedOut ? 0 : (retryDelayMs(this.policy, run.retryCount + 1, this.opts.random) as number);
    // A throttling service (5.03 with Max-Age) is asked again no sooner than it said.
    if (e.retryAfterMs !== undefined) delay = Math.max(delay, e.retryAfterMs);
    this.emit(run, renewing && !reprovision ? "renew" : step, { retryInMs: delay });
    this.schedule(run, delay, () => {
      run.retryCount++;
      if (run.retryCount >= this.policy.intervals.length) {
        run.retryCount = 0;
        run.endpointIndex = (run.endpointIndex + 1) % this.opts.endpoints.length;
      }
    });
  }

  /** Renewal at 2/3 of the remaining validity (sooner near the end), as plgd schedules it. */
  private scheduleRenewal(run: Run): void {
    const delay = renewalDelayMs(new Date(run.current?.expiresAt ?? 0), this.dpsNow(run), this.limit());
    // Unref'd: a wait of months must not be what keeps a process alive.
    this.schedule(
      run,
      delay,
      () => {
        run.retryCount = 0;
        run.mask |= DpsFlag.RENEW_CREDENTIALS;
        this.emit(run, "renew");
      },
      true,
    );
  }
}
