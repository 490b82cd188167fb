import { Code, codeToString, isCritical, SigOpt } from "./codes";
import { CoapFormatError } from "./errors";
import type { CoapMessage } from "./frame";
import { decodeUint, encodeUint, findOption, type CoapOption } from "./options";

/** What a peer told us in its CSM (RFC 8323 §5.3). Until one arrives: the base values. */
export interface PeerCapabilities {
  maxMessageSize: number;
  blockWise: boolean;
}

/** RFC 8323 §5.3.1: the base value a peer must assume until told otherwise. */
export const BASE_MAX_MESSAGE_SIZE = 1152;

const EMPTY = Buffer.alloc(0);

export function csm(maxMessageSize: number, blockWise: boolean): CoapMessage {
  const options: CoapOption[] = [{ number: SigOpt.MAX_MESSAGE_SIZE, value: encodeUint(maxMessageSize) }];
  if (blockWise) options.push({ number: SigOpt.BLOCK_WISE_TRANSFER, value: EMPTY });
  return { code: Code.CSM, token: EMPTY, options, payload: EMPTY };
}

export function ping(token: Buffer, custody = false): CoapMessage {
  return {
    code: Code.PING,
    token,
    options: custody ? [{ number: SigOpt.CUSTODY, value: EMPTY }] : [],
    payload: EMPTY,
  };
}

/** A Pong answers with the Ping's token, echoing Custody when asked (§5.4). */
export function pongFor(pingMsg: CoapMessage): CoapMessage {
  const custody = findOption(pingMsg.options, SigOpt.CUSTODY) !== undefined;
  return {
    code: Code.PONG,
    token: pingMsg.token,
    options: custody ? [{ number: SigOpt.CUSTODY, value: EMPTY }] : [],
    payload: EMPTY,
  };
}

export function release(holdOffSeconds?: number): CoapMessage {
  const options: CoapOption[] = [];
  if (holdOffSeconds !== undefined)
    options.push({ number: SigOpt.HOLD_OFF, value: encodeUint(holdOffSeconds) });
  return { code: Code.RELEASE, token: EMPTY, options, payload: EMPTY };
}

/** Abort carries a human-readable diagnostic payload (§5.6). */
export function abort(diagnostic: string, badCsmOption?: number): CoapMessage {
  const options: CoapOption[] = [];
  if (badCsmOption !== undefined)
    options.push({ number: SigOpt.BAD_CSM_OPTION, value: encodeUint(badCsmOption) });
  return { code: Code.ABORT, token: EMPTY, options, payload: Buffer.from(diagnostic.slice(0, 512), "utf8") };
}

/** Option numbers each signaling code defines; anything else critical is an error. */
const KNOWN: Record<number, number[]> = {
  [Code.CSM]: [SigOpt.MAX_MESSAGE_SIZE, SigOpt.BLOCK_WISE_TRANSFER],
  [Code.PING]: [SigOpt.CUSTODY],
  [Code.PONG]: [SigOpt.CUSTODY],
  [Code.RELEASE]: [SigOpt.ALTERNATIVE_ADDRESS, SigOpt.HOLD_OFF],
  [Code.ABORT]: [SigOpt.BAD_CSM_OPTION],
};

/** An unknown critical option in a signaling message: the connection must be aborted. */
export class BadSignalingOption extends CoapFormatError {
  constructor(
    readonly signalCode: number,
    readonly optionNumber: number,
  ) {
    super(`unknown critical option ${optionNumber} in signaling message ${codeToString(signalCode)}`);
  }
}

export function checkSignalingOptions(msg: CoapMessage): void {
  const known = KNOWN[msg.code] ?? [];
  for (const o of msg.options) {
    if (!known.includes(o.number) && isCritical(o.number)) throw new BadSignalingOption(msg.code, o.number);
  }
}

/** Applies a CSM on top of what we knew: options not present keep their earlier value. */
export function applyCsm(current: PeerCapabilities, msg: CoapMessage): PeerCapabilities {
  const next = { ...current };
  const mms = findOption(msg.options, SigOpt.MAX_MESSAGE_SIZE);
  if (mms) next.maxMessageSize = decodeUint(mms.value);
  if (findOption(msg.options, SigOpt.BLOCK_WISE_TRANSFER)) next.blockWise = true;
  return next;
}

export function describeRelease(msg: CoapMessage): string {
  const parts: string[] = [];
  const holdOff = findOption(msg.options, SigOpt.HOLD_OFF);
  if (holdOff) parts.push(`hold off ${decodeUint(holdOff.value)} s`);
  const alt = msg.options
    .filter((o) => o.number === SigOpt.ALTERNATIVE_ADDRESS)
    .map((o) => o.value.toString("utf8"));
  if (alt.length) parts.push(`alternative address ${alt.join(", ")}`);
  return parts.length ? ` (${parts.join("; ")})` : "";
}

export function describeAbort(msg: CoapMessage): string {
  const text = msg.payload.length ? msg.payload.toString("utf8") : "no diagnostic";
  const bad = findOption(msg.options, SigOpt.BAD_CSM_OPTION);
  return bad ? `${text} (bad CSM option ${decodeUint(bad.value)})` : text;
}
