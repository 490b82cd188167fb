/** The five plgd DPS requests, each over a `send` function, with plgd's failure classes. */
import type { CoapRequest, CoapResponse } from "../../transports/coap-tcp/types";
import {
  CF_OCF_CBOR,
  ENCODING_PEM,
  OcfFormatError,
  PATHS,
  decodeBody,
  encodeBody,
  parseAcls,
  parseCloudConf,
  parseCreds,
  parseOwnership,
  parseTime,
  type Acl2Rep,
  type CloudConfRep,
  type CredRep,
  type Gateway,
  type TimeRep,
} from "./ocf";
import { DpsStepError, STEP_FLAGS, type DpsStep } from "./status";

export type Send = (req: CoapRequest) => Promise<CoapResponse>;

function isSuccess(code: string): boolean {
  return code.startsWith("2.");
}

async function exchange<T>(
  step: DpsStep,
  send: Send,
  req: CoapRequest,
  parse: (v: unknown) => T,
): Promise<T> {
  const resp = await send(req);
  if (!isSuccess(resp.code)) {
    const diag =
      resp.payload.length > 0 && resp.payload.length < 512 && (resp.contentFormat ?? 0) === 0
        ? `: ${resp.payload.toString("utf8")}`
        : "";
    // plgd: 5.03 and 5.04 are connection trouble (transient); every other error is a failure.
    const transient = resp.code === "5.03" || resp.code === "5.04";
    throw new DpsStepError(
      transient,
      transient ? "CONNECT" : "ERROR_RESPONSE",
      `${req.method} /${req.path.replace(/^\//, "")} answered ${resp.code}${diag}`,
      resp.code,
    );
  }
  try {
    return parse(decodeBody(resp.payload, resp.contentFormat));
  } catch (err) {
    const why = err instanceof OcfFormatError ? err.message : (err as Error).message;
    throw new DpsStepError(false, STEP_FLAGS[step].error, `invalid ${step} response: ${why}`, resp.code);
  }
}

const ACCEPT = CF_OCF_CBOR;

export function getTime(send: Send): Promise<TimeRep> {
  return exchange("time", send, { method: "GET", path: `/${PATHS.time}`, accept: ACCEPT }, parseTime);
}

export async function getOwner(send: Send): Promise<string> {
  return (
    await exchange(
      "owner",
      send,
      { method: "GET", path: `/${PATHS.ownership}`, accept: ACCEPT },
      parseOwnership,
    )
  ).devowneruuid;
}

export function getCloudConfiguration(
  send: Send,
  di: string,
  selectedGateway?: Gateway,
): Promise<CloudConfRep> {
  const body = selectedGateway ? { di, selectedGateway } : { di };
  return exchange(
    "cloud",
    send,
    {
      method: "POST",
      path: `/${PATHS.cloud}`,
      accept: ACCEPT,
      contentFormat: ACCEPT,
      payload: encodeBody(body, ACCEPT),
    },
    parseCloudConf,
  );
}

export function getCredentials(send: Send, di: string, csrPem: string): Promise<CredRep> {
  const body = { di, csr: { data: csrPem, encoding: ENCODING_PEM } };
  return exchange(
    "credentials",
    send,
    {
      method: "POST",
      path: `/${PATHS.credentials}`,
      accept: ACCEPT,
      contentFormat: ACCEPT,
      payload: encodeBody(body, ACCEPT),
    },
    parseCreds,
  );
}

export function getAcls(send: Send): Promise<Acl2Rep> {
  return exchange("acls", send, { method: "GET", path: `/${PATHS.acls}`, accept: ACCEPT }, parseAcls);
}
