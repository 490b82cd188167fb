/**
 * plgd DPS's serving dialect under the serving contract, with libcoap's
 * coap-client-openssl as the device: it presents the manufacturer certificate over
 * coaps+tcp (RFC 8323) and POSTs the credentials step, the step that issues the identity
 * certificate (plgd-dev/hub, device-provisioning-service). A wrong proof is a manufacturer
 * certificate no enrollment group knows. Device names become stable UUIDs, since a plgd
 * device id is one.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseEnrollmentGroup } from "../../lib/dialects/plgd-dps/enrollment";
import {
  CF_OCF_CBOR,
  CREDTYPE_SYMMETRIC_PAIR_WISE,
  ENCODING_PEM,
  PATHS,
  decodeBody,
  encodeBody,
} from "../../lib/dialects/plgd-dps/ocf";
import {
  plgdDpsServing,
  type DpsRunningService,
  type DpsServeSettings,
} from "../../lib/dialects/plgd-dps/serving";
import { createKeyAndCsr } from "../../lib/pki/csr";
import { libcoapClient } from "../support/coaptcp-peers";
import { makeDpsFixture } from "../support/dps-fixtures";
import { servingDialectContract, type PeerAnswer } from "./serving-dialect.contract";

const fx = makeDpsFixture();
const dir = mkdtempSync(join(tmpdir(), "serving-plgd-"));
const PSK = "contract-psk-0123456789";
let files = 0;

function file(content: string | Buffer): string {
  const p = join(dir, `f${++files}`);
  writeFileSync(p, content);
  return p;
}

const device = { cert: file(fx.device.cert), key: file(fx.device.key) };
const other = { cert: file(fx.other.device.cert), key: file(fx.other.device.key) };

/** A stable UUID for a name. */
function uuidOf(name: string): string {
  const h = createHash("sha256").update(name).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The credentials request of plgd's client for `name`: its device id and a CSR for it. */
function credentialsBody(name: string): Buffer {
  const di = uuidOf(name);
  const { csr } = createKeyAndCsr(`uuid:${di}`);
  return encodeBody({ di, csr: { data: csr, encoding: ENCODING_PEM } }, CF_OCF_CBOR);
}

/** One POST with coap-client; the answer is "<code> <payload as base64>". */
async function post(
  endpoint: string,
  body: Buffer,
  pair: { cert: string; key: string },
): Promise<PeerAnswer> {
  const r = await libcoapClient([
    "-m",
    "post",
    "-v",
    "7",
    "-B",
    "20",
    "-t",
    String(CF_OCF_CBOR),
    "-A",
    String(CF_OCF_CBOR),
    "-c",
    pair.cert,
    "-j",
    pair.key,
    "-f",
    file(body),
    `${endpoint}/${PATHS.credentials}`,
  ]);
  const log = `${r.stdout.toString("latin1")}\n${r.stderr}`;
  // -v 7 logs every PDU; the last response code is the answer (requests log c:POST).
  const codes = [...log.matchAll(/\bc:(\d\.\d\d)\b/g)].map((m) => m[1]);
  return { raw: `${codes.at(-1) ?? "none"} ${r.stdout.toString("base64")}` };
}

const codeOf = (a: PeerAnswer) => a.raw.split(" ")[0];

function credentialsOf(a: PeerAnswer): string[] {
  if (codeOf(a) !== "2.04") return [];
  try {
    const payload = Buffer.from(a.raw.split(" ")[1] ?? "", "base64");
    const rep = decodeBody(payload, CF_OCF_CBOR) as {
      creds?: Array<{ credtype?: number; privatedata?: { data?: Uint8Array | string } }>;
    };
    return (rep.creds ?? [])
      .filter((c) => c.credtype === CREDTYPE_SYMMETRIC_PAIR_WISE && c.privatedata?.data !== undefined)
      .map((c) => Buffer.from(c.privatedata?.data as Uint8Array).toString("utf8"));
  } catch {
    return [];
  }
}

const endpointOf = (service: DpsRunningService) => `coaps+tcp://127.0.0.1:${service.port}`;

servingDialectContract<DpsServeSettings, DpsRunningService>({
  name: "plgd-dps over coaps+tcp (libcoap coap-client)",
  dialect: plgdDpsServing,
  settings: async () => ({
    groups: [parseEnrollmentGroup(fx.groupConfig({ preSharedKey: PSK }))],
    host: "127.0.0.1",
    port: 0,
    tls: { cert: fx.dpsServer.cert, key: fx.dpsServer.key },
  }),
  peer: (service) => ({
    valid: (name) => post(endpointOf(service), credentialsBody(name), device),
    wrongProof: (name) => post(endpointOf(service), credentialsBody(name), other),
    malformed: () => post(endpointOf(service), Buffer.from([0xff, 0xff, 0x00, 0x13]), device),
    flood: (n) =>
      Promise.all(
        Array.from({ length: n }, (_v, i) =>
          post(endpointOf(service), credentialsBody(`flood-${i}`), device),
        ),
      ),
  }),
  is: {
    provisioned: (a) => codeOf(a) === "2.04",
    refused: (a) => codeOf(a) === "4.03",
    failed: (a) => codeOf(a) === "4.00",
    throttled: (a) => codeOf(a) === "5.03",
    denied: (a) => codeOf(a) === "4.03",
    locked: (a) => codeOf(a) === "5.03",
    alreadyProvisioned: () => false,
  },
  // A device that asks again gets a new identity certificate, with the group's same pre-shared key.
  restartRule: "reuse",
  // The manufacturer key proves the device in the TLS handshake; no part of it may reach the audit.
  secrets: [(fx.device.key as string).split("\n")[1], PSK],
  credentialsOf,
  endpoints: (service) => [{ protocol: "tcp", host: "127.0.0.1", port: service.port }],
});
