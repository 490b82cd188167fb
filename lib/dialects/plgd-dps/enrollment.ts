/**
 * Enrollment groups (as plgd hub's Device Provisioning Service configures them: owner,
 * attestation chain, hub) and how plgd DPS finds the group of a device: by the issuer
 * common names of the certificates it presents, then by verifying that chain against the
 * group's attestation chain (EKU clientAuth required; an expired leaf only
 * where the group allows it, validated at the midpoint of the leaf's validity).
 */
import { createHash, type X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { CertificateAuthority } from "../../pki/signer";
import { parseCertificates, splitCertificates } from "../../pki/pem";
import { validityMidpoint, verifyChain, type ChainResult } from "../../pki/verify";
import { parseCoapUri } from "../../transports/coap-tcp/uri";
import { UUID_RE } from "./ocf";

export interface EnrollmentGroupConfig {
  /** GUID. */
  id: string;
  name?: string;
  /** Owner of newly provisioned devices (a user id; mapped to a UUID as plgd does). */
  owner: string;
  /** PEM: the manufacturer certificate chain devices must lead to. */
  attestationChain: string;
  expiredCertificateEnabled?: boolean;
  /** Stored on the device for the owner; empty or at least 16 characters (plgd uses 16). */
  preSharedKey?: string;
  hub: {
    /** PEM bundle the device trusts for the hub. */
    caPool?: string;
    hubId: string;
    /** coaps+tcp:// URIs of the hub's CoAP gateways; the first is the default. */
    gateways: string[];
    authorizationProvider: string;
    /** "static": `accessToken` for every device; "random": a fresh random token each time. */
    tokenMode: "static" | "random";
    accessToken?: string;
  };
  /** The authority that signs identity CSRs. */
  authority: { certificate: string; key: string; passphrase?: string };
  /** Identity certificate validity. */
  validityMs: number;
}

export interface EnrollmentGroup {
  id: string;
  name?: string;
  owner: string;
  ownerUuid: string;
  chain: X509Certificate[];
  /** Subject common names of the chain, the keys plgd looks groups up by. */
  names: string[];
  expiredCertificateEnabled: boolean;
  preSharedKey?: string;
  hubId: string;
  gateways: string[];
  hubCaPool: string[];
  authorizationProvider: string;
  tokenMode: "static" | "random";
  accessToken?: string;
  authority: CertificateAuthority;
  validityMs: number;
}

/**
 * PEM given inline, or read from a file (plgd configures every PEM as a file path).
 * Read once at deploy; the message names the file, never its content.
 */
export function pemFrom(text: string | undefined, file: string | undefined, what: string): string {
  if (text && text.trim()) return text;
  if (!file || !file.trim()) return "";
  try {
    return readFileSync(file.trim(), "utf8");
  } catch (err) {
    throw new Error(
      `${what}: cannot read ${file.trim()} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86400_000 };

/** Certificate validity as typed in a dialog: "365d", "12h", "90m", "3600s", or days. */
export function parseValidity(text: string | undefined): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$/.exec(text ?? "365d");
  if (!m) throw new Error(`certificate validity ${JSON.stringify(text)}: use a number with s, m, h or d`);
  return Math.round(Number(m[1]) * UNITS[m[2] || "d"]);
}

const URL_NAMESPACE = Buffer.from("6ba7b8119dad11d180b400c04fd430c8", "hex");

/** plgd hub's OwnerToUUID: a UUID stays as it is, anything else becomes a v5 UUID in the URL namespace. */
export function ownerToUuid(owner: string): string {
  if (UUID_RE.test(owner) && !/^0{8}-0{4}-0{4}-0{4}-0{12}$/.test(owner)) return owner.toLowerCase();
  const h = createHash("sha1").update(URL_NAMESPACE).update(owner, "utf8").digest().subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The CN values of an X509Certificate subject or issuer text ("CN=a\nO=b"). */
export function commonNames(dn: string): string[] {
  return dn
    .split("\n")
    .filter((l) => l.startsWith("CN="))
    .map((l) => l.slice(3));
}

/** Validates a group's configuration and parses its certificates and signing key once. */
export function parseEnrollmentGroup(c: EnrollmentGroupConfig): EnrollmentGroup {
  const where = `enrollment group ${c.name ? `"${c.name}"` : c.id || "(no id)"}`;
  if (!UUID_RE.test(c.id ?? "")) throw new Error(`${where}: the id must be a GUID`);
  if (!c.owner?.trim()) throw new Error(`${where}: an owner is required`);
  const chain = parseCertificates(c.attestationChain, `${where}: attestation chain`);
  if (chain.length === 0) throw new Error(`${where}: the attestation certificate chain (PEM) is required`);
  const psk = c.preSharedKey ?? "";
  if (psk.length > 0 && psk.length < 16)
    throw new Error(`${where}: the pre-shared key must be empty or at least 16 characters`);
  if (!c.hub?.hubId?.trim()) throw new Error(`${where}: the hub id is required`);
  const gateways = (c.hub.gateways ?? []).map((g) => g.trim()).filter((g) => g.length > 0);
  if (gateways.length === 0)
    throw new Error(`${where}: at least one hub gateway (coaps+tcp://host:port) is required`);
  for (const g of gateways) {
    try {
      parseCoapUri(g);
    } catch (err) {
      throw new Error(`${where}: gateway ${JSON.stringify(g)}: ${(err as Error).message}`);
    }
  }
  if (!c.hub.authorizationProvider?.trim())
    throw new Error(`${where}: the authorization provider name is required`);
  if (c.hub.tokenMode === "static" && !c.hub.accessToken)
    throw new Error(`${where}: a static access token is required (or choose a random token)`);
  if (!(c.validityMs >= 60_000))
    throw new Error(`${where}: the certificate validity must be at least a minute`);
  parseCertificates(c.hub.caPool, `${where}: hub CA pool`);
  let authority: CertificateAuthority;
  try {
    authority = CertificateAuthority.fromPem(
      c.authority?.certificate ?? "",
      c.authority?.key ?? "",
      c.authority?.passphrase,
    );
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
  const g: EnrollmentGroup = {
    id: c.id.toLowerCase(),
    owner: c.owner.trim(),
    ownerUuid: ownerToUuid(c.owner.trim()),
    chain,
    names: [...new Set(chain.flatMap((x) => commonNames(x.subject)))],
    expiredCertificateEnabled: c.expiredCertificateEnabled === true,
    hubId: c.hub.hubId.trim(),
    gateways,
    hubCaPool: splitCertificates(c.hub.caPool),
    authorizationProvider: c.hub.authorizationProvider.trim(),
    tokenMode: c.hub.tokenMode === "static" ? "static" : "random",
    authority,
    validityMs: c.validityMs,
  };
  if (c.name) g.name = c.name;
  if (psk) g.preSharedKey = psk;
  if (c.hub.accessToken) g.accessToken = c.hub.accessToken;
  return g;
}

export type MatchResult =
  { ok: true; group: EnrollmentGroup } | { ok: false; status: "4.01" | "4.03"; reason: string };

/** Groups indexed by the common names of their attestation chains. */
export class EnrollmentIndex {
  private readonly byName = new Map<string, EnrollmentGroup[]>();
  readonly groups: readonly EnrollmentGroup[];

  constructor(groups: EnrollmentGroup[]) {
    this.groups = groups;
    for (const g of groups) {
      for (const n of g.names) {
        const list = this.byName.get(n) ?? [];
        list.push(g);
        this.byName.set(n, list);
      }
    }
  }

  /** Trust anchors for the TLS server: every group's chain (lets Node link the peer's issuers). */
  anchors(): string[] {
    return [...new Set(this.groups.flatMap((g) => g.chain.map((c) => c.toString())))];
  }

  match(presented: X509Certificate[] | undefined, now: Date): MatchResult {
    if (!presented || presented.length === 0) {
      return {
        ok: false,
        status: "4.01",
        reason: "no client certificate: the device must present its manufacturer certificate",
      };
    }
    const issuerNames = [...new Set(presented.flatMap((c) => commonNames(c.issuer)))];
    const candidates = [...new Set(issuerNames.flatMap((n) => this.byName.get(n) ?? []))];
    if (candidates.length === 0) {
      return {
        ok: false,
        status: "4.03",
        reason: `untrusted certificate: no enrollment group for issuer ${issuerNames.map((n) => JSON.stringify(n)).join(", ") || "(no CN)"}`,
      };
    }
    let failure: ChainResult | undefined;
    for (const g of candidates) {
      const at = g.expiredCertificateEnabled ? validityMidpoint(presented[0]) : now;
      const r = verifyChain(presented, g.chain, { at, requireClientAuth: true });
      if (r.ok) return { ok: true, group: g };
      failure ??= r;
    }
    const why = failure && !failure.ok ? failure.reason : "the chain does not verify";
    return { ok: false, status: "4.03", reason: `untrusted certificate: ${why}` };
  }
}
