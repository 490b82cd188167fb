import assert from "node:assert/strict";
import { after, before, describe, it } from "mocha";
import { parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { listenDps, type DpsListener } from "../../../lib/dialects/plgd-dps/listen";
import { CF_OCF_CBOR, PATHS, encodeBody } from "../../../lib/dialects/plgd-dps/ocf";
import { DpsService, type DpsAuditEvent } from "../../../lib/dialects/plgd-dps/server";
import { CoapTcpClient } from "../../../lib/transports/coap-tcp";
import { makeDpsFixture } from "../../support/dps-fixtures";

const fx = makeDpsFixture();

describe("plgd DPS over coaps+tcp: the device certificate is judged before any upload is buffered (issue 8, defect 7)", () => {
  let listener: DpsListener;
  const audit: DpsAuditEvent[] = [];

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
  });
  after(() => listener?.close());

  async function upload(tls: { cert?: string; key?: string }) {
    const client = await CoapTcpClient.connect({
      host: "127.0.0.1",
      port: listener.port,
      tls: { ca: fx.dpsCa, ...tls },
      blockSize: 1024,
    });
    client.on("error", () => undefined);
    try {
      // 8 blocks of 1 KiB: a credentials request with a padded CSR field.
      const payload = encodeBody(
        { di: "x", csr: { data: "A".repeat(8 * 1024), encoding: "pem" } },
        CF_OCF_CBOR,
      );
      const res = await client.request({
        method: "POST",
        path: `/${PATHS.credentials}`,
        contentFormat: CF_OCF_CBOR,
        payload,
      });
      return { res, blocksSent: client.stats.blocksSent };
    } finally {
      await client.close();
    }
  }

  it("a client without a certificate gets 4.01 at the first block, never 2.31 Continue", async () => {
    const { res, blocksSent } = await upload({});
    assert.equal(res.code, "4.01");
    assert.equal(blocksSent, 1, "only the first block was sent: the server answered it with the refusal");
    assert.ok(
      audit.some((e) => e.outcome === "refused" && e.reason === "denied" && e.step === "credentials"),
    );
  });

  it("a device of an unknown manufacturer gets 4.03 at the first block", async () => {
    const { res, blocksSent } = await upload({ cert: fx.other.device.cert, key: fx.other.device.key });
    assert.equal(res.code, "4.03");
    assert.match(res.payload.toString(), /no enrollment group/);
    assert.equal(blocksSent, 1);
  });

  it("an enrolled device's Block1 upload is taken as before", async () => {
    const { res, blocksSent } = await upload({ cert: fx.device.cert, key: fx.device.key });
    // The body is read in full and judged by the credentials step (a bad CSR here).
    assert.equal(res.code, "4.00");
    assert.ok(blocksSent >= 8, `every block was sent (${blocksSent})`);
  });
});
