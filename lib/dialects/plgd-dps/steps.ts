/** The five plgd DPS requests, each over a `send` function, with plgd's failure classes. */
import { Opt } from "../../transports/coap-tcp/codes";
import { findUint } from "../../transports/coap-tcp/options";
import type { CoapRequest, CoapResponse } from "../../transports/coap-tcp/types";
import { answerError, invalidAnswer } from "./errors";
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
import type { DpsStep } from "./status";

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
    const maxAge = resp.options ? findUint(resp.options, Opt.MAX_AGE) : undefined;
    throw answerError(
      resp.code,
      `${req.method} /${req.path.replace(/^\//, "")} answered ${resp.code}${diag}`,
      maxAge,
    );
  }
  try {
    return parse(decodeBody(resp.payload, resp.contentFormat));
  } catch (err) {
    const why = err instanceof OcfFormatError ? err.message : (err as Error).message;
    throw invalidAnswer(step, `invalid ${step} response: ${why}`, resp.code);
  }
}

const ACCEPT = CF_OCF_CBOR;

export function getTime(send: Send): Promise<TimeRep> {
  return exchange("time", send, { method: "GET", path: `/${PATHS.time}`, accept: ACCEPT }, parseTime);
}

export async function getOwner(send: Send): Promise<string> {
  return (
    await exchange("owner", send, { method: "GET", path: `/${PATHS.owner}`, accept: ACCEPT }, parseOwnership)
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
