import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { X509Certificate } from "node:crypto";
import { after, before, describe, it } from "mocha";
import { prepare, type BootstrapRequest } from "../../../lib/dialects/mainflux/client";
import { bootstrap } from "../../../lib/dialects/mainflux/device-dialect";
import { cfbKey, gcmKey } from "../../../lib/dialects/mainflux/crypto";
import { bootstrapHandler } from "../../../lib/dialects/mainflux/server";
import { parseAnswer, toResult } from "../../../lib/dialects/mainflux/wire";
import { MemoryBackend } from "../../../lib/stores/memory";
import {
  CFB_KEY,
  EXTERNAL_ID,
  EXTERNAL_KEY,
  GCM_KEY_HEX,
  SAMPLE_CONFIG,
  startService,
  THING_ID,
  THING_KEY,
  type RunningService,
} from "../../support/mainflux-fixtures";
import { makeTestPki, type TestPki } from "../../support/pki";

const FAST = { intervals: [0.01], jitter: 0, maxAttempts: 5 };

function code(err: unknown): string | undefined {
  return (err as { code?: string }).code;
}

describe("mainflux client: answers to results", () => {
  it("reads both generations of field names into the same neutral result", () => {
    const newer = parseAnswer(
      JSON.stringify({
        thing_id: "t",
        thing_key: "k",
        channels: [{ id: "c", name: "n" }],
        content: "plain text",
      }),
    );
    const older = parseAnswer(
      JSON.stringify({
        mainflux_id: "t",
        mainflux_key: "k",
        mainflux_channels: [{ id: "c", name: "n" }],
        content: "plain text",
      }),
    );
    const a = toResult(newer, { endpoint: "e", externalId: "x", obtainedAt: "2026-01-01T00:00:00.000Z" });
    const b = toResult(older, { endpoint: "e", externalId: "x", obtainedAt: "2026-01-01T00:00:00.000Z" });
    assert.deepEqual(a, b);
    assert.deepEqual(a, {
      dialect: "mainflux",
      endpoint: "e",
      device: { id: "t", name: "x" },
      proof: "external-key",
      credentials: { type: "THING_KEY", token: "k" },
      configuration: { channels: [{ id: "c", name: "n" }], content: "plain text" },
      obtainedAt: "2026-01-01T00:00:00.000Z",
      reused: false,
    });
    const json = parseAnswer(JSON.stringify({ thing_id: "t", thing_key: "k", content: '{"a":1}' }));
    assert.deepEqual(toResult(json, { endpoint: "e", externalId: "x" }).configuration.content, { a: 1 });
  });

  it("refuses non-JSON, non-objects and answers without a thing key", () => {
    for (const text of [
      "<html>",
      "[]",
      '{"thing_id":"t"}',
      '{"thing_id":"t","thing_key":"k","channels":{}}',
    ]) {
      assert.throws(
        () => parseAnswer(text),
        (e: unknown) => code(e) === "INVALID_ANSWER",
        text,
      );
    }
  });

  it("refuses impossible settings before sending anything", () => {
    const base: BootstrapRequest = { url: "http://127.0.0.1:1", externalId: "x", externalKey: "k" };
    assert.throws(
      () => prepare({ ...base, mode: "secure", encryptionKey: "y".repeat(50) }),
      /16, 24 or 32 bytes/,
    );
    assert.throws(() => prepare({ ...base, mode: "gcm", encryptionKey: GCM_KEY_HEX }), /key id/);
    assert.throws(() => prepare({ ...base, url: "ftp://x" }), /http/);
    assert.throws(() => prepare({ ...base, externalKey: "" }), /external key/);
  });
});

