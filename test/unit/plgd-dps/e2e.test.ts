import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, describe, it } from "mocha";
import { DpsClient } from "../../../lib/dialects/plgd-dps/client";
import { parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { listenDps, type DpsListener } from "../../../lib/dialects/plgd-dps/listen";
import { DpsService, type DpsAuditEvent } from "../../../lib/dialects/plgd-dps/server";
import { coapTcpConnector } from "../../../lib/dialects/plgd-dps/transport";
import type { ProvisioningResult } from "../../../lib/model/result";
import { MemoryBackend } from "../../../lib/stores/memory";
import { StatusLog, makeDpsFixture } from "../../support/dps-fixtures";
import { within } from "../../support/events";

const fx = makeDpsFixture();

describe("plgd DPS end to end over coaps+tcp with mutual TLS", () => {
  const audit: DpsAuditEvent[] = [];
  let listener: DpsListener;
  let endpoint: string;

  before(async () => {
    const service = new DpsService({
      groups: [parseEnrollmentGroup(fx.groupConfig())],
      onAudit: (e) => audit.push(e),
    });
    listener = await listenDps({
      service,
      host: "127.0.0.1",
      port: 0,
      tls: { cert: fx.dpsServer.cert, key: fx.dpsServer.key },
    });
    endpoint = `coaps+tcp://127.0.0.1:${listener.port}`;
  });
  after(() => listener.close());

  it("provisions a device and the result holds a working identity", async () => {
    const log = new StatusLog();
    const result = await within<ProvisioningResult>(20000, "the provisioning result", (resolve) => {
      const client = new DpsClient({
        endpoints: [endpoint],
        connect: coapTcpConnector({ cert: fx.device.cert, key: fx.device.key, ca: fx.dpsCa }),
        store: new MemoryBackend(),
        onStatus: log.push,
        onResult: (r) => {
          void client.stop();
          resolve(r);
        },
      });
      void client.start();
    });
    assert.equal(
      new X509Certificate(result.credentials.certificate ?? "").subject,
      `CN=uuid:${result.device.id}`,
    );
    assert.ok(log.events.some((e) => e.status.includes("CLOUD_STARTED")));
    assert.ok(
      audit.some(
        (e) => e.outcome === "provisioned" && e.deviceId === result.device.id && e.transport === "coaps+tcp",
      ),
    );
  });

  it("refuses a device of an unknown manufacturer with 4.03 and a reason", async () => {
    const log = new StatusLog();
    const client = new DpsClient({
      endpoints: [endpoint],
      connect: coapTcpConnector({ cert: fx.other.device.cert, key: fx.other.device.key, ca: fx.dpsCa }),
      onStatus: log.push,
    });
    const failed = log.next((e) => e.error !== undefined, 20000);
    await client.start();
    const e = await failed;
    await client.stop();
    assert.ok(e.status.includes("FAILURE"));
    assert.equal(e.error?.code, "DENIED");
    assert.equal(e.error?.coapCode, "4.03");
    assert.match(e.error?.message ?? "", /no enrollment group for issuer "Other Manufacturer CA"/);
  });

  it("does not talk to a service its DPS CA does not vouch for", async () => {
    const log = new StatusLog();
    const client = new DpsClient({
      endpoints: [endpoint],
      connect: coapTcpConnector({ cert: fx.device.cert, key: fx.device.key, ca: fx.mfgCa.cert }),
      onStatus: log.push,
    });
    const failed = log.next((e) => e.error !== undefined, 20000);
    await client.start();
    const e = await failed;
    await client.stop();
    // A certificate that does not verify is final (code TLS), as in every dialect: a
    // FAILURE, so the next attempt re-provisions fully; plgd's client still retries it.
    assert.ok(e.status.includes("FAILURE"));
    assert.ok(!e.status.includes("TRANSIENT_FAILURE"));
    assert.equal(e.error?.code, "TLS");
    assert.equal(e.error?.transient, false);
    assert.equal(e.retryInMs !== undefined, true, "retried on plgd's schedule");
    assert.match(e.error?.message ?? "", /TLS|certificate/i);
  });
});
