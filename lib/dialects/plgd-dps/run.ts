/**
 * One provisioning run of a plgd DPS device: the steps still missing, in plgd's order,
 * over one connection to one endpoint, each with its own deadline. The answers are kept in
 * `answers` as they arrive, so that a transient failure is retried from the failed step
 * (plgd-dev/doc, "Retry mechanism"); what to do after a failure is the caller's. An aborted
 * signal ends the run at its next step: nothing after an await runs once it is aborted.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createKeyAndCsr } from "../../pki/csr";
import { splitCertificates } from "../../pki/pem";
import { certificateState } from "../../pki/validity";
import type { TimerClock } from "../../util/long-timer";
import {
  CREDTYPE_SYMMETRIC_PAIR_WISE,
  CREDUSAGE_CERT,
  CREDUSAGE_TRUST_CA,
  type Acl2Rep,
  type CloudConfRep,
  type CredRep,
  type Gateway,
} from "./ocf";
import { invalidAnswer, stepFailure, stepTimeout } from "./errors";
import { STEP_ORDER, type DpsStep } from "./status";
import { getAcls, getCloudConfiguration, getCredentials, getOwner, getTime, type Send } from "./steps";
import type { DpsConnector, DpsTransport } from "./transport";

/** The identity certificate the service issued for this device's own key. */
export interface IssuedCredentials {
  /** PEM, leaf first. */
  chain: string;
  privateKey: string;
  caCertificates: string[];
  psk?: string;
  notAfter: Date;
}

/** Each step's answer, present once the step succeeded. */
export interface DpsAnswers {
  /** DPS time minus local time: plgd validates certificates by the service's clock. */
  timeOffsetMs?: number;
  owner?: string;
  cloud?: CloudConfRep;
  credentials?: IssuedCredentials;
  acls?: Acl2Rep;
}

const ANSWER_OF: Record<DpsStep, keyof DpsAnswers> = {
  time: "timeOffsetMs",
  owner: "owner",
  cloud: "cloud",
  credentials: "credentials",
  acls: "acls",
};

/** The steps a full provisioning still needs, in plgd's order. */
export function missingSteps(answers: DpsAnswers): DpsStep[] {
  return STEP_ORDER.filter((s) => answers[ANSWER_OF[s]] === undefined);
}

export interface RunOptions {
  connect: DpsConnector;
  endpoint: string;
  deviceId: string;
  /** The steps to run, in order (a renewal runs "credentials" only). */
  steps: readonly DpsStep[];
  answers: DpsAnswers;
  /** The hub the device used before, asked for again (plgd's selectedGateway). */
  selectedGateway?: Gateway;
  signal: AbortSignal;
  /** The deadline of the next step; asked before each, since a success resets plgd's counter. */
  stepTimeoutMs: () => number;
  /** A certificate expiring within this many seconds is not accepted. */
  expiringLimitS: number;
  clock: TimerClock;
  /** Told when a step starts and when it succeeded (its answer then is in `answers`). */
  onStep?: (step: DpsStep, phase: "get" | "has") => void;
}

/** Thrown when the run's signal was aborted: the caller stopped it, nothing is reported. */
export class RunAborted extends Error {
  constructor() {
    super("the provisioning run was stopped");
    this.name = "RunAborted";
  }
}

/**
 * Runs `opts.steps` once. Resolves when every one succeeded; rejects with the failed
 * step's DpsStepError (its `step` tells which), or RunAborted once the signal aborts.
 */
