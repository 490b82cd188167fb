/**
 * Independent AES-CFB implementations for the Mainflux secure-mode tests: Python's
 * cryptography module (Debian's /usr/bin/python3) and the openssl command line.
 */
import { join } from "node:path";
import { PROJECT_ROOT } from "./node-red";
import { run } from "./process";

const PY = "/usr/bin/python3";
const SCRIPT = join(PROJECT_ROOT, "test", "support", "mainflux-cfb.py");

export interface CfbRequest {
  op: "encrypt" | "decrypt";
  key: Buffer;
  data: Buffer;
  iv?: Buffer;
}

/** Runs requests through the Python peer in one process; returns IV||ct or plaintext per request. */
export async function pythonCfb(requests: CfbRequest[]): Promise<Buffer[]> {
  const input = requests
    .map((r) =>
      JSON.stringify({
        op: r.op,
        key: r.key.toString("hex"),
        data: r.data.toString("hex"),
        iv: r.iv?.toString("hex"),
      }),
    )
    .join("\n");
  const out = await run(PY, [SCRIPT], { input: input + "\n" });
  if (out.code !== 0) throw new Error(`python peer failed (${out.code}): ${out.stderr}`);
  return out.stdout
    .toString("utf8")
    .trim()
    .split("\n")
    .map((h) => Buffer.from(h, "hex"));
}

/** `openssl enc -aes-N-cfb`: encrypt returns the bare ciphertext (no IV in front). */
export async function opensslCfb(
  op: "encrypt" | "decrypt",
  key: Buffer,
  iv: Buffer,
  data: Buffer,
): Promise<Buffer> {
  const args = [
    "enc",
    `-aes-${key.length * 8}-cfb`,
    op === "encrypt" ? "-e" : "-d",
    "-K",
    key.toString("hex"),
    "-iv",
    iv.toString("hex"),
    "-nosalt",
  ];
  const out = await run("openssl", args, { input: data });
  if (out.code !== 0) throw new Error(`openssl failed (${out.code}): ${out.stderr}`);
  return out.stdout;
}
