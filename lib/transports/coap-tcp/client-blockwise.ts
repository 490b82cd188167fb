import { Code, codeToString, isCritical, Opt } from "./codes";
import type { CoapTcpConnection } from "./connection";
import { CoapTcpError } from "./errors";
import { encodedSize, type CoapMessage } from "./frame";
import { blockOption, blockSizeOf, blockUnit, findBlock } from "./blockwise";
import { findOption, uintOption, type CoapOption } from "./options";

/** Critical options a response may carry that we act upon. */
const KNOWN_CRITICAL_IN_RESPONSE = new Set<number>([Opt.BLOCK1, Opt.BLOCK2]);

export interface ExchangeLimits {
  szx: number;
  maxBodySize: number;
  deadline: number;
  timeoutMs: number;
  signal?: AbortSignal;
  counters: { blocksSent: number; blocksReceived: number };
}

function remaining(limits: ExchangeLimits): number {
  const left = limits.deadline - Date.now();
  if (left <= 0)
    throw new CoapTcpError("COAP_TIMEOUT", `request did not complete within ${limits.timeoutMs} ms`);
  return left;
}

function checkResponse(resp: CoapMessage): void {
  for (const o of resp.options) {
    if (isCritical(o.number) && !KNOWN_CRITICAL_IN_RESPONSE.has(o.number)) {
      throw new CoapTcpError(
        "COAP_PROTOCOL",
        `response ${codeToString(resp.code)} carries unknown critical option ${o.number}`,
      );
    }
  }
}

async function send(
  conn: CoapTcpConnection,
  msg: Omit<CoapMessage, "token">,
  limits: ExchangeLimits,
): Promise<CoapMessage> {
  let resp: CoapMessage;
  try {
    resp = await conn.exchange(msg, remaining(limits), limits.signal);
  } catch (err) {
    // Report the caller's whole budget, not what was left of it for this block.
    if (err instanceof CoapTcpError && err.code === "COAP_TIMEOUT") {
      throw new CoapTcpError(
        "COAP_TIMEOUT",
        `no response from ${conn.opts.remote} within ${limits.timeoutMs} ms`,
      );
    }
    throw err;
  }
  checkResponse(resp);
  return resp;
}

/**
 * A complete request: Block1 when the body is larger than a block and the peer does
 * block-wise transfer, or when it would not fit the peer's Max-Message-Size; then Block2
 * until the response body is complete (RFC 7959, over TCP per RFC 8323 §6).
 */
export async function blockwiseRequest(
  conn: CoapTcpConnection,
  code: number,
  baseOptions: CoapOption[],
  payload: Buffer,
  limits: ExchangeLimits,
): Promise<CoapMessage> {
  const whole = { code, options: baseOptions, payload };
  const size = blockSizeOf(limits.szx);
  const tooBigForPeer = encodedSize({ ...whole, token: Buffer.alloc(8) }) > conn.peer.maxMessageSize;
  let resp: CoapMessage;
  if (payload.length > size && (conn.peer.blockWise || tooBigForPeer)) {
    resp = await sendBlock1(conn, code, baseOptions, payload, limits);
  } else {
    const options =
      code === Code.GET && conn.peer.blockWise
        ? [...baseOptions, blockOption(Opt.BLOCK2, { num: 0, more: false, szx: limits.szx })]
        : baseOptions;
    resp = await send(conn, { code, options, payload }, limits);
  }
  return fetchBlock2(conn, code, baseOptions, resp, limits);
}

async function sendBlock1(
  conn: CoapTcpConnection,
  code: number,
  baseOptions: CoapOption[],
  payload: Buffer,
  limits: ExchangeLimits,
): Promise<CoapMessage> {
  let szx = limits.szx;
  let offset = 0;
  for (;;) {
    const size = blockSizeOf(szx);
    const num = offset / size;
    const chunk = payload.subarray(offset, offset + size);
    const more = offset + chunk.length < payload.length;
    const options = [...baseOptions, blockOption(Opt.BLOCK1, { num, more, szx })];
    if (num === 0) options.push(uintOption(Opt.SIZE1, payload.length));
    const resp = await send(conn, { code, options, payload: chunk }, limits);
    limits.counters.blocksSent++;
    // Anything but 2.31 Continue ends the upload: the final answer or a refusal (4.13...).
    if (!more || resp.code !== Code.CONTINUE) return resp;
    offset += chunk.length;
    const ack = findBlock(resp.options, Opt.BLOCK1);
    if (ack && ack.szx < szx) {
      // The server asked for smaller blocks; continue from the same byte offset.
      szx = ack.szx;
    }
  }
}

async function fetchBlock2(
  conn: CoapTcpConnection,
  code: number,
  baseOptions: CoapOption[],
  first: CoapMessage,
  limits: ExchangeLimits,
): Promise<CoapMessage> {
  const b2 = findBlock(first.options, Opt.BLOCK2);
  if (!b2) return first;
  if (b2.num !== 0)
    throw new CoapTcpError("COAP_PROTOCOL", `first response block is number ${b2.num}, expected 0`);
  limits.counters.blocksReceived++;
  if (!b2.more) return first;
  const etag = findOption(first.options, Opt.ETAG)?.value;
  const parts = [first.payload];
  let received = first.payload.length;
  let last = first;
  let szx = b2.szx === 7 ? 6 : b2.szx;
  for (;;) {
    if (received > limits.maxBodySize) {
      throw new CoapTcpError("COAP_TOO_LARGE", `response body exceeds ${limits.maxBodySize} bytes`);
    }
    const unit = blockSizeOf(szx);
    if (received % unit !== 0) {
      throw new CoapTcpError(
        "COAP_PROTOCOL",
        `block-wise response stopped at ${received} bytes, not a multiple of ${unit}`,
      );
    }
    const num = received / unit;
    const options = [...baseOptions, blockOption(Opt.BLOCK2, { num, more: false, szx })];
    const resp = await send(conn, { code, options, payload: Buffer.alloc(0) }, limits);
    const got = findBlock(resp.options, Opt.BLOCK2);
    if (!got || codeToString(resp.code) !== codeToString(first.code)) {
      // The resource answered differently mid-transfer (an error, a changed code): hand that back.
      return resp;
    }
    if (got.num * blockUnit(got.szx) !== received) {
      throw new CoapTcpError(
        "COAP_PROTOCOL",
        `asked for the block at byte ${received}, got block ${got.num}`,
      );
    }
    const tag = findOption(resp.options, Opt.ETAG)?.value;
    if (etag && tag && !etag.equals(tag)) {
      throw new CoapTcpError(
        "COAP_PROTOCOL",
        "the resource changed during the block-wise transfer (ETag differs)",
      );
    }
    limits.counters.blocksReceived++;
    parts.push(resp.payload);
    received += resp.payload.length;
    last = resp;
    if (!got.more) break;
    if (got.szx < szx) szx = got.szx;
    if (resp.payload.length === 0) throw new CoapTcpError("COAP_PROTOCOL", "empty block with more to follow");
  }
  if (received > limits.maxBodySize) {
    throw new CoapTcpError("COAP_TOO_LARGE", `response body exceeds ${limits.maxBodySize} bytes`);
  }
  return { ...last, options: first.options, payload: Buffer.concat(parts, received) };
}
