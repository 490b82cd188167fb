/**
 * Server certificates a client must refuse, made by openssl beside a test PKI
 * (test/support/pki.ts): one from a CA the client does not trust, one for another host
 * name, one that expired (openssl ca with -startdate/-enddate in the past; `x509 -req`
 * of OpenSSL 3.0 cannot backdate).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestPki, type TestPki } from "./pki";

export interface ServerPair {
  cert: string;
  key: string;
}

export interface BadServerCerts {
  /** The CA clients are given. */
  trusted: TestPki;
  good: ServerPair;
  unknownCa: ServerPair;
  wrongHost: ServerPair;
  expired: ServerPair;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function signed(pki: TestPki, base: string, san: string, dates?: { start: string; end: string }): ServerPair {
  const dir = pki.dir;
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`], dir);
  openssl(["req", "-new", "-key", `${base}.key`, "-subj", `/CN=${base}`, "-out", `${base}.csr`], dir);
  writeFileSync(
    join(dir, `${base}.ext`),
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
  );
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n[ p ]\ncommonName = supplied\n",
  );
  const validity = dates ? ["-startdate", dates.start, "-enddate", dates.end] : ["-days", "2"];
  openssl(
    [
      "ca",
      "-batch",
      "-notext",
      "-config",
      "ca.cnf",
      "-cert",
      "ca.pem",
      "-keyfile",
      "ca.key",
      "-in",
      `${base}.csr`,
      "-out",
      `${base}.pem`,
      "-extfile",
      `${base}.ext`,
      ...validity,
    ],
    dir,
  );
  return {
    cert: readFileSync(join(dir, `${base}.pem`), "utf8"),
    key: readFileSync(join(dir, `${base}.key`), "utf8"),
  };
}

export function makeBadServerCerts(): BadServerCerts {
  const trusted = makeTestPki("Trusted");
  const other = makeTestPki("Unknown");
  return {
    trusted,
    good: { cert: trusted.serverCert, key: trusted.serverKey },
    unknownCa: { cert: other.serverCert, key: other.serverKey },
    wrongHost: signed(trusted, "wronghost", "DNS:other.example,IP:10.9.9.9"),
    expired: signed(trusted, "expired", "DNS:localhost,IP:127.0.0.1", {
      start: "20200101000000Z",
      end: "20200102000000Z",
    }),
  };
}