export async function provisionOnce(opts: RunOptions): Promise<void> {
  const { signal } = opts;
  let transport: DpsTransport | undefined;
  let step: DpsStep | undefined = opts.steps[0];
  const alive = () => {
    if (signal.aborted) throw new RunAborted();
  };
  try {
    for (step of opts.steps) {
      alive();
      const ms = opts.stepTimeoutMs();
      opts.onStep?.(step, "get");
      const stepAc = new AbortController();
      const onAbort = () => stepAc.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        if (!transport) {
          const connecting = opts.connect(opts.endpoint, { timeoutMs: ms, signal: stepAc.signal });
          try {
            transport = await deadline(connecting, ms, stepAc, opts.clock);
          } catch (err) {
            // A connection that opens after its deadline or a stop is closed unused.
            connecting.then(
              (t) => t.close().catch(() => undefined),
              () => undefined,
            );
            throw err;
          }
          alive();
        }
        const t = transport;
        const send: Send = (req) =>
          deadline(t.request(req, { timeoutMs: ms, signal: stepAc.signal }), ms, stepAc, opts.clock);
        await runStep(step, send, opts);
        alive();
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
      opts.onStep?.(step, "has");
    }
  } catch (err) {
    if (signal.aborted || err instanceof RunAborted) throw new RunAborted();
    throw stepFailure(step ?? "time", err, hostOf(opts.endpoint));
  } finally {
    if (transport) await transport.close().catch(() => undefined);
  }
}

/** "host:port" of an endpoint URI, as failures name it. */
function hostOf(endpoint: string): string {
  return endpoint.replace(/^[a-z+]+:\/\//i, "").replace(/\/.*$/, "");
}

/**
 * Races `p` against the step's deadline on the injected clock, and against `ac` (the run
 * stopped): a stop does not wait for a connection attempt to give up by itself.
 */
function deadline<T>(p: Promise<T>, ms: number, ac: AbortController, clock: TimerClock): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      clock.clearTimeout(h);
      reject(new RunAborted());
    };
    const h = clock.setTimeout(() => {
      ac.signal.removeEventListener("abort", onAbort);
      reject(stepTimeout(ms));
      ac.abort();
    }, ms);
    ac.signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        clock.clearTimeout(h);
        ac.signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        clock.clearTimeout(h);
        ac.signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

async function runStep(step: DpsStep, send: Send, opts: RunOptions): Promise<void> {
  const { answers, deviceId: di } = opts;
  switch (step) {
    case "time": {
      const t = await getTime(send);
      answers.timeOffsetMs = Date.parse(t.time) - opts.clock.now();
      return;
    }
    case "owner":
      answers.owner = await getOwner(send);
      return;
    case "cloud":
      answers.cloud = await getCloudConfiguration(send, di, opts.selectedGateway);
      return;
    case "credentials": {
      // The key is made here and never leaves: the service sees the CSR only.
      const { privateKey, csr } = createKeyAndCsr(`uuid:${di}`);
      const rep = await getCredentials(send, di, csr);
      const dpsNow = opts.clock.now() + (answers.timeOffsetMs ?? 0);
      answers.credentials = acceptCredentials(rep, privateKey, di, dpsNow, opts.expiringLimitS);
      return;
    }
    case "acls":
      answers.acls = await getAcls(send);
      return;
  }
}

/** The service's credentials answer, checked as plgd checks it before installing it. */
export function acceptCredentials(
  rep: CredRep,
  privateKey: string,
  di: string,
  dpsNow: number,
  expiringLimitS: number,
): IssuedCredentials {
  const fail = (msg: string) => invalidAnswer("credentials", msg);
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
  const state = certificateState(new Date(leaf.validFrom), notAfter, dpsNow, expiringLimitS);
  if (state !== "valid") throw fail(`valid certificates not found: the identity certificate is ${state}`);
  const caCertificates = rep.creds
    .filter((c) => c.credusage === CREDUSAGE_TRUST_CA && c.publicdata)
    .flatMap((c) => splitCertificates(c.publicdata?.data.toString()));
  const pskCred = rep.creds.find((c) => c.credtype === CREDTYPE_SYMMETRIC_PAIR_WISE && c.privatedata);
  const out: IssuedCredentials = { chain: chain.join(""), privateKey, caCertificates, notAfter };
  if (pskCred?.privatedata) out.psk = Buffer.from(pskCred.privatedata.data).toString("utf8");
  return out;
}
