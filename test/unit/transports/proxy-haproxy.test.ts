/**
 * Behind a real HAProxy (test/support/haproxy.ts, TCP mode, send-proxy-v2 / send-proxy):
 * clients connect from 127.0.0.2 and 127.0.0.3, HAProxy connects to the server from
 * 127.0.0.1, and with the PROXY protocol on, what the user depends on (the per-address
 * caps, the audit's remote) belongs to each client, not to the proxy. With it off, a PROXY
 * header is garbage to MQTT; with it on, a client without one is cut. And HTTP on an
 * Express app (Node-RED's httpNode): X-Forwarded-For believed with `trust proxy`, ignored
 * without.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { connect as netConnect, type AddressInfo } from "node:net";
import { connect as tlsConnect } from "node:tls";
import express from "express";
import { after, before, describe, it } from "mocha";
import { MqttClient } from "mqtt";
import { tbHttpHandler } from "../../../lib/dialects/thingsboard/server-http";
import { startTbMqttServer } from "../../../lib/dialects/thingsboard/server-mqtt";
import { CoapTcpServer, type CoapServerRequest } from "../../../lib/transports/coap-tcp";
import { Code, Opt } from "../../../lib/transports/coap-tcp/codes";
import { encodeMessage, FrameParser, type CoapMessage } from "../../../lib/transports/coap-tcp/frame";
import { csm } from "../../../lib/transports/coap-tcp/signaling";
import { startEmbeddedBroker, type CutReason } from "../../../lib/transports/embedded-broker";
import { HAPROXY_MISSING, haproxyPresent, startHaproxy, type Haproxy } from "../../support/haproxy";
import { CONNACK, connectPacket, RawSession } from "../../support/mqtt-raw";
import { makeTestPki, type TestPki } from "../../support/pki";
import { proxyV2 } from "../../support/proxy-header";
import { makeService, request } from "../../support/tbserve-fixtures";
import { HUB_A, ID_SCOPE, startTestService } from "../../support/azure-dps-service";

/** The CONNACK return code a raw session got, or undefined if it was closed without one. */
async function connack(s: RawSession): Promise<number | undefined> {
  await s.until((p) => p.some((x) => x.type === CONNACK));
  return s.packets.find((x) => x.type === CONNACK)?.body[1];
}

interface Cut {
  reason: CutReason;
  remote: string | undefined;
  detail?: string;
}

