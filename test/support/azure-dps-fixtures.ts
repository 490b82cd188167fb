/**
 * Fixtures of the Azure DPS serving tests: a random loopback address (the SDK's HTTPS
 * transport always dials 443, so each test file binds 443 on an address of its own), a
 * PKI made by openssl (a server certificate naming that address, a device CA with an
 * intermediate for group enrollments, device certificates whose CN is the registration
 * id), and Microsoft's SDK run in a child process (./azure-sdk-registrant.ts).
 */
import { execFileSync, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SdkOutcome, SdkRun } from "./azure-sdk-registrant";

/** 127.a.b.c, never 127.0.0.1: Linux routes all of 127/8 to lo. */
export function randomLoopback(): string {
  return `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
}

export interface AzurePki {
  dir: string;
  serverCaPath: string;
  serverCert: string;
  serverKey: string;
  /** The group's root CA and its intermediate (PEM). */
  rootCa: string;
  intermediateCa: string;
  /** A device certificate for `cn`: signed by the intermediate (chain sent: leaf, intermediate), the root, or itself. */
  device(cn: string, by: "intermediate" | "root" | "self"): { cert: string; key: string; leaf: string };
}

export function makeAzurePki(ip: string): AzurePki {
  const dir = mkdtempSync(join(tmpdir(), "azure-pki-"));
  const ssl = (args: string[]) =>
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const key = (name: string) =>
    ssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`]);
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  const selfSigned = (name: string, cn: string, ext: string[]) => {
    key(name);
    ssl([
      "req",
      "-x509",
      "-new",
      "-key",
      `${name}.key`,
      "-sha256",
      "-days",
      "2",
      "-subj",
      `/CN=${cn}`,
      "-out",
      `${name}.pem`,
      ...ext.flatMap((e) => ["-addext", e]),
    ]);
  };
  const caExt = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"];
  const signed = (name: string, cn: string, ca: string, ext: string) => {
    key(name);
    ssl(["req", "-new", "-key", `${name}.key`, "-subj", `/CN=${cn}`, "-out", `${name}.csr`]);
    writeFileSync(join(dir, `${name}.ext`), ext);
    ssl([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.pem`,
      "-CAkey",
      `${ca}.key`,
      "-CAcreateserial",
      "-days",
      "2",
      "-sha256",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    ]);
  };
  selfSigned("server-ca", "Azure Test Server CA", caExt);
  signed(
    "server",
    "localhost",
    "server-ca",
    `subjectAltName=IP:${ip},IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
  );
  selfSigned("root", "Azure Test Device Root", caExt);
  signed(
    "intermediate",
    "Azure Test Device Intermediate",
    "root",
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
  );
  let n = 0;
  const leafExt =
    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n";
  return {
    dir,
    serverCaPath: join(dir, "server-ca.pem"),
    serverCert: read("server.pem"),
    serverKey: read("server.key"),
    rootCa: read("root.pem"),
    intermediateCa: read("intermediate.pem"),
    device(cn, by) {
      const name = `device${++n}`;
      if (by === "self") selfSigned(name, cn, ["extendedKeyUsage=clientAuth", "basicConstraints=CA:FALSE"]);
      else signed(name, cn, by, leafExt);
      const leaf = read(`${name}.pem`);
      return {
        cert: by === "intermediate" ? leaf + read("intermediate.pem") : leaf,
        key: read(`${name}.key`),
        leaf,
      };
    },
  };
}

/** Runs Microsoft's SDK once in a child process; resolves its outcome (the child is killed after `timeoutMs`). */
export function runSdk(run: SdkRun, caPath: string, timeoutMs = 60000): Promise<SdkOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, "azure-sdk-registrant.js"), JSON.stringify(run)], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_EXTRA_CA_CERTS: caPath },
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").at(-1) ?? "";
      try {
        resolve(JSON.parse(line) as SdkOutcome);
      } catch {
        reject(new Error(`the SDK printed no outcome (exit ${code}): ${out} ${err}`.slice(0, 2000)));
      }
    });
  });
}
