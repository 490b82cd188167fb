import { X509Certificate } from "node:crypto";

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n");
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith("\n") ? "" : "\n"}-----END ${label}-----\n`;
}

/** Every PEM block with the given label, as DER. */
export function pemBlocks(text: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, "g");
  const out: Buffer[] = [];
  for (const m of text.matchAll(re)) out.push(Buffer.from(m[1].replace(/\s+/g, ""), "base64"));
  return out;
}

/** Splits a PEM bundle into one PEM string per certificate (normalised). */
export function splitCertificates(text: string | Buffer | undefined): string[] {
  if (!text) return [];
  return pemBlocks(text.toString(), "CERTIFICATE").map((der) => toPem("CERTIFICATE", der));
}

/** Parses a PEM bundle; throws with a clear message when a block is not a certificate. */
export function parseCertificates(text: string | Buffer | undefined, what: string): X509Certificate[] {
  const pems = splitCertificates(text);
  return pems.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (err) {
      throw new Error(`${what}: certificate ${i + 1} does not parse (${(err as Error).message})`);
    }
  });
}
