/**
 * The service's enrollments (Azure: individual enrollments and enrollment groups) and the
 * proof a device gives against them: a SAS token signed with an individual enrollment's
 * primary or secondary key, or with the key derived from a group's key for the
 * registration id (./sas.ts), or an X.509 chain (./server-x509.ts). As Azure DPS, the most
 * specific enrollment wins: an individual enrollment for the registration id is the only
 * one tried; groups only when there is none. Nothing here says which part of a proof was
 * wrong to the device: the caller answers 401 whatever failed.
 */
import type { X509Certificate } from "node:crypto";
import { deriveDeviceKey, dpsResource, isBase64Key, verifySas } from "./sas";
import type { AzureEnrollment, AzureServiceSettings } from "./settings";
import { chainReaches, commonName, leafIs, parseCertificates } from "./server-x509";
import { isIdScope, isRegistrationId } from "./wire";

const ALLOCATIONS = ["hashed", "static", "custom"];
const REPROVISION = ["migrate", "reset", "never"];
const HOST = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*(:\d{1,5})?$/u;

/** A sentence naming what cannot work in one enrollment, or undefined. */
export function enrollmentError(e: AzureEnrollment, linkedHubs: readonly string[]): string | undefined {
  const name = `enrollment ${JSON.stringify(String(e?.id ?? "")).slice(0, 80)}`;
  if (!e || (e.kind !== "individual" && e.kind !== "group"))
    return "an enrollment must be individual or group";
  if (e.kind === "individual" ? !isRegistrationId(e.id) : !/^[A-Za-z0-9\-._:]{1,128}$/u.test(e.id ?? ""))
    return `${name}: the id must be at most 128 letters, digits or -._:`;
  if (e.attestation === "symmetric-key") {
    if (!isBase64Key(e.primaryKey)) return `${name}: the primary key must be base64 of at least 16 bytes`;
    if (e.secondaryKey !== undefined && e.secondaryKey !== "" && !isBase64Key(e.secondaryKey))
      return `${name}: the secondary key must be base64 of at least 16 bytes`;
  } else if (e.attestation === "x509") {
    let certs: X509Certificate[];
    try {
      certs = parseCertificates(e.certificates);
    } catch {
      return `${name}: a certificate does not parse`;
    }
    if (certs.length === 0) return `${name}: X.509 needs at least one certificate (PEM)`;
  } else return `${name}: the attestation must be symmetric-key or x509`;
  if (e.allocation !== undefined && !ALLOCATIONS.includes(e.allocation))
    return `${name}: the allocation must be hashed, static or custom`;
  if (e.reprovision !== undefined && !REPROVISION.includes(e.reprovision))
    return `${name}: the re-provisioning policy must be migrate, reset or never`;
  for (const h of e.iotHubs ?? [])
    if (!linkedHubs.includes(h)) return `${name}: the hub ${h} is not one of the linked hubs`;
  if (e.deviceId !== undefined && (e.kind !== "individual" || !isRegistrationId(e.deviceId)))
    return `${name}: a device id is given only to an individual enrollment, and is a registration id`;
  return undefined;
}

/** A sentence naming what cannot work in the service's settings, or undefined. */
export function checkAzureServiceSettings(s: AzureServiceSettings): string | undefined {
  if (!isIdScope(s.idScope)) return "the id scope must be letters and digits (Azure: 0ne and 8 hex digits)";
  if (!Array.isArray(s.linkedHubs) || s.linkedHubs.length === 0)
    return "at least one linked IoT hub is needed";
  for (const h of s.linkedHubs)
    if (typeof h !== "string" || !HOST.test(h)) return `the hub ${h} is not a host name`;
  if (new Set(s.linkedHubs).size !== s.linkedHubs.length) return "a linked hub is listed twice";
  for (const [h, w] of Object.entries(s.hubWeights ?? {})) {
    if (!s.linkedHubs.includes(h)) return `the weight of ${h}: it is not a linked hub`;
    if (!Number.isInteger(w) || w < 0 || w > 1000) return `the weight of ${h} must be a whole number 0..1000`;
  }
  if (s.allocation !== undefined && !ALLOCATIONS.includes(s.allocation))
    return "the allocation must be hashed, static or custom";
  if (!Array.isArray(s.enrollments)) return "the enrollments must be a list";
  const seen = new Set<string>();
  for (const e of s.enrollments) {
    const err = enrollmentError(e, s.linkedHubs);
    if (err) return err;
    const key = `${e.kind}/${e.id.toLowerCase()}`;
    if (seen.has(key)) return `two ${e.kind} enrollments have the id ${e.id}`;
    seen.add(key);
  }
  const n = (v: number | undefined, lo: number, hi: number) =>
    v === undefined || (Number.isFinite(v) && v >= lo && v <= hi);
  if (!n(s.retryAfterS, 0, 3600)) return "retry-after must be 0..3600 seconds";
  if (!n(s.registrationsPerMinute, 1, 1e6)) return "registrations per minute must be 1..1,000,000";
  if (s.pollLimit && (!n(s.pollLimit.count, 1, 1e6) || !n(s.pollLimit.windowMs, 1, 3.6e6)))
    return "the poll limit needs a count of 1 or more and a window of 1 ms to an hour";
  if (!n(s.decisionTimeoutMs, 1, 3.6e6)) return "the decision timeout must be 1 ms to an hour";
  return undefined;
}