describe("mainflux client against the serving side", () => {
  let svc: RunningService;
  let pki: TestPki;

  before(async () => {
    pki = makeTestPki("Mainflux");
    svc = await startService({ cfbKey: cfbKey(CFB_KEY), gcm: { keyId: "k1", key: gcmKey(GCM_KEY_HEX) } });
    const client = pki.issueClient("thing-1");
    // The certificate as base64 DER, the key and CA as PEM: both forms must arrive as PEM.
    const der = new X509Certificate(client.cert).raw.toString("base64");
    await svc.registry.add({
      ...SAMPLE_CONFIG,
      client_cert: der,
      client_key: client.key,
      ca_cert: pki.caCert,
    });
  });
  after(() => svc.close());

  const req = (over: Partial<BootstrapRequest> = {}): BootstrapRequest => ({
    url: svc.url,
    externalId: EXTERNAL_ID,
    externalKey: EXTERNAL_KEY,
    ...over,
  });

  for (const mode of ["plain", "secure", "gcm"] as const) {
    it(`bootstraps in ${mode} mode`, async () => {
      const r = await bootstrap(
        req({ mode, encryptionKey: mode === "gcm" ? GCM_KEY_HEX : CFB_KEY, keyId: "k1" }),
        { policy: FAST },
      );
      assert.equal(r.device.id, THING_ID);
      assert.equal(r.device.name, EXTERNAL_ID);
      assert.equal(r.credentials.type, "THING_KEY");
      assert.equal(r.credentials.token, THING_KEY);
      assert.deepEqual(r.configuration.content, { interval: 5 });
      assert.equal(r.configuration.channels?.length, 2);
      assert.match(r.credentials.certificate ?? "", /^-----BEGIN CERTIFICATE-----\n/);
      assert.equal(new X509Certificate(r.credentials.certificate as string).subject, "CN=thing-1");
      assert.match(r.credentials.privateKey ?? "", /PRIVATE KEY-----/);
      assert.equal(r.credentials.caCertificates?.length, 1);
      assert.ok(r.endpoint.includes(mode === "plain" ? "/things/bootstrap/" : "/things/bootstrap/secure/"));
    });
  }

  it("a wrong external key or encryption key is final DENIED (status 403), after one attempt", async () => {
    let attempts = 0;
    const onAttempt = () => attempts++;
    await assert.rejects(
      bootstrap(req({ externalKey: "wrong" }), { policy: FAST, onAttempt }),
      (e) => code(e) === "DENIED" && (e as { status?: number }).status === 403,
    );
    await assert.rejects(
      bootstrap(req({ mode: "secure", encryptionKey: "another-key-16by" }), { policy: FAST, onAttempt }),
      (e) => code(e) === "DENIED" && (e as { status?: number }).status === 403,
    );
    assert.equal(attempts, 2);
  });

  it("an unknown id is final unless asked to keep waiting; then it waits until the config is uploaded", async () => {
    await assert.rejects(
      bootstrap(req({ externalId: "late" }), { policy: FAST }),
      (e) => code(e) === "NOT_FOUND",
    );
    const r = await bootstrap(req({ externalId: "late" }), {
      policy: { intervals: [0.01], jitter: 0, maxAttempts: -1 },
      waitWhileUnknown: true,
      onRetry: ({ attempt }) => {
        if (attempt === 2) void svc.registry.add({ external_id: "late", external_key: EXTERNAL_KEY });
      },
    });
    assert.equal(r.device.name, "late");
  });

  it("503 (store down) is retried; the run succeeds once the service is back", async () => {
    const backend = new MemoryBackend();
    const down = await startService({ backend });
    try {
      await down.registry.add(SAMPLE_CONFIG);
      const realGet = backend.get.bind(backend);
      let failures = 2;
      backend.get = (k: string) =>
        failures-- > 0 ? Promise.reject(Object.assign(new Error("x"), { code: "IO" })) : realGet(k);
      const seen: string[] = [];
      const r = await bootstrap(req({ url: down.url }), {
        policy: FAST,
        onRetry: ({ error }) => seen.push(code(error) ?? "?"),
      });
      assert.deepEqual(seen, ["UNAVAILABLE", "UNAVAILABLE"]);
      assert.equal(r.credentials.token, THING_KEY);
    } finally {
      await down.close();
    }
  });

  it("an answer larger than the limit is refused; a non-JSON 200 is a clear error", async () => {
    const big = createServer((_q, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(Buffer.alloc(2 * 1024 * 1024, 0x20));
    });
    await new Promise<void>((r) => big.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(big.address() as AddressInfo).port}`;
    try {
      await assert.rejects(
        bootstrap(req({ url }), { policy: FAST }),
        (e) => code(e) === "TOO_LARGE" && /larger/.test((e as Error).message),
      );
      await assert.rejects(
        bootstrap(req({ url }), { policy: FAST, maxResponseBytes: 4 * 1024 * 1024 }),
        (e) => code(e) === "INVALID_ANSWER" && /not JSON/.test((e as Error).message),
      );
    } finally {
      big.closeAllConnections();
      await new Promise<void>((r) => big.close(() => r()));
    }
  });

  it("HTTPS verifies the service by default; with the CA it works", async () => {
    const handler = bootstrapHandler(svc.service);
    const tlsServer = createHttpsServer({ key: pki.serverKey, cert: pki.serverCert }, (q, s) =>
      handler(q, s),
    );
    await new Promise<void>((r) => tlsServer.listen(0, "127.0.0.1", () => r()));
    const url = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`;
    try {
      await assert.rejects(
        bootstrap(req({ url }), { policy: FAST }),
        (e) => code(e) === "TLS" && /not signed by a CA this side trusts/.test((e as Error).message),
      );
      await assert.rejects(
        bootstrap(req({ url: url.replace("127.0.0.1", "localhost") }), {
          policy: FAST,
          tls: { ca: pki.caCert, servername: "other.test" },
        }),
        (e) => code(e) === "TLS" && /for another host name/.test((e as Error).message),
      );
      const r = await bootstrap(req({ url, mode: "secure", encryptionKey: CFB_KEY }), {
        policy: FAST,
        tls: { ca: pki.caCert },
      });
      assert.equal(r.credentials.token, THING_KEY);
    } finally {
      tlsServer.closeAllConnections();
      await new Promise<void>((r) => tlsServer.close(() => r()));
    }
  });
});