describe("unit/transports/proxy-haproxy: behind HAProxy", function () {
  const running: Haproxy[] = [];
  let pki: TestPki;
  before(function () {
    if (!haproxyPresent()) {
      console.warn(HAPROXY_MISSING);
      this.skip();
    }
    pki = makeTestPki("Proxy");
  });
  after(async () => {
    for (const h of running.splice(0)) await h.stop();
  });
  const haproxy = async (backendPort: number, proxy: 1 | 2 = 2) => {
    const h = await startHaproxy([{ backendPort, proxy }]);
    running.push(h);
    return h.ports[0];
  };

  it("embedded broker (plain), send-proxy-v2: the per-address cap counts each client, not the proxy", async () => {
    const admitted: Array<string | undefined> = [];
    const cuts: Cut[] = [];
    const broker = await startEmbeddedBroker({
      host: "127.0.0.1",
      port: 0,
      proxyProtocol: true,
      limits: { maxPerRemote: 1, evictIdleAfterMs: 600000, firstRequestMs: 0 },
      admit: (remote) => {
        admitted.push(remote);
        return true;
      },
      onCut: (reason, remote, detail) => cuts.push({ reason, remote, detail }),
      hooks: {},
    });
    const sessions: RawSession[] = [];
    try {
      const front = await haproxy(broker.port);
      const open = async (from: string, clientId: string) => {
        const s = await RawSession.open(front, from);
        sessions.push(s);
        s.write(connectPacket({ clientId }));
        return connack(s);
      };
      assert.equal(await open("127.0.0.2", "a"), 0);
      // The same client again: its one slot is held, so "server unavailable".
      assert.equal(await open("127.0.0.2", "b"), 3);
      // Another client through the same proxy: a slot of its own (collapsed on the
      // proxy's 127.0.0.1, it would have been refused too).
      assert.equal(await open("127.0.0.3", "c"), 0);
      assert.deepEqual(admitted, ["127.0.0.2", "127.0.0.3"]);
      assert.deepEqual(
        cuts.filter((c) => c.reason === "full").map((c) => c.remote),
        ["127.0.0.2"],
      );
      const clientIds = Object.keys(
        (broker.aedes as unknown as { clients: Record<string, unknown> }).clients,
      );
      assert.ok(clientIds.includes("a") && clientIds.includes("c"));
    } finally {
      for (const s of sessions) s.destroy();
      await broker.close();
    }
  });

  it("ThingsBoard over MQTT/TLS, send-proxy (v1): mqtt.js provisions through HAProxy, audited from its own address", async () => {
    const { service, audits } = makeService();
    const server = await startTbMqttServer(service, {
      host: "127.0.0.1",
      port: 0,
      tls: { key: pki.serverKey, cert: pki.serverCert },
      proxyProtocol: true,
      closeAfterMs: 60000,
    });
    let client: MqttClient | undefined;
    try {
      const front = await haproxy(server.port, 1);
      // mqtt.js's own connect() cannot choose a source address; its stream builder can.
      client = new MqttClient(
        () =>
          tlsConnect({
            socket: netConnect({ host: "127.0.0.1", port: front, localAddress: "127.0.0.3" }),
            ca: pki.caCert,
            servername: "localhost",
          }),
        { username: "provision", protocolVersion: 4, reconnectPeriod: 0, clientId: "tb-behind-proxy" },
      );
      client.on("error", () => undefined);
      await new Promise((resolve) => client?.once("connect", resolve));
      await client.subscribeAsync("/provision/response", { qos: 1 });
      const answer = new Promise<string>((resolve) =>
        client?.once("message", (_t, payload: Buffer) => resolve(payload.toString())),
      );
      await client.publishAsync("/provision/request", request({ deviceName: "behind-haproxy" }), { qos: 1 });
      const res = JSON.parse(await answer) as { status: string; credentialsValue: string };
      assert.equal(res.status, "SUCCESS");
      assert.equal(
        (await service.registry.get("fleet", "behind-haproxy"))?.credentials?.token,
        res.credentialsValue,
      );
      assert.deepEqual(
        audits.map((a) => [a.transport, a.remote]),
        [["mqtt", "127.0.0.3"]],
      );
    } finally {
      client?.end(true);
      await server.close();
    }
  });

  for (const secure of [false, true]) {
    it(`CoAP over ${secure ? "TLS" : "TCP"}, send-proxy-v2: requests and the per-address cap see the client`, async () => {
      const remotes: string[] = [];
      const errors: Error[] = [];
      const server = new CoapTcpServer({
        handler: (req: CoapServerRequest) => {
          remotes.push(req.remote);
          return Promise.resolve({ code: "2.05", payload: Buffer.from("ok") });
        },
        maxConnectionsPerAddress: 1,
        proxyProtocol: true,
        ...(secure ? { tls: { key: pki.serverKey, cert: pki.serverCert, ALPNProtocols: ["coap"] } } : {}),
      });
      server.on("error", (e: Error) => errors.push(e));
      const { port } = await server.listen(0, "127.0.0.1");
      const sockets: Array<ReturnType<typeof netConnect>> = [];
      try {
        const front = await haproxy(port);
        /** A GET over a fresh connection from `from`: the answer's payload, or undefined when closed first. */
        const get = (from: string) =>
          new Promise<string | undefined>((resolve) => {
            const opts = { host: "127.0.0.1", port: front, localAddress: from };
            const s = secure
              ? tlsConnect({
                  socket: netConnect(opts),
                  ca: pki.caCert,
                  servername: "localhost",
                  ALPNProtocols: ["coap"],
                })
              : netConnect(opts);
            sockets.push(s);
            s.on("error", () => undefined);
            s.once(secure ? "secureConnect" : "connect", () => {
              const get: CoapMessage = {
                code: Code.GET,
                token: Buffer.from([1]),
                options: [{ number: Opt.URI_PATH, value: Buffer.from("x") }],
                payload: Buffer.alloc(0),
              };
              s.write(Buffer.concat([encodeMessage(csm(1152, false)), encodeMessage(get)]));
            });
            const parser = new FrameParser(1 << 20);
            s.on("data", (chunk: Buffer) => {
              for (const m of parser.push(chunk).messages)
                if (m.token.length === 1 && m.token[0] === 1) resolve(m.payload.toString());
            });
            s.once("close", () => resolve(undefined));
          });
        assert.equal(await get("127.0.0.2"), "ok");
        assert.match(remotes[0] ?? "", /^127\.0\.0\.2:\d+$/);
        // The first connection from 127.0.0.2 is still open: a second is over its cap of 1 ...
        assert.equal(await get("127.0.0.2"), undefined);
        assert.ok(
          errors.some((e) => /127\.0\.0\.2 holds its maximum of 1 connections/.test(e.message)),
          errors.map((e) => e.message).join("; "),
        );
        // ... while another client through the same proxy is served.
        assert.equal(await get("127.0.0.3"), "ok");
        assert.match(remotes[1] ?? "", /^127\.0\.0\.3:\d+$/);
      } finally {
        for (const s of sockets) s.destroy();
        await server.close();
      }
    });
  }

  it("Azure DPS over HTTPS, send-proxy-v2: a registration is audited from the device's address", async () => {
    const t = await startTestService({
      idScope: ID_SCOPE,
      linkedHubs: [HUB_A],
      enrollments: [],
      https: {
        host: "127.0.0.1",
        port: 0,
        tls: { key: pki.serverKey, cert: pki.serverCert },
        proxyProtocol: true,
      },
    });
    try {
      const front = await haproxy(t.running.httpsPort as number);
      const answer = await new Promise<string>((resolve, reject) => {
        const s = tlsConnect({
          socket: netConnect({ host: "127.0.0.1", port: front, localAddress: "127.0.0.2" }),
          ca: pki.caCert,
          servername: "localhost",
        });
        let text = "";
        s.on("data", (d: Buffer) => (text += d.toString()));
        s.on("error", reject);
        s.on("end", () => resolve(text));
        s.once("secureConnect", () =>
          s.write(
            `PUT /${ID_SCOPE}/registrations/unknown-device/register?api-version=2021-06-01 HTTP/1.1\r\n` +
              "Host: localhost\r\nContent-Type: application/json\r\nContent-Length: 36\r\nConnection: close\r\n\r\n" +
              '{"registrationId":"unknown-device"}\n',
          ),
        );
      });
      // No proof for an unknown registration: Azure's 401, audited with the device's address.
      assert.match(answer, /^HTTP\/1\.1 401/);
      assert.equal(t.audits.at(-1)?.transport, "https");
      assert.equal(t.audits.at(-1)?.remote, "127.0.0.2");
    } finally {
      await t.stop();
    }
  });

  it("option off: a PROXY header is garbage to MQTT (closed, no crash); option on: a client without one is cut", async () => {
    const plain = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, hooks: {} });
    const cuts: Cut[] = [];
    const proxied = await startEmbeddedBroker({
      host: "127.0.0.1",
      port: 0,
      proxyProtocol: true,
      onCut: (reason, remote, detail) => cuts.push({ reason, remote, detail }),
      hooks: {},
    });
    try {
      const front = await haproxy(plain.port);
      const via = await RawSession.open(front, "127.0.0.2");
      via.write(connectPacket({ clientId: "via-proxy" }));
      assert.equal(
        await connack(via),
        undefined,
        "the broker answered a connection that began with a PROXY header",
      );
      await via.closed;
      // Still serving: a direct client is answered.
      const direct = await RawSession.open(plain.port);
      direct.write(connectPacket({ clientId: "direct" }));
      assert.equal(await connack(direct), 0);
      direct.destroy();

      const bare = await RawSession.open(proxied.port);
      bare.write(connectPacket({ clientId: "no-header" }));
      assert.equal(await connack(bare), undefined);
      await bare.closed;
      assert.equal(cuts.length, 1);
      assert.equal(cuts[0].reason, "proxy header");
      assert.equal(cuts[0].remote, "127.0.0.1");
      assert.match(cuts[0].detail ?? "", /no PROXY protocol header/);
      // And one that does send it, straight from a test speaking for a proxy.
      const withHeader = await RawSession.open(proxied.port);
      withHeader.write(proxyV2({ src: "192.0.2.44" }), connectPacket({ clientId: "with-header" }));
      assert.equal(await connack(withHeader), 0);
      withHeader.destroy();
    } finally {
      await plain.close();
      await proxied.close();
    }
  });
});

