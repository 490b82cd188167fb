/**
 * The device-side contract (device-dialect.contract.ts) for Mainflux bootstrap: success
 * and refusal come from the suite's Mainflux bootstrap service (test/support/
 * mainflux-fixtures.ts, the serving side of this package, which the Mainflux device tests
 * already check against Mainflux's own Go client), garbage, silence and an unknown CA
 * from plain node:http(s) servers.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { mainfluxDialect, type MainfluxDeviceSettings } from "../../lib/dialects/mainflux/device-dialect";
import { EXTERNAL_KEY, startService, type RunningService } from "../support/mainflux-fixtures";
import { makeTestPki } from "../support/pki";
import { deviceDialectContract, type ContractPeer } from "./device-dialect.contract";

const pki = makeTestPki("Contract Mainflux");
const services: RunningService[] = [];

function counted(
  server: Server,
  url: string,
  settings: Partial<MainfluxDeviceSettings>,
  stop: () => Promise<void>,
) {
  let requests = 0;
  server.on("request", () => requests++);
  const peer: ContractPeer<MainfluxDeviceSettings> = {
    settings: { url, externalKey: EXTERNAL_KEY, mode: "plain", ...settings },
    requests: () => requests,
    nextRequest: () => once(server, "request").then(() => undefined),
    stop,
  };
  return peer;
}

async function listen(server: Server, scheme: "http" | "https") {
  const open = new Set<import("node:net").Socket>();
  server.on("connection", (s) => {
    open.add(s);
    s.on("close", () => open.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const stop = async () => {
    for (const s of open) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { url, stop };
}

deviceDialectContract({
  name: "Mainflux bootstrap",
  dialect: mainfluxDialect,
  kinds: ["success", "refusal", "garbage", "silence", "tls-unknown-ca"],
  // A wrong external key: Mainflux answers 403.
  refusal: { code: "DENIED", status: 403 },
  answersAgain: true,
  enrol: async (identity) => {
    for (const svc of services) {
      if (await svc.registry.get(identity)) continue;
      await svc.registry.add({
        external_id: identity,
        external_key: EXTERNAL_KEY,
        thing_id: `thing-${identity}`,
        thing_key: `key-${identity}`,
        channels: ["ch-1"],
      });
    }
  },
  start: async (kind) => {
    if (kind === "success" || kind === "refusal") {
      const svc = await startService();
      services.push(svc);
      return counted(
        svc.server,
        svc.url,
        kind === "refusal" ? { externalKey: "not-the-key" } : {},
        svc.close,
      );
    }
    if (kind === "tls-unknown-ca") {
      const server = createHttpsServer({ key: pki.serverKey, cert: pki.serverCert }, (_q, res) => res.end());
      const { url, stop } = await listen(server, "https");
      return counted(server, url, {}, stop);
    }
    const handler =
      kind === "garbage"
        ? (_q: IncomingMessage, res: ServerResponse) =>
            res.writeHead(200, { "content-type": "application/json" }).end("<html>not Mainflux</html>")
        : () => undefined; // silence: the request is read and never answered
    const server = createServer(handler);
    const { url, stop } = await listen(server, "http");
    return counted(server, url, {}, stop);
  },
});
