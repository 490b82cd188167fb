import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as netConnect, type Server } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from "node:tls";
import { join } from "node:path";
import {
  asProvisioningError,
  ERROR_CODES,
  isFinal,
  ProvisioningError,
  type ErrorCode,
} from "../../../lib/model/errors";
import { classifyNetworkFailure } from "../../../lib/transports/network-failure";
import { CoapTcpError } from "../../../lib/transports/coap-tcp/errors";
import { makeTestPki, type TestPki } from "../../support/pki";
import { freeTcpPort } from "../../support/ports";

/** The repository root, from dist/test/unit/model. */
const ROOT = join(__dirname, "..", "..", "..", "..");

function readmeTable(): Array<{ code: string; retried: string; meaning: string }> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("| `msg.error.code` | retried | what happened |");
  assert.ok(start >= 0, "the README has the error table");
  const rows = readme.slice(start).split("\n").slice(2);
  const out = [];
  for (const row of rows) {
    const m = /^\| `([A-Z_]+)` \| (yes|no) \| (.+) \|$/.exec(row);
    if (!m) break;
    out.push({ code: m[1], retried: m[2], meaning: m[3] });
  }
  return out;
}

describe("the error vocabulary", () => {
  it("is the README's table: every code, its default and its meaning, in order", () => {
    const table = readmeTable();
    assert.deepEqual(
      table.map((r) => r.code),
      Object.keys(ERROR_CODES),
    );
    for (const r of table) {
      const info = ERROR_CODES[r.code as ErrorCode];
      assert.equal(r.retried === "yes", !info.final, `${r.code}: retried`);
      assert.equal(r.meaning, info.meaning, `${r.code}: meaning`);
    }
  });

  it("takes `final` from the code unless told otherwise, and keeps the peer's own word", () => {
    const refused = new ProvisioningError("REFUSED", "device exists", { status: "FAILURE" });
    assert.equal(refused.final, true);
    assert.equal(refused.status, "FAILURE");
    assert.equal(isFinal(refused), true);
    const busy = new ProvisioningError("BUSY", "throttled", { retryAfterMs: 2000 });
    assert.equal(isFinal(busy), false);
    assert.equal(busy.retryAfterMs, 2000);
    assert.equal(new ProvisioningError("NOT_FOUND", "not yet", { final: false }).final, false);
  });

  it("turns anything thrown into one of its codes", () => {
    assert.equal(asProvisioningError(new TypeError("x is undefined")).code, "INTERNAL");
    assert.equal(asProvisioningError("a string").code, "INTERNAL");
    const store = Object.assign(new Error("disk full"), { code: "STORE" });
    assert.equal(asProvisioningError(store).code, "STORE");
    const mine = new ProvisioningError("TIMEOUT", "slow");
    assert.equal(asProvisioningError(mine), mine);
  });
});

describe("network failures read the same for every protocol", () => {
  let pki: TestPki;
  let other: TestPki;
  let tlsServer: Server;
  let tlsPort: number;
  const sockets = new Set<{ destroy(): void }>();

  before(async () => {
    pki = makeTestPki("Net");
    other = makeTestPki("Other");
    tlsServer = createTlsServer({ key: pki.serverKey, cert: pki.serverCert }, (s) => {
      sockets.add(s);
      s.on("error", () => undefined);
    });
    tlsPort = await freeTcpPort();
    await new Promise<void>((r) => tlsServer.listen(tlsPort, "127.0.0.1", r));
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => tlsServer.close(r));
  });

  const failureOf = (open: () => { on(e: string, f: (err: Error) => void): unknown }) =>
    new Promise<Error>((resolve) => {
      const s = open() as TLSSocket;
      s.on("error", resolve);
      s.on("secureConnect", () => {
        s.destroy();
        resolve(new Error("connected"));
      });
    });

  it("a refused connection is CONNECT, retried", async () => {
    const port = await freeTcpPort();
    const err = await failureOf(() => netConnect(port, "127.0.0.1"));
    const e = classifyNetworkFailure(err, `127.0.0.1:${port}`);
    assert.equal(e.code, "CONNECT");
    assert.equal(e.final, false);
    assert.match(e.message, /ECONNREFUSED/);
  });

  it("a server certificate from an unknown CA is TLS, final, and says what to do", async () => {
    const err = await failureOf(() =>
      tlsConnect({ host: "127.0.0.1", port: tlsPort, ca: other.caCert, servername: "localhost" }),
    );
    const e = classifyNetworkFailure(err, `127.0.0.1:${tlsPort}`);
    assert.equal(e.code, "TLS");
    assert.equal(e.final, true);
    assert.match(e.message, /tls-config/);
  });

  it("CoAP over TCP's own codes map onto the vocabulary", () => {
    const cases: Array<[string, ErrorCode, boolean]> = [
      ["COAP_TIMEOUT", "TIMEOUT", false],
      ["COAP_CONNECT", "CONNECT", false],
      ["COAP_CLOSED", "CONNECT", false],
      ["COAP_TLS", "TLS", true],
      ["COAP_BUSY", "BUSY", false],
      ["COAP_TOO_LARGE", "TOO_LARGE", true],
      ["COAP_PROTOCOL", "INVALID_ANSWER", true],
    ];
    for (const [code, want, final] of cases) {
      const e = classifyNetworkFailure(new CoapTcpError(code as never, "x"), "dps:5684");
      assert.equal(e.code, want, code);
      assert.equal(e.final, final, code);
    }
  });

  it("an error that already is one passes through", () => {
    const mine = new ProvisioningError("DENIED", "wrong key", { status: 403 });
    assert.equal(classifyNetworkFailure(mine, "x"), mine);
  });
});
