import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Clock, DpsStatusEvent } from "../../lib/dialects/plgd-dps/client";
import type { EnrollmentGroupConfig } from "../../lib/dialects/plgd-dps/enrollment";
import type { DpsService } from "../../lib/dialects/plgd-dps/server";
import type { DpsConnector } from "../../lib/dialects/plgd-dps/transport";
import { ensureDemoPki, type DemoPki } from "../../lib/pki/demo-pki";
import { CertificateAuthority, EKU_CLIENT_AUTH, issueCertificate, selfSignedCa } from "../../lib/pki/signer";
import type { CoapRequest, CoapResponse } from "../../lib/transports/coap-tcp/types";

export interface Pair {
  cert: string;
  key: string;
}

function keyPem(k: ReturnType<typeof generateKeyPairSync>["privateKey"]): string {
  return k.export({ type: "pkcs8", format: "pem" }).toString();
}

/** A CA made by lib/pki, valid from `from` to `to`. */
export function makeCa(
  cn: string,
  from = new Date(Date.now() - 30 * 86400_000),
  to = new Date(Date.now() + 365 * 86400_000),
) {
  const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const cert = selfSignedCa(cn, k.privateKey, from, to);
  const key = keyPem(k.privateKey);
  return { cert, key, authority: CertificateAuthority.fromPem(cert, key) };
}

export function issueDevice(
  ca: CertificateAuthority,
  cn: string,
  opts: { eku?: string[]; notBefore?: Date; notAfter?: Date } = {},
): Pair {
  const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const cert = issueCertificate(
    {
      commonName: cn,
      publicKey: k.publicKey,
      notBefore: opts.notBefore ?? new Date(Date.now() - 3600_000),
      notAfter: opts.notAfter ?? new Date(Date.now() + 30 * 86400_000),
      keyUsage: ["digitalSignature", "keyAgreement"],
      extendedKeyUsage: opts.eku ?? [EKU_CLIENT_AUTH],
    },
    ca.signingIdentity,
  );
  return { cert, key: keyPem(k.privateKey) };
}

export interface DpsFixture {
  demo: DemoPki;
  read: (p: string) => string;
  device: Pair;
  deviceChain: X509Certificate[];
  mfgCa: Pair;
  hubCa: Pair;
  dpsCa: string;
  dpsServer: Pair;
  /** A manufacturer no group knows. */
  other: { ca: ReturnType<typeof makeCa>; device: Pair };
  groupConfig: (over?: Partial<EnrollmentGroupConfig>) => EnrollmentGroupConfig;
}

export const GROUP_ID = "5db6ccde-05e1-480b-a522-c1591ad7dfd2";
export const HUB_ID = "2f1ef5e5-a76c-4a22-8bb4-1d8e0c2c6c5e";

export function makeDpsFixture(): DpsFixture {
  const demo = ensureDemoPki(join(mkdtempSync(join(tmpdir(), "dps-pki-")), "pki"));
  const read = (p: string) => readFileSync(p, "utf8");
  const device = { cert: read(demo.deviceCert), key: read(demo.deviceKey) };
  const mfgCa = { cert: read(demo.manufacturerCaCert), key: read(demo.manufacturerCaKey) };
  const hubCa = { cert: read(demo.hubCaCert), key: read(demo.hubCaKey) };
  const otherCa = makeCa("Other Manufacturer CA");
  return {
    demo,
    read,
    device,
    deviceChain: [new X509Certificate(device.cert)],
    mfgCa,
    hubCa,
    dpsCa: read(demo.dpsCaCert),
    dpsServer: { cert: read(demo.dpsServerCert), key: read(demo.dpsServerKey) },
    other: { ca: otherCa, device: issueDevice(otherCa.authority, "other device") },
    groupConfig: (over = {}) => ({
      id: GROUP_ID,
      name: "demo",
      owner: "user-1",
      attestationChain: mfgCa.cert,
      expiredCertificateEnabled: false,
      hub: {
        caPool: hubCa.cert,
        hubId: HUB_ID,
        gateways: ["coaps+tcp://hub.example:5684", "coaps+tcp://hub2.example:5684"],
        authorizationProvider: "plgd",
        tokenMode: "static",
        accessToken: "static-access-token-123",
      },
      authority: { certificate: hubCa.cert, key: hubCa.key },
      validityMs: 365 * 86400_000,
      ...over,
    }),
  };
}

/** A clock whose timers fire only when a test says so. */
export class FakeClock implements Clock {
  t = Date.now();
  private seq = 0;
  readonly timers: Array<{ id: number; at: number; ms: number; fn: () => void }> = [];

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.push({ id, at: this.t + ms, ms, fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    const i = this.timers.findIndex((x) => x.id === h);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** The earliest pending timer's delay as it was set. */
  nextDelay(): number | undefined {
    return this.earliest()?.ms;
  }

  private earliest() {
    return [...this.timers].sort((a, b) => a.at - b.at || a.id - b.id)[0];
  }

  /** Advances to the earliest timer and runs it; returns its delay. */
  fire(): number {
    const t = this.earliest();
    if (!t) throw new Error("no timer pending");
    this.clearTimeout(t.id);
    this.t = Math.max(this.t, t.at);
    t.fn();
    return t.ms;
  }
}

/** Collects status events and lets a test wait for one (real-time guard, no sleeping). */
export class StatusLog {
  readonly events: DpsStatusEvent[] = [];
  private waiters: Array<{ pred: (e: DpsStatusEvent) => boolean; resolve: (e: DpsStatusEvent) => void }> = [];

  readonly push = (e: DpsStatusEvent): void => {
    this.events.push(e);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(e)) return true;
      w.resolve(e);
      return false;
    });
  };

  /** Resolves with the next event (from now on) matching pred. */
  next(pred: (e: DpsStatusEvent) => boolean, ms = 5000): Promise<DpsStatusEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for a status event (${this.events.length} seen)`)),
        ms,
      );
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }
}

export type Interceptor = (req: CoapRequest, n: number) => CoapResponse | Error | "hang" | undefined;

/** A connector that hands requests straight to a DpsService as if over mutual TLS. */
export function inProcessConnector(
  service: DpsService,
  chain: X509Certificate[],
  hooks: {
    intercept?: Interceptor;
    connect?: (endpoint: string, n: number) => Error | undefined;
    endpoints?: string[];
  } = {},
): DpsConnector {
  let requests = 0;
  let connects = 0;
  return async (endpoint) => {
    hooks.endpoints?.push(endpoint);
    const fail = hooks.connect?.(endpoint, ++connects);
    if (fail) throw fail;
    return {
      request: (req, o) => {
        const r = hooks.intercept?.(req, ++requests);
        if (r === "hang") {
          return new Promise<CoapResponse>((_res, rej) =>
            o.signal?.addEventListener("abort", () => rej(new Error("aborted")), { once: true }),
          );
        }
        if (r instanceof Error) return Promise.reject(r);
        if (r) return Promise.resolve(r);
        return service.handle({
          ...req,
          remote: "127.0.0.1:1",
          payload: req.payload ?? Buffer.alloc(0),
          peerCertificateChain: chain,
        });
      },
      close: async () => undefined,
    };
  };
}
