import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "mocha";
import { parseCsr, PkiError } from "../../../lib/pki/csr";
import { children, readOne } from "../../../lib/pki/der";
import { pemBlocks, toPem } from "../../../lib/pki/pem";

const DI = "0b8c3a34-5b2c-4d9a-9f3e-2a7f0e6d1c11";

/** A CSR made by openssl, as PEM. */
function opensslCsr(): string {
  const dir = mkdtempSync(join(tmpdir(), "dps-csr-bits-"));
  try {
    const run = (args: string[]) =>
      execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem"]);
    run(["req", "-new", "-key", "k.pem", "-subj", `/CN=uuid:${DI}`, "-out", "r.csr"]);
    return readFileSync(join(dir, "r.csr"), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same CSR with the unused-bits byte of its signature BIT STRING set to `value`. */
function withUnusedBits(pem: string, value: number): string {
  const der = Buffer.from(pemBlocks(pem, "CERTIFICATE REQUEST")[0]);
  const top = readOne(der);
  const sigBits = children(top.content)[2];
  assert.equal(sigBits.tag, 0x03);
  // The content of the BIT STRING starts right after its header; its first byte is the count.
  const contentStart =
    sigBits.raw.byteOffset - der.byteOffset + (sigBits.raw.length - sigBits.content.length);
  assert.equal(der[contentStart], 0, "openssl writes 0 unused bits");
  der[contentStart] = value;
  return toPem("CERTIFICATE REQUEST", der);
}

describe("pki: CSR signature BIT STRING (RFC 2986, X.690 §8.6.2)", () => {
  it("accepts openssl's CSR as made", () => {
    assert.equal(parseCsr(opensslCsr()).commonName, `uuid:${DI}`);
  });

  for (const value of [1, 7, 0xff]) {
    it(`refuses the same CSR with ${value} as the unused-bits byte`, () => {
      const bad = withUnusedBits(opensslCsr(), value);
      assert.throws(
        () => parseCsr(bad),
        (e: unknown) => e instanceof PkiError && e.code === "CSR_INVALID" && /unused bits/.test(e.message),
      );
    });
  }
});