describe("unit/transports/proxy-haproxy: HTTP on Express (httpNode) and trust proxy", () => {
  const serve = async (trust: string | undefined) => {
    const { service, audits } = makeService();
    const app = express();
    // What settings.js httpServerOptions does to httpNode (@node-red/runtime lib/index.js).
    if (trust !== undefined) app.set("trust proxy", trust);
    const handler = tbHttpHandler(service);
    app.post("/api/v1/provision", (req, res) => handler(req, res));
    const server: Server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/provision`;
    return { server, audits, url };
  };
  const post = (url: string, deviceName: string) =>
    fetch(url, {
      method: "POST",
      body: request({ deviceName }),
      headers: { "content-type": "application/json", "x-forwarded-for": "203.0.113.5" },
    }).then((r) => r.text());

  it("with trust proxy, the address the proxy put in X-Forwarded-For is the peer", async () => {
    const { server, audits, url } = await serve("loopback");
    try {
      assert.match(await post(url, "xff-trusted"), /SUCCESS/);
      assert.equal(audits.at(-1)?.remote, "203.0.113.5");
    } finally {
      server.close();
    }
  });

  it("without it, X-Forwarded-For is ignored: the socket's address is the peer", async () => {
    const { server, audits, url } = await serve(undefined);
    try {
      assert.match(await post(url, "xff-ignored"), /SUCCESS/);
      assert.equal(audits.at(-1)?.remote, "127.0.0.1");
    } finally {
      server.close();
    }
  });
});
