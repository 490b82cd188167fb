import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { startTbCoapServer } from "../../../lib/dialects/thingsboard/server-coap";
import { tbHttpHandler } from "../../../lib/dialects/thingsboard/server-http";
import type { TbProvisioningService } from "../../../lib/dialects/thingsboard/server";
import { freeUdpPort } from "../../support/ports";
import { run } from "../../support/process";
import { makeService, request } from "../../support/tbserve-fixtures";

const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';
const NOT_FOUND = '{"status":"NOT_FOUND","errorMsg":"Provision data was not found!"}';

async function httpServer(service: TbProvisioningService): Promise<{ url: string; server: Server }> {
  const handler = tbHttpHandler(service);
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
});
