import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  dir: string;
  caCert: string;
  caKey: string;
  caCertPath: string;
  serverCert: string;
  serverKey: string;
  serverCertPath: string;
  serverKeyPath: string;
  /** Issues a client certificate (EKU clientAuth unless eku given) signed by this CA. */
  issueClient: (
    cn: string,
    opts?: { eku?: string; days?: number },
  ) => { cert: string; key: string; certPath: string; keyPath: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A throwaway EC P-256 CA and a server certificate for 127.0.0.1/localhost, made by openssl. */
export function makeTestPki(name = "Test"): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "pki-"));
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "ca.key",
      "-sha256",
      "-days",
      "2",
      "-subj",
      `/CN=${name} CA`,
      "-out",
      "ca.pem",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  const issue = (base: string, cn: string, ext: string, days = 2) => {
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`], dir);
    openssl(["req", "-new", "-key", `${base}.key`, "-subj", `/CN=${cn}`, "-out", `${base}.csr`], dir);
    writeFileSync(join(dir, `${base}.ext`), ext);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        String(days),
        "-sha256",
        "-extfile",
        `${base}.ext`,
        "-out",
        `${base}.pem`,
      ],
      dir,
    );
    return {
      cert: readFileSync(join(dir, `${base}.pem`), "utf8"),
      key: readFileSync(join(dir, `${base}.key`), "utf8"),
      certPath: join(dir, `${base}.pem`),
      keyPath: join(dir, `${base}.key`),
    };
  };
  const server = issue(
    "server",
    "localhost",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
  );
  let n = 0;
  return {
    dir,
    caCert: readFileSync(join(dir, "ca.pem"), "utf8"),
    caKey: readFileSync(join(dir, "ca.key"), "utf8"),
    caCertPath: join(dir, "ca.pem"),
    serverCert: server.cert,
    serverKey: server.key,
    serverCertPath: server.certPath,
    serverKeyPath: server.keyPath,
    issueClient: (cn, opts = {}) =>
      issue(
        `client${++n}`,
        cn,
        `extendedKeyUsage=${opts.eku ?? "clientAuth"}\nbasicConstraints=CA:FALSE\n`,
        opts.days,
      ),
  };
}
