import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { type TbProvisionInput, type TbProvisionOptions } from "../../../lib/dialects/thingsboard/client";
import { provision } from "../../../lib/dialects/thingsboard/device-dialect";
import { mqttExchange } from "../../../lib/dialects/thingsboard/client-mqtt";
import { AbortedError, isFinal } from "../../../lib/retry/run";
import { TbLikeProfile, startMqttResponder } from "../../support/tbdevice-responder";
import { startAedesPeer, startCoapPeer, startHttpPeer } from "../../support/tbdevice-peers";
import { startMosquitto, type Mosquitto } from "../../support/mosquitto";
import { makeTestPki, type TestPki } from "../../support/pki";
import { freeTcpPort, freeUdpPort } from "../../support/ports";

describe("unit/thingsboard/client-transports", () => {
  const FAST = { intervals: [0.05], jitter: 0, maxAttempts: -1 };

  function input(endpoint: string, p: TbLikeProfile, over: Partial<TbProvisionInput> = {}): TbProvisionInput {
    return {
      endpoint,
      provisionDeviceKey: p.key,
      provisionDeviceSecret: p.secret,
      deviceName: "dev-1",
      ...over,
    };
  }

  /** The rejection's code, and the peer's own word (`status`) after it when there is one. */
  async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
    try {
      await promise;
      return "resolved";
    } catch (err) {
      const { code, status } = err as { code?: string; status?: string | number };
      return (code ?? (err as Error).name) + (status === undefined ? "" : ` ${status}`);
    }
  }

  let pki: TestPki;
  let otherPki: TestPki;
  let broker: Mosquitto;
  before(async () => {
    pki = makeTestPki("TbDevice");
    otherPki = makeTestPki("Other");
    broker = await startMosquitto({
      tls: { certPath: pki.serverCertPath, keyPath: pki.serverKeyPath },
    });
  });
  after(async () => {
    await broker?.stop();
  });

  it("MQTT: SUCCESS through mosquitto and a ThingsBoard-like responder", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    try {
      let requesting = 0;
      const r = await provision(input(broker.url, profile, { gateway: false }), {
        onRequesting: () => requesting++,
      });
      assert.equal(r.dialect, "thingsboard");
      assert.equal(r.endpoint, `mqtt://127.0.0.1:${broker.port}`);
      assert.equal(r.credentials.type, "ACCESS_TOKEN");
      assert.match(r.credentials.token ?? "", /^tok-dev-1-/);
      assert.deepEqual(r.configuration, { gateway: false });
      assert.equal(requesting, 1);
      assert.deepEqual(profile.requests[0], {
        deviceName: "dev-1",
        provisionDeviceKey: profile.key,
        provisionDeviceSecret: profile.secret,
        credentialsType: "ACCESS_TOKEN",
        gateway: false,
      });
    } finally {
      await responder.stop();
    }
  });

  it("MQTT: NOT_FOUND is final, FAILURE is not retried unless asked", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    try {
      assert.equal(
        await codeOf(
          provision(input(broker.url, profile, { provisionDeviceSecret: "wrong" }), { policy: FAST }),
        ),
        "NOT_FOUND NOT_FOUND",
      );
      assert.equal(profile.requests.length, 1);
      await provision(input(broker.url, profile, { deviceName: "taken" }));
      assert.equal(
        await codeOf(provision(input(broker.url, profile, { deviceName: "taken" }), { policy: FAST })),
        "REFUSED FAILURE",
      );
      assert.equal(profile.requests.length, 3, "FAILURE was not retried");

      let failures = 1;
      profile.override = () =>
        failures-- > 0 ? { status: "FAILURE", errorMsg: "Failed to provision device!" } : undefined;
      const retries: unknown[] = [];
      const r = await provision(input(broker.url, profile, { deviceName: "later" }), {
        policy: FAST,
        retryRefusals: true,
        onRetry: (i) => retries.push((i.error as { status?: string }).status),
      });
      assert.equal(r.device.name, "later");
      assert.deepEqual(retries, ["FAILURE"]);
    } finally {
      await responder.stop();
    }
  });

  it("MQTT: no answer is a transient TIMEOUT", async () => {
    const profile = new TbLikeProfile();
    profile.override = () => "drop";
    const responder = await startMqttResponder(broker.url, profile);
    try {
      await assert.rejects(
        provision(input(broker.url, profile), { timeoutMs: 300, policy: { ...FAST, maxAttempts: 1 } }),
        (err: Error & { code?: string }) => err.code === "TIMEOUT" && !isFinal(err),
      );
    } finally {
      await responder.stop();
    }
  });

  it("MQTT: the server comes up after the first attempt failed; the retry succeeds", async () => {
    const port = await freeTcpPort();
    const profile = new TbLikeProfile();
    let late: Mosquitto | undefined;
    let responder: Awaited<ReturnType<typeof startMqttResponder>> | undefined;
    let ready: Promise<void> | undefined;
    const errors: string[] = [];
    try {
      const r = await provision(input(`mqtt://127.0.0.1:${port}`, profile), {
        policy: FAST,
        onRetry: (info) => {
          errors.push((info.error as { code?: string }).code ?? "?");
          ready ??= (async () => {
            late = await startMosquitto({ port });
            responder = await startMqttResponder(late.url, profile);
          })();
        },
        // Attempts after the first wait for the broker: the test is driven by events, not time.
        exchange: async (uri, body, opts) => {
          if (ready) await ready;
          return mqttExchange(uri, body, opts);
        },
      });
      assert.equal(r.credentials.type, "ACCESS_TOKEN");
      assert.deepEqual(errors, ["CONNECT"]);
    } finally {
      await responder?.stop();
      await late?.stop();
    }
  });

  it("MQTT: an abort stops the retry wait at once", async () => {
    const port = await freeTcpPort();
    const ac = new AbortController();
    const p = provision(input(`mqtt://127.0.0.1:${port}`, new TbLikeProfile()), {
      policy: { intervals: [600], jitter: 0, maxAttempts: -1 },
      signal: ac.signal,
      onRetry: () => ac.abort(),
    });
    await assert.rejects(p, AbortedError);
  });

  it("MQTTS: verified by default; another CA is refused; accepted only with verification off", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    const url = broker.tlsUrl as string;
    try {
      const ok = await provision(input(url, profile, { deviceName: "tls-ok" }), { tls: { ca: pki.caCert } });
      assert.equal(ok.endpoint, url);
      assert.equal(
        await codeOf(provision(input(url, profile, { deviceName: "tls-sys" }), { policy: FAST })),
        "TLS",
      );
      assert.equal(
        await codeOf(
          provision(input(url, profile, { deviceName: "tls-other" }), {
            tls: { ca: otherPki.caCert },
            policy: FAST,
          }),
        ),
        "TLS",
      );
      // The error says what failed, in words a person can act on.
      await assert.rejects(
        provision(input(url, profile, { deviceName: "tls-other-2" }), {
          tls: { ca: otherPki.caCert },
          policy: FAST,
        }),
        /TLS with mqtts:\/\/.+ failed: the server's certificate is not signed by a CA this side trusts/,
      );
      await assert.rejects(
        provision(input(url, profile, { deviceName: "tls-host" }), {
          tls: { ca: pki.caCert, servername: "other.test" },
          policy: FAST,
        }),
        /failed: the server's certificate is for another host name/,
      );
      assert.equal(profile.requests.length, 1, "nothing was sent to an unverified server");
      const off = await provision(input(url, profile, { deviceName: "tls-off" }), {
        tls: { ca: otherPki.caCert, rejectUnauthorized: false },
      });
      assert.equal(off.device.name, "tls-off");
    } finally {
      await responder.stop();
    }
  });

  it("MQTTS: mutual TLS with a client certificate and key", async () => {
    const mtls = await startMosquitto({
      tls: {
        certPath: pki.serverCertPath,
        keyPath: pki.serverKeyPath,
        caPath: pki.caCertPath,
        requireCertificate: true,
      },
    });
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(mtls.url, profile);
    try {
      const client = pki.issueClient("device-1");
      const r = await provision(input(mtls.tlsUrl as string, profile), {
        tls: { ca: pki.caCert, cert: client.cert, key: client.key },
      });
      assert.equal(r.credentials.type, "ACCESS_TOKEN");
      const without = await codeOf(
        provision(input(mtls.tlsUrl as string, profile, { deviceName: "no-cert" }), {
          tls: { ca: pki.caCert },
          policy: { ...FAST, maxAttempts: 1 },
        }),
      );
      assert.ok(
        without === "CONNECT" || without === "TLS",
        `refused without a client certificate (${without})`,
      );
    } finally {
      await responder.stop();
      await mtls.stop();
    }
  });

  it("MQTT: concurrent devices each get their own answer (per-session broker, as ThingsBoard)", async () => {
    const profile = new TbLikeProfile();
    const peer = await startAedesPeer(profile);
    try {
      const names = ["child-1", "child-2", "child-3", "child-4", "child-5"];
      const results = await Promise.all(
        names.map((n) => provision(input(peer.url, profile, { deviceName: n }))),
      );
      results.forEach((r, i) => {
        assert.equal(r.device.name, names[i]);
        assert.match(r.credentials.token ?? "", new RegExp(`^tok-${names[i]}-`));
      });
    } finally {
      await peer.stop();
    }
  });

  it("HTTP: SUCCESS, MQTT_BASIC and X.509; NOT_FOUND final; a wrong path is a final NOT_FOUND with status 404", async () => {
    const profile = new TbLikeProfile();
    const peer = await startHttpPeer(profile);
    try {
      const r = await provision(input(peer.url, profile));
      assert.equal(r.endpoint, `${peer.url}/api/v1/provision`);
      assert.deepEqual(peer.paths, ["POST /api/v1/provision"]);
      const basic = await provision(
        input(peer.url, profile, {
          deviceName: "basic",
          credentials: { type: "MQTT_BASIC", clientId: "cid", username: "user", password: "pw-1234" },
        }),
      );
      assert.deepEqual(basic.credentials, {
        type: "MQTT_BASIC",
        clientId: "cid",
        username: "user",
        password: "pw-1234",
      });
      const x = await provision(
        input(peer.url, profile, { deviceName: "cert-dev", credentials: { type: "X509_CERTIFICATE" } }),
      );
      assert.match(x.credentials.certificate ?? "", /BEGIN CERTIFICATE/);
      assert.match(x.credentials.privateKey ?? "", /BEGIN PRIVATE KEY/);
      assert.ok(!profile.raw.some((b) => b.includes("PRIVATE KEY")));
      assert.equal(
        await codeOf(provision(input(peer.url, profile, { provisionDeviceKey: "nope" }), { policy: FAST })),
        "NOT_FOUND NOT_FOUND",
      );
      // A path that is not ThingsBoard's answers HTTP 404: final, and told apart by its status.
      assert.equal(
        await codeOf(provision(input(`${peer.url}/wrong`, profile), { policy: FAST })),
        "NOT_FOUND 404",
      );
    } finally {
      await peer.stop();
    }
  });

  it("HTTPS: the configured CA verifies; another CA is refused; concurrent requests", async () => {
    const profile = new TbLikeProfile();
    const peer = await startHttpPeer(profile, { cert: pki.serverCert, key: pki.serverKey });
    try {
      const names = ["h-1", "h-2", "h-3"];
      const rs = await Promise.all(
        names.map((n) => provision(input(peer.url, profile, { deviceName: n }), { tls: { ca: pki.caCert } })),
      );
      assert.deepEqual(
        rs.map((r) => r.device.name),
        names,
      );
      assert.equal(
        await codeOf(
          provision(input(peer.url, profile, { deviceName: "x" }), { tls: { ca: otherPki.caCert } }),
        ),
        "TLS",
      );
    } finally {
      await peer.stop();
    }
  });

  it("CoAP: 2.01 SUCCESS, 4.00 NOT_FOUND final, silence is a TIMEOUT", async () => {
    const profile = new TbLikeProfile();
    const peer = await startCoapPeer(profile);
    try {
      const r = await provision(input(peer.url, profile));
      assert.equal(r.endpoint, `${peer.url}/api/v1/provision`);
      assert.equal(
        await codeOf(provision(input(peer.url, profile, { provisionDeviceSecret: "bad" }), { policy: FAST })),
        "NOT_FOUND NOT_FOUND",
      );
      assert.deepEqual(peer.codes, ["2.01", "4.00"]);
      const silent = await freeUdpPort();
      assert.equal(
        await codeOf(
          provision(input(`coap://127.0.0.1:${silent}`, profile), {
            timeoutMs: 300,
            policy: { ...FAST, maxAttempts: 1 },
          }),
        ),
        "TIMEOUT",
      );
    } finally {
      await peer.stop();
    }
  });

  it("option objects are plain and reusable", () => {
    const o: TbProvisionOptions = { timeoutMs: 1 };
    assert.equal(o.timeoutMs, 1);
  });
});
