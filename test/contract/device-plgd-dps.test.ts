/**
 * The device-side contract (device-dialect.contract.ts) for plgd DPS: success and
 * refusal come from this package's plgd DPS service on coaps+tcp with mutual TLS (the
 * serving side, which the plgd tests check against libcoap's coap-client); the refusal
 * is the service's answer to a manufacturer no enrollment group knows (4.03). Garbage,
 * silence and an unknown CA are plain CoAP over TCP servers (RFC 8323). A plgd device id
 * is a UUID, so the suite's names are turned into stable UUIDs.
 */
import { createHash } from "node:crypto";
import { plgdDpsDialect, type PlgdDpsSettings } from "../../lib/dialects/plgd-dps/device-dialect";
import { parseEnrollmentGroup } from "../../lib/dialects/plgd-dps/enrollment";
import { listenDps } from "../../lib/dialects/plgd-dps/listen";
import { PATHS } from "../../lib/dialects/plgd-dps/ocf";
import { DpsService, type DpsServerRequest } from "../../lib/dialects/plgd-dps/server";
import { CoapTcpServer } from "../../lib/transports/coap-tcp";
import type { CoapResponse } from "../../lib/transports/coap-tcp/types";
import { makeDpsFixture } from "../support/dps-fixtures";
import { deviceDialectContract, type ContractPeer, type PeerKind } from "./device-dialect.contract";

const fx = makeDpsFixture();
const TIME = `/${PATHS.time}`;

/** One provisioning run starts with the time step: that is "a request" of the suite. */
function counter() {
  let n = 0;
  let waiting: Array<() => void> = [];
  return {
    seen(path: string) {
      if (path !== TIME) return;
      n++;
      const w = waiting;
      waiting = [];
      for (const f of w) f();
    },
    requests: () => n,
    nextRequest: () => new Promise<void>((r) => waiting.push(r)),
  };
}

class CountingService extends DpsService {
  constructor(private readonly count: ReturnType<typeof counter>) {
    super({ groups: [parseEnrollmentGroup(fx.groupConfig())] });
  }

  override authorize(req: DpsServerRequest) {
    this.count.seen(`/${req.path.replace(/^\/+/, "")}`);
    return super.authorize(req);
  }
}

async function dpsPeer(kind: "success" | "refusal"): Promise<ContractPeer<PlgdDpsSettings>> {
  const count = counter();
  const listener = await listenDps({
    service: new CountingService(count),
    host: "127.0.0.1",
    port: 0,
    tls: { cert: fx.dpsServer.cert, key: fx.dpsServer.key },
  });
  const device = kind === "refusal" ? fx.other.device : fx.device;
  return {
    settings: { endpoint: `coaps+tcp://127.0.0.1:${listener.port}` },
    tls: { cert: device.cert, key: device.key, ca: fx.dpsCa },
    requests: count.requests,
    nextRequest: count.nextRequest,
    stop: () => listener.close(),
  };
}

async function plainPeer(
  kind: "garbage" | "silence" | "tls-unknown-ca",
): Promise<ContractPeer<PlgdDpsSettings>> {
  const count = counter();
  const held: Array<(r: CoapResponse) => void> = [];
  // The unknown CA's peer presents a certificate of a CA the device does not trust.
  const cert = kind === "tls-unknown-ca" ? fx.other.device : fx.dpsServer;
  const server = new CoapTcpServer({
    tls: { cert: cert.cert, key: cert.key, ALPNProtocols: ["coap"] },
    handler: (req) => {
      count.seen(req.path);
      if (kind === "silence") return new Promise<CoapResponse>((resolve) => held.push(resolve));
      return Promise.resolve({
        code: "2.05",
        contentFormat: 10000,
        payload: Buffer.from([0xff, 0x00, 0x13]),
      });
    },
  });
  server.on("error", () => undefined);
  const { port } = await server.listen(0, "127.0.0.1");
  return {
    settings: { endpoint: `coaps+tcp://127.0.0.1:${port}` },
    tls: { cert: fx.device.cert, key: fx.device.key, ca: fx.dpsCa },
    requests: count.requests,
    nextRequest: count.nextRequest,
    stop: async () => {
      for (const r of held.splice(0)) r({ code: "5.03", payload: Buffer.alloc(0) });
      await server.close();
    },
  };
}

/** A stable UUID for a name: plgd's device id is a UUID (its CSR's subject is uuid:<id>). */
function uuidOf(name: string): string {
  const h = createHash("sha256").update(name).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

deviceDialectContract({
  name: "plgd DPS over coaps+tcp",
  dialect: plgdDpsDialect,
  kinds: ["success", "refusal", "garbage", "silence", "tls-unknown-ca"],
  // A manufacturer no enrollment group knows: the service answers 4.03.
  refusal: { code: "DENIED", status: "4.03" },
  answersAgain: true,
  identityOf: uuidOf,
  start: (kind: PeerKind) => (kind === "success" || kind === "refusal" ? dpsPeer(kind) : plainPeer(kind)),
});
