import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "mocha";
import { startTbCoapServer } from "../../../lib/dialects/thingsboard/server-coap";
import { tbHttpHandler, type TbHttpOptions } from "../../../lib/dialects/thingsboard/server-http";
import { RateLimiter } from "../../../lib/service/rate-limit";
import type { TbProvisioningService } from "../../../lib/dialects/thingsboard/server";
import { freeUdpPort } from "../../support/ports";
import { run } from "../../support/process";
import { gzipSync } from "node:zlib";
import { answerBeforeBody } from "../../support/http-peers";
import { makeService, request } from "../../support/tbserve-fixtures";

const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';
const NOT_FOUND = '{"status":"NOT_FOUND","errorMsg":"Provision data was not found!"}';

async function httpServer(
  service: TbProvisioningService,
  opts: TbHttpOptions = {},
): Promise<{ url: string; server: Server }> {
  const handler = tbHttpHandler(service, opts);
  const server = createServer((req, res) => {
    if (req.method === "POST" && req.url === "/api/v1/provision") handler(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/provision`, server };
}

async function post(
  url: string,
  body: string,
): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
}

describe("ThingsBoard provisioning over HTTP", () => {
  it("answers every outcome with HTTP 200 and ThingsBoard's exact JSON", async () => {
    const { service, audits } = makeService();
    const { url, server } = await httpServer(service);
    try {
      const ok = await post(url, request({ deviceName: "h1" }));
      assert.equal(ok.status, 200);
      assert.equal(ok.type, "application/json");
      assert.match(
        ok.text,
        /^\{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"[A-Za-z0-9]{20}"\}$/,
      );
      assert.deepEqual(await post(url, request({ deviceName: "h1" })), {
        status: 200,
        text: FAILURE,
        type: "application/json",
      });
      assert.equal((await post(url, request({ provisionDeviceSecret: "nope" }))).text, NOT_FOUND);
      assert.equal((await post(url, "{not json")).text, FAILURE);
      assert.equal((await post(url, request({ deviceName: " " }))).text, FAILURE);
      const big = await post(url, request({ deviceName: "x".repeat(100 * 1024) }));
      assert.deepEqual([big.status, big.text], [200, FAILURE]);
      assert.equal(audits.at(-1)?.reason, "invalid");
      assert.equal(audits.at(-1)?.transport, "http");
      assert.equal(JSON.parse((await post(url, request({ deviceName: "h2" }))).text).status, "SUCCESS");
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("serves curl the same way", async () => {
    const { service } = makeService();
    const { url, server } = await httpServer(service);
    try {
      const out = await run(
        "curl",
        [
          "-sS",
          "-w",
          "\\n%{http_code}",
          "-X",
          "POST",
          "-H",
          "Content-Type: application/json",
          "--data-binary",
          "@-",
          url,
        ],
        {
          input: request({ deviceName: "curl-dev", credentialsType: "MQTT_BASIC", username: "cu" }),
        },
      );
      const [body, code] = out.stdout.toString().split("\n");
      assert.equal(code, "200", out.stderr);
      const res = JSON.parse(body);
      assert.equal(res.credentialsType, "MQTT_BASIC");
      assert.equal(res.credentialsValue.userName, "cu");
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

function coapAnswer(stdout: string): { code: string; body: string } {
  const m = /t:ACK c:(\d\.\d\d)[^\n]*?(?: :: '(.*)')?\n/.exec(stdout);
  assert.ok(m, stdout);
  return { code: m[1], body: m[2] ?? "" };
}

describe("ThingsBoard over HTTP: bodies read within limits, throttling answered", () => {
  it("429 with Retry-After for a request over the rate limit (curl), then served again", async () => {
    let t = 0;
    const limiter = new RateLimiter({ perSecond: 0.5, burst: 1 }, () => t);
    const { service, audits } = makeService({ limiter });
    const { url, server } = await httpServer(service, { retryAfterSeconds: 2 });
    try {
      const args = [
        "-s",
        "-i",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
        url,
      ];
      const first = await run("curl", args, { input: request({ deviceName: "r1" }) });
      assert.match(first.stdout.toString(), /^HTTP\/1\.1 200 /);
      const second = (await run("curl", args, { input: request({ deviceName: "r2" }) })).stdout.toString();
      assert.match(second, /^HTTP\/1\.1 429 /);
      assert.match(second, /\r\nretry-after: 2\r\n/i);
      assert.ok(second.endsWith(FAILURE));
      assert.equal(audits.at(-1)?.reason, "throttled");
      t = 2000;
      const third = (await run("curl", args, { input: request({ deviceName: "r2" }) })).stdout.toString();
      assert.match(third, /^HTTP\/1\.1 200 /);
      assert.match(third, /"status":"SUCCESS"/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("refuses a gzip body and an oversized one before reading them; reads any content type", async () => {
    const { service } = makeService();
    const refused: string[] = [];
    const { url, server } = await httpServer(service, { onRefused: (r) => refused.push(r) });
    try {
      const gz = await answerBeforeBody(
        url,
        { "content-type": "application/json", "content-encoding": "gzip", "content-length": 100000 },
        gzipSync(request()).subarray(0, 10),
      );
      assert.deepEqual(gz, { status: 200, text: FAILURE });
      const big = await answerBeforeBody(
        url,
        { "content-type": "application/json", "content-length": 4_800_000 },
        '{"provisionDeviceKey":"',
      );
      assert.deepEqual(big, { status: 200, text: FAILURE });
      assert.deepEqual(refused, ["encoding", "too-large"]);
      const plain = await fetch(url, { method: "POST", body: request({ deviceName: "no-type" }) });
      assert.equal(JSON.parse(await plain.text()).status, "SUCCESS");
      const deep = await post(url, "[".repeat(20000) + "]".repeat(20000));
      assert.deepEqual([deep.status, deep.text], [200, FAILURE]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("uses what a body parser left on the request, a deep object included, without a 500", async () => {
    const { service } = makeService();
    const handler = tbHttpHandler(service);
    let parsed: unknown;
    const server = createServer((req, res) => {
      // As body-parser leaves a request it has read (express.json: _body and body set).
      req.resume();
      req.on("end", () => {
        Object.assign(req, { _body: true, body: parsed });
        handler(req, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/provision`;
    try {
      parsed = JSON.parse(request({ deviceName: "parsed" }));
      assert.equal(JSON.parse((await post(url, "ignored")).text).status, "SUCCESS");
      let deep: unknown = [];
      for (let i = 0; i < 20000; i++) deep = [deep];
      parsed = deep;
      assert.deepEqual(await post(url, "ignored"), { status: 200, text: FAILURE, type: "application/json" });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe("ThingsBoard provisioning over CoAP (libcoap's coap-client)", () => {
  it("answers 2.01 on SUCCESS and 4.00 with the same JSON otherwise", async () => {
    const { service, audits } = makeService();
    const port = await freeUdpPort();
    const server = await startTbCoapServer(service, { port });
    const coap = (body: string, path = "api/v1/provision", method = "post") =>
      run("coap-client-notls", [
        "-m",
        method,
        "-t",
        "application/json",
        "-e",
        body,
        "-B",
        "10",
        "-v",
        "6",
        `coap://127.0.0.1:${port}/${path}`,
      ]).then((o) => coapAnswer(o.stdout.toString()));
    try {
      const ok = await coap(request({ deviceName: "coap-1" }));
      assert.equal(ok.code, "2.01");
      assert.equal(
        (await service.registry.get("fleet", "coap-1"))?.credentials?.token,
        JSON.parse(ok.body).credentialsValue,
      );
      assert.deepEqual(await coap(request({ deviceName: "coap-1" })), { code: "4.00", body: FAILURE });
      assert.deepEqual(await coap(request({ provisionDeviceKey: "nope" })), {
        code: "4.00",
        body: NOT_FOUND,
      });
      assert.deepEqual(await coap("garbage"), { code: "4.00", body: FAILURE });
      assert.equal((await coap(request(), "api/v1/other")).code, "4.04");
      assert.equal(audits.at(-1)?.transport, "coap");
      assert.equal(audits.at(-1)?.remote, "127.0.0.1");
    } finally {
      await server.close();
    }
  });
  it("reassembles a request sent in blocks (RFC 7959 Block1) by libcoap, whose tokens differ per block", async () => {
    const { service } = makeService();
    const port = await freeUdpPort();
    const server = await startTbCoapServer(service, { port });
    // An X.509 request carries a PEM certificate; well over one 512-byte block.
    const body = request({ deviceName: "coap-blocks", attributes: { note: "x".repeat(2500) } });
    try {
      const out = await run("coap-client-notls", [
        "-m",
        "post",
        "-t",
        "application/json",
        "-b",
        "512",
        "-e",
        body,
        "-B",
        "10",
        "-v",
        "6",
        `coap://127.0.0.1:${port}/api/v1/provision`,
      ]);
      const text = out.stdout.toString();
      assert.match(text, /Block1:0\/M\/512/, "the client sent the request in 512-byte blocks");
      const acks = [...text.matchAll(/t:ACK c:(\d\.\d\d)/g)].map((m) => m[1]);
      assert.equal(acks.at(-1), "2.01", text.slice(-300));
      assert.ok((await service.registry.get("fleet", "coap-blocks"))?.credentials?.token);
    } finally {
      await server.close();
    }
  });
});
