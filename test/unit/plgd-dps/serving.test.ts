import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "mocha";
import { plgdDpsDialect } from "../../../lib/dialects/plgd-dps/device-dialect";
import { DpsStepError } from "../../../lib/dialects/plgd-dps/errors";
import { parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { CF_OCF_CBOR, PATHS } from "../../../lib/dialects/plgd-dps/ocf";
import { plgdDpsServing, type DpsRunningService } from "../../../lib/dialects/plgd-dps/serving";
import { coapTcpConnector } from "../../../lib/dialects/plgd-dps/transport";
import type { ProvisioningResult } from "../../../lib/model/result";
import type { ProvisioningRequest } from "../../../lib/model/service";
import { CertificateAuthority } from "../../../lib/pki/signer";
import type { ServiceAuditEvent } from "../../../lib/service/audit";
import { buildServiceContext, type ServiceSettings } from "../../../lib/service/context";
import { MemoryBackend } from "../../../lib/stores/memory";
import { issueDevice, makeDpsFixture, type Pair } from "../../support/dps-fixtures";

describe("unit/plgd-dps/serving", () => {
  const fx = makeDpsFixture();
  const running: DpsRunningService[] = [];

  async function serve(over: Partial<ServiceSettings> = {}) {
    const audit: ServiceAuditEvent[] = [];
    const built = buildServiceContext({
      dialect: "plgd-dps",
      lockAccount: "deviceId",
      rateLimit: false,
      audit: (e) => audit.push(e),
      ...over,
    });
    const s = await plgdDpsServing.start(
      {
        groups: [parseEnrollmentGroup(fx.groupConfig())],
        host: "127.0.0.1",
        port: 0,
        tls: { cert: fx.dpsServer.cert, key: fx.dpsServer.key },
      },
      built.ctx,
    );
    running.push(s);
    return { s, built, audit, endpoint: `coaps+tcp://127.0.0.1:${s.port}` };
  }

  after(async () => {
    for (const s of running) await s.stop();
  });

  function tlsOf(device: Pair) {
    return { cert: device.cert, key: device.key, ca: fx.dpsCa };
  }

  /** One provisioning attempt of the device dialect; resolves the result or the error. */
  async function attempt(
    endpoint: string,
    device: Pair = fx.device,
    deviceId: string = randomUUID(),
  ): Promise<ProvisioningResult | DpsStepError> {
    const prepared = await plgdDpsDialect.prepare({ endpoint }, deviceId, () => undefined);
    try {
      return await plgdDpsDialect.attempt(prepared, {
        signal: new AbortController().signal,
        timeoutMs: 10000,
        tls: tlsOf(device),
      });
    } catch (err) {
      assert.ok(err instanceof DpsStepError, `a DpsStepError, not ${String(err)}`);
      return err;
    }
  }

  /** A lone ACL request from `device`, on a connection of its own. */
  async function aclsCode(endpoint: string, device: Pair = fx.device): Promise<string> {
    const t = await coapTcpConnector(tlsOf(device))(endpoint, { timeoutMs: 10000 });
    try {
      const r = await t.request(
        { method: "GET", path: `/${PATHS.acls}`, accept: CF_OCF_CBOR },
        { timeoutMs: 10000 },
      );
      return r.code;
    } finally {
      await t.close();
    }
  }

  describe("plgd DPS service on the serving seam", () => {
    it("remembers across a restart on the same store which device identified, so its ACL step still succeeds", async () => {
      const store = new MemoryBackend();
      const first = await serve({ store });
      const r = await attempt(first.endpoint);
      assert.ok(!(r instanceof Error), "provisioned");
      await first.s.stop();
      const second = await serve({ store });
      assert.equal(await aclsCode(second.endpoint), "2.05");
      // On a store that never saw the device, the same request is refused: the store made the difference.
      const fresh = await serve({ store: new MemoryBackend() });
      assert.equal(await aclsCode(fresh.endpoint), "4.03");
    });

    it("keeps a device id to one manufacturer certificate (4.09 CONFLICT for another one)", async () => {
      const { endpoint, audit } = await serve();
      const di = randomUUID();
      assert.ok(!((await attempt(endpoint, fx.device, di)) instanceof Error));
      const twin = issueDevice(CertificateAuthority.fromPem(fx.mfgCa.cert, fx.mfgCa.key), "twin device");
      const e = await attempt(endpoint, twin, di);
      assert.ok(e instanceof DpsStepError);
      assert.equal(e.code, "CONFLICT");
      assert.equal(e.coapCode, "4.09");
      assert.ok(audit.some((a) => a.outcome === "refused" && a.reason === "conflict"));
      // The first device keeps its id and can provision again.
      assert.ok(!((await attempt(endpoint, fx.device, di)) instanceof Error));
      // After a factory reset it identifies with a new id, and gives the old one up.
      assert.ok(!((await attempt(endpoint, fx.device, randomUUID())) instanceof Error));
      assert.ok(!((await attempt(endpoint, twin, di)) instanceof Error), "the freed id can be taken");
    });

    it("asks the flow before an identity certificate is issued, and a refusal is DENIED with the reason", async () => {
      const asked: Array<{ correlationId: string; request: ProvisioningRequest }> = [];
      let approve = false;
      const { endpoint, built } = await serve({
        decide: {
          timeoutMs: 10000,
          ask: (correlationId, request) => {
            asked.push({ correlationId, request });
            built.answer(
              correlationId,
              approve ? { approve: true } : { approve: false, reason: "not today" },
            );
          },
        },
      });
      const di = randomUUID();
      const refused = await attempt(endpoint, fx.device, di);
      assert.ok(refused instanceof DpsStepError);
      assert.equal(refused.code, "DENIED");
      assert.equal(refused.coapCode, "4.03");
      assert.match(refused.message, /refused by the flow: not today/);
      assert.equal(asked.length, 1);
      assert.equal(asked[0].request.deviceId, di);
      assert.equal(asked[0].request.proof, "manufacturer-certificate");
      assert.equal(asked[0].request.dialect, "plgd-dps");
      approve = true;
      const ok = await attempt(endpoint, fx.device, di);
      assert.ok(!(ok instanceof Error), "approved");
      assert.equal(asked.length, 2);
    });

    it("refuses a remote over its rate with 5.03 and Max-Age, which the device reads as BUSY with the wait", async () => {
      const { endpoint, audit } = await serve({ rateLimit: { perSecond: 0.01, burst: 2 } });
      const e = await attempt(endpoint);
      assert.ok(e instanceof DpsStepError, "the third request is throttled");
      assert.equal(e.code, "BUSY");
      assert.equal(e.coapCode, "5.03");
      assert.equal(e.final, false);
      assert.equal(e.retryAfterMs, 100_000);
      assert.ok(audit.some((a) => a.outcome === "throttled" && a.retryAfterS === 100));
    });

    it("counts failed manufacturer certificates per address and locks the address out", async () => {
      const { endpoint, audit, s } = await serve({
        failureLimit: { slowAfter: 100, lockAfter: 2, lockMs: 60_000 },
      });
      for (let i = 0; i < 2; i++) {
        const e = await attempt(endpoint, fx.other.device);
        assert.ok(e instanceof DpsStepError);
        assert.equal(e.code, "DENIED");
      }
      const locked = await attempt(endpoint, fx.other.device);
      assert.ok(locked instanceof DpsStepError);
      assert.equal(locked.code, "BUSY");
      assert.equal(locked.retryAfterMs, 60_000);
      assert.ok(audit.some((a) => a.outcome === "locked"));
      assert.equal(s.counts().locked, 1);
    });
  });
});
