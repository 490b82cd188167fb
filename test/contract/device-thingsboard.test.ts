/**
 * The device-side contract (device-dialect.contract.ts) for ThingsBoard, on each of its
 * transports, against the suite's ThingsBoard-like peers (test/support/tbdevice-peers.ts):
 * HTTP(S) on node:http, MQTT(S) on aedes, CoAP on node-coap (CoAP over UDP has no TLS here).
 */
import { once, EventEmitter } from "node:events";
import { createSocket } from "node:dgram";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import { randomBytes } from "node:crypto";
import { Aedes } from "aedes";
import { thingsboardDialect, type TbDeviceSettings } from "../../lib/dialects/thingsboard/device-dialect";
import { TOPIC_REQUEST } from "../../lib/dialects/thingsboard/wire";
import { TbLikeProfile } from "../support/tbdevice-responder";
import { startAedesPeer, startCoapPeer, startHttpPeer, type Peer } from "../support/tbdevice-peers";
import { makeTestPki } from "../support/pki";
import { deviceDialectContract, type ContractPeer, type PeerKind } from "./device-dialect.contract";

const pki = makeTestPki("Contract TB");

/** A profile that plays one peer kind; success answers every request with a fresh token. */
function profileFor(kind: PeerKind): TbLikeProfile {
  const profile = new TbLikeProfile();
  if (kind === "success")
    profile.override = () => ({
      status: "SUCCESS",
      credentialsType: "ACCESS_TOKEN",
      credentialsValue: `tok-${randomBytes(6).toString("hex")}`,
    });
  if (kind === "refusal")
    profile.override = () => ({ status: "FAILURE", errorMsg: "Failed to provision device!" });
  if (kind === "garbage") profile.override = () => "<html>not ThingsBoard</html>";
  if (kind === "silence") profile.override = () => "drop";
  return profile;
}

function contractPeer(profile: TbLikeProfile, peer: Peer, url: string): ContractPeer<TbDeviceSettings> {
  return {
    settings: {
      endpoint: url,
      provisionDeviceKey: profile.key,
      provisionDeviceSecret: profile.secret,
    },
    requests: () => profile.requests.length,
    nextRequest: () => once(profile, "request").then(() => undefined),
    stop: peer.stop,
  };
}

/** aedes behind TLS, answering like ThingsBoard: MQTTS with the test CA's server certificate. */
async function startAedesTlsPeer(profile: TbLikeProfile): Promise<Peer> {
  const broker = await Aedes.createBroker();
  broker.on("publish", (packet, client) => {
    if (!client || packet.topic !== TOPIC_REQUEST) return;
    profile.handle(Buffer.from(packet.payload));
  });
  const sockets = new Set<TLSSocket>();
  const server: TlsServer = createTlsServer({ key: pki.serverKey, cert: pki.serverCert }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    broker.handle(s);
  });
  server.on("tlsClientError", () => undefined);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return {
    port,
    url: `mqtts://127.0.0.1:${port}`,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}

/**
 * A CoAP peer that never answers, not even with an ACK: a UDP socket that reads. (node-coap's
 * server would ACK a request it leaves unanswered 50 ms later, on a socket the test may
 * have closed by then.) Requests are counted by CoAP message id (RFC 7252 section 3), so
 * the client's retransmissions of one request count once.
 */
async function startSilentCoapPeer(): Promise<ContractPeer<TbDeviceSettings>> {
  const socket = createSocket("udp4");
  const ids = new Set<number>();
  const events = new EventEmitter();
  socket.on("message", (m: Buffer) => {
    if (m.length < 4) return;
    const id = m.readUInt16BE(2);
    if (ids.has(id)) return;
    ids.add(id);
    events.emit("request");
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  const profile = new TbLikeProfile();
  return {
    settings: {
      endpoint: `coap://127.0.0.1:${socket.address().port}`,
      provisionDeviceKey: profile.key,
      provisionDeviceSecret: profile.secret,
    },
    requests: () => ids.size,
    nextRequest: () => once(events, "request").then(() => undefined),
    stop: () => new Promise<void>((r) => socket.close(() => r())),
  };
}

deviceDialectContract({
  name: "ThingsBoard over HTTP",
  dialect: thingsboardDialect,
  kinds: ["success", "refusal", "garbage", "silence", "tls-unknown-ca"],
  refusal: { code: "REFUSED", status: "FAILURE" },
  answersAgain: true,
  start: async (kind) => {
    const profile = profileFor(kind);
    if (kind === "tls-unknown-ca") {
      const peer = await startHttpPeer(profile, { cert: pki.serverCert, key: pki.serverKey });
      return contractPeer(profile, peer, peer.url);
    }
    const peer = await startHttpPeer(profile);
    return contractPeer(profile, peer, peer.url);
  },
});

deviceDialectContract({
  name: "ThingsBoard over MQTT",
  dialect: thingsboardDialect,
  kinds: ["success", "refusal", "garbage", "silence", "tls-unknown-ca"],
  refusal: { code: "REFUSED", status: "FAILURE" },
  answersAgain: true,
  start: async (kind) => {
    const profile = profileFor(kind);
    const peer = kind === "tls-unknown-ca" ? await startAedesTlsPeer(profile) : await startAedesPeer(profile);
    return contractPeer(profile, peer, peer.url);
  },
});

deviceDialectContract({
  name: "ThingsBoard over CoAP",
  dialect: thingsboardDialect,
  kinds: ["success", "refusal", "garbage", "silence"],
  refusal: { code: "REFUSED", status: "FAILURE" },
  answersAgain: true,
  start: async (kind) => {
    if (kind === "silence") return startSilentCoapPeer();
    const profile = profileFor(kind);
    const peer = await startCoapPeer(profile);
    return contractPeer(profile, peer, peer.url);
  },
});