/** Who a device proved to be. */
export interface Attested {
  registrationId: string;
  enrollment: AzureEnrollment;
  attestation: "symmetric-key" | "x509";
  x509?: { subjectName: string; sha1Thumbprint: string; sha256Thumbprint: string };
}

export type AttestVerdict =
  | { ok: true; who: Attested }
  /** `unknown`: no enrollment for this registration; `proof`: one exists, the proof failed. */
  | { ok: false; why: "unknown" | "proof"; detail: string };

export class Enrollments {
  private readonly individual = new Map<string, AzureEnrollment>();
  private groups: AzureEnrollment[] = [];
  private readonly certs = new WeakMap<AzureEnrollment, X509Certificate[]>();

  constructor(
    private readonly idScope: string,
    list: readonly AzureEnrollment[],
  ) {
    for (const e of list) this.put(e);
  }

  /** Adds or replaces one enrollment (checked by the caller). */
  put(e: AzureEnrollment): void {
    const copy = { ...e };
    if (copy.attestation === "x509") this.certs.set(copy, parseCertificates(copy.certificates));
    if (copy.kind === "individual") this.individual.set(copy.id.toLowerCase(), copy);
    else this.groups = [...this.groups.filter((g) => g.id.toLowerCase() !== copy.id.toLowerCase()), copy];
  }

  remove(kind: "individual" | "group", id: string): boolean {
    if (kind === "individual") return this.individual.delete(id.toLowerCase());
    const before = this.groups.length;
    this.groups = this.groups.filter((g) => g.id.toLowerCase() !== id.toLowerCase());
    return this.groups.length !== before;
  }

  get(kind: "individual" | "group", id: string): AzureEnrollment | undefined {
    return kind === "individual"
      ? this.individual.get(id.toLowerCase())
      : this.groups.find((g) => g.id.toLowerCase() === id.toLowerCase());
  }

  all(): AzureEnrollment[] {
    return [...this.individual.values(), ...this.groups];
  }

  /** A SAS token for `registrationId` against its individual enrollment, else the groups. */
  bySas(registrationId: string, token: unknown, nowMs: number): AttestVerdict {
    const resource = dpsResource(this.idScope, registrationId);
    const mine = this.individual.get(registrationId.toLowerCase());
    const candidates = mine ? [mine] : this.groups;
    const sym = candidates.filter((e) => e.attestation === "symmetric-key");
    if (sym.length === 0)
      return { ok: false, why: "unknown", detail: "no symmetric-key enrollment for this registration" };
    let detail = "wrong signature";
    for (const e of sym) {
      const keys = [e.primaryKey, e.secondaryKey].filter(
        (k): k is string => typeof k === "string" && k !== "",
      );
      const usable = e.kind === "group" ? keys.map((k) => deriveDeviceKey(k, registrationId)) : keys;
      const v = verifySas(token, resource, usable, nowMs);
      if (v.ok) return { ok: true, who: { registrationId, enrollment: e, attestation: "symmetric-key" } };
      detail = v.reason === "signature" ? "wrong signature" : `SAS token: ${v.reason}`;
      if (v.reason !== "signature") break; // the same for every key: the token itself is wrong
    }
    return { ok: false, why: "proof", detail };
  }

  /** A verified TLS chain: the leaf's CN is the registration id, and it reaches an enrollment. */
  byCertificate(registrationId: string, chain: readonly X509Certificate[], nowMs: number): AttestVerdict {
    const leaf = chain[0];
    if (!leaf) return { ok: false, why: "proof", detail: "no client certificate" };
    const cn = commonName(leaf);
    if (cn === undefined || cn.toLowerCase() !== registrationId.toLowerCase())
      return { ok: false, why: "proof", detail: "the certificate's CN is not the registration id" };
    const mine = this.individual.get(registrationId.toLowerCase());
    const candidates = (mine ? [mine] : this.groups).filter((e) => e.attestation === "x509");
    if (candidates.length === 0)
      return { ok: false, why: "unknown", detail: "no X.509 enrollment for this registration" };
    for (const e of candidates) {
      const trusted = this.certs.get(e) ?? [];
      const ok =
        e.kind === "individual"
          ? leafIs(chain, trusted, nowMs) || chainReaches(chain, trusted, nowMs)
          : chainReaches(chain, trusted, nowMs);
      if (ok)
        return {
          ok: true,
          who: {
            registrationId,
            enrollment: e,
            attestation: "x509",
            x509: {
              subjectName: `CN=${cn}`,
              sha1Thumbprint: leaf.fingerprint.replace(/:/gu, ""),
              sha256Thumbprint: leaf.fingerprint256.replace(/:/gu, ""),
            },
          },
        };
    }
    return { ok: false, why: "proof", detail: "the certificate chain reaches no enrollment's certificate" };
  }
}
