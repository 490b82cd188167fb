import assert from "node:assert/strict";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { after, before, describe, it } from "mocha";
import { parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { listenDps, type DpsListener } from "../../../lib/dialects/plgd-dps/listen";
import { CF_JSON, CF_OCF_CBOR, PATHS } from "../../../lib/dialects/plgd-dps/ocf";
import { DpsService } from "../../../lib/dialects/plgd-dps/server";
import { CoapTcpClient } from "../../../lib/transports/coap-tcp";
import { makeDpsFixture } from "../../support/dps-fixtures";

const fx = makeDpsFixture();

/** 250 kB of CBOR arrays nested in each other: [[[[...0...]]]]. */
function cborBomb(bytes = 250_000): Buffer {
  const b = Buffer.alloc(bytes, 0x81);
  b[bytes - 1] = 0x00;
  return b;
}

describe("plgd DPS over coaps+tcp: deep bodies are refused before they are decoded (issue 8, defect 6)", () => {
  let listener: DpsListener;
  let client: CoapTcpClient;

  before(async () => {
    const service = new DpsService({ groups: [parseEnrollmentGroup(fx.groupConfig())] });
    listener = await listenDps({
      service,
      host: "127.0.0.1",
      port: 0,
      tls: { cert: fx.dpsServer.cert, key: fx.dpsServer.key },
    });
    client = await CoapTcpClient.connect({
      host: "127.0.0.1",
      port: listener.port,
      tls: { cert: fx.device.cert, key: fx.device.key, ca: fx.dpsCa },
      requestTimeoutMs: 30000,
    });
    client.on("error", () => undefined);
  });
  after(async () => {
    await client?.close();
    await listener?.close();
  });

  it("a 250 kB body of nested CBOR arrays gets 4.00 Bad Request naming the depth limit", async () => {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const res = await client.request({
      method: "POST",
      path: `/${PATHS.credentials}`,
      contentFormat: CF_OCF_CBOR,
      payload: cborBomb(),
    });
    delay.disable();
    assert.equal(res.code, "4.00");
    // The text proves the structure walk refused it: the decoder never saw the body.
    assert.match(res.payload.toString(), /nested deeper than 32 levels/);
    console.log(`event loop delay while serving it: max ${(delay.max / 1e6).toFixed(1)} ms`);
  });

  it("JSON nested 100,000 deep gets 4.00 too", async () => {
    const res = await client.request({
      method: "POST",
      path: `/${PATHS.credentials}`,
      contentFormat: CF_JSON,
      payload: Buffer.from("[".repeat(100_000) + "]".repeat(100_000)),
    });
    assert.equal(res.code, "4.00");
    assert.match(res.payload.toString(), /nested deeper than 32 levels/);
  });

  it("the same connection still serves a well-formed request right after", async () => {
    const res = await client.request({ method: "GET", path: `/${PATHS.time}` });
    assert.equal(res.code, "2.05");
  });
});
