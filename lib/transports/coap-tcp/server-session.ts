import { randomBytes } from "node:crypto";
import { blockOption, blockSizeOf, blockUnit, findBlock, sliceBlock, type Block } from "./blockwise";
import {
  Code,
  codeClass,
  codeToString,
  isCritical,
  methodName,
  Opt,
  parseCode,
  type CoapMethod,
} from "./codes";
import type { CoapTcpConnection } from "./connection";
import { CoapTcpError, errorText } from "./errors";
import { encodedSize, type CoapMessage } from "./frame";
import { findOption, findUint, uintOption, type CoapOption } from "./options";
import { acceptOf, contentFormatOf, pathOf, queryOf } from "./request";
import type { CoapResponse, CoapServerRequest, CoapTcpServerOptions } from "./types";

/** Critical request options we understand; any other critical one gets 4.02 (RFC 7252 §5.4.1). */
const KNOWN_CRITICAL = new Set<number>([
  Opt.URI_HOST,
  Opt.URI_PORT,
  Opt.URI_PATH,
  Opt.URI_QUERY,
  Opt.ACCEPT,
  Opt.BLOCK2,
  Opt.BLOCK1,
]);
/** How long a half-done block-wise transfer is kept. */
const TRANSFER_TTL_MS = 60000;
/** Per connection: how many transfers may be half-done at once (a bound on memory). */
const MAX_TRANSFERS = 8;

export type TlsPeer = Pick<
  CoapServerRequest,
  "peerCertificate" | "peerCertificateChain" | "authorized" | "authorizationError"
>;

interface Upload {
  parts: Buffer[];
  size: number;
  timer: NodeJS.Timeout;
}

interface Download {
  code: number;
  options: CoapOption[];
  body: Buffer;
  etag: Buffer;
  timer: NodeJS.Timeout;
}

export interface SessionCounters {
  blocksSent: number;
  blocksReceived: number;
}

/**
 * Serves the requests of one connection: reassembles Block1 uploads, calls the handler,
 * and serves large responses with Block2 (RFC 7959). Never throws: every failure
 * becomes a CoAP error response and, when worth it, a report through `report`.
 */
export class ServerSession {
  private readonly uploads = new Map<string, Upload>();
  private readonly downloads = new Map<string, Download>();
  private readonly szx: number;

  constructor(
    private readonly conn: CoapTcpConnection,
    private readonly opts: CoapTcpServerOptions & { maxMessageSize: number; szx: number },
    private readonly tlsPeer: TlsPeer,
    private readonly report: (err: Error) => void,
    private readonly counters: SessionCounters,
  ) {
    this.szx = opts.szx;
    conn.on("request", (msg: CoapMessage) => {
      this.onRequest(msg).catch((err: unknown) =>
        this.report(new Error(`serving ${conn.opts.remote}: ${errorText(err)}`)),
      );
    });
    conn.on("close", () => this.dispose());
  }

  private dispose(): void {
    for (const u of this.uploads.values()) clearTimeout(u.timer);
    for (const d of this.downloads.values()) clearTimeout(d.timer);
    this.uploads.clear();
    this.downloads.clear();
  }

  private async onRequest(msg: CoapMessage): Promise<void> {
    const method = methodName(msg.code);
    if (!method) {
      return this.reply(
        msg,
        Code.METHOD_NOT_ALLOWED,
        [],
        diag(`method ${codeToString(msg.code)} is not allowed`),
      );
    }
    for (const o of msg.options) {
      if (o.number === Opt.PROXY_URI || o.number === Opt.PROXY_SCHEME) {
        return this.reply(msg, Code.PROXYING_NOT_SUPPORTED, [], diag("this server is not a proxy"));
      }
      if (isCritical(o.number) && !KNOWN_CRITICAL.has(o.number)) {
        return this.reply(msg, Code.BAD_OPTION, [], diag(`unknown critical option ${o.number}`));
      }
    }
    let block1: Block | undefined;
    let block2: Block | undefined;
    try {
      block1 = findBlock(msg.options, Opt.BLOCK1);
      block2 = findBlock(msg.options, Opt.BLOCK2);
    } catch (err) {
      return this.reply(msg, Code.BAD_OPTION, [], diag(errorText(err)));
    }
    const key = transferKey(method, msg.options);
    // Authorization comes before anything of a request is kept: a client the server will
    // refuse gets its 4.01/4.03 at the first block, never 2.31 Continue (RFC 7959 §2.5
    // lets a server answer block 0 with the final response).
    const continuing = block1
      ? block1.num > 0 && this.uploads.has(uploadKey(key, msg.options))
      : block2 !== undefined && block2.num > 0 && this.downloads.has(key);
    if (!continuing && this.opts.authorize) {
      const refusal = await this.authorize(method, msg);
      if (refusal) return this.respondWithBody(msg, key, refusal, block2, []);
    }
    let payload = msg.payload;
    if (block1) {
      const upload = this.receiveBlock1(msg, uploadKey(key, msg.options), block1);
      if (!upload) return; // answered: 2.31 Continue or an error
      payload = upload;
    } else if (block2 && block2.num > 0) {
      return this.serveNextBlock(msg, method, key, block2);
    }
    const res = await this.callHandler(method, msg, payload);
    const extra = block1 ? [blockOption(Opt.BLOCK1, { ...block1, more: false })] : [];
    return this.respondWithBody(msg, key, res, block2, extra);
  }

  /** Returns the whole body once the last block is in; otherwise answers and returns undefined. */
  private receiveBlock1(msg: CoapMessage, key: string, b: Block): Buffer | undefined {
    const unit = blockUnit(b.szx);
    const offset = b.num * unit;
    const size1 = findUint(msg.options, Opt.SIZE1);
    const tooLarge = () => {
      this.dropUpload(key);
      this.reply(
        msg,
        Code.REQUEST_ENTITY_TOO_LARGE,
        [uintOption(Opt.SIZE1, this.opts.maxMessageSize)],
        diag(`request body larger than ${this.opts.maxMessageSize} bytes`),
      );
      return undefined;
    };
    if (size1 !== undefined && size1 > this.opts.maxMessageSize) return tooLarge();
    if (
      b.more &&
      (b.szx === 7
        ? msg.payload.length % 1024 !== 0 || msg.payload.length === 0
        : msg.payload.length !== unit)
    ) {
      this.dropUpload(key);
      this.reply(
        msg,
        Code.BAD_REQUEST,
        [],
        diag(`block ${b.num} carries ${msg.payload.length} bytes, not a full block`),
      );
      return undefined;
    }
    let upload = this.uploads.get(key);
    if (b.num === 0) {
      this.dropUpload(key);
      if (!b.more) return msg.payload;
      if (this.uploads.size >= MAX_TRANSFERS) {
        this.reply(msg, Code.SERVICE_UNAVAILABLE, [], diag("too many block-wise uploads in progress"));
        return undefined;
      }
      upload = { parts: [], size: 0, timer: this.expire(() => this.dropUpload(key)) };
      this.uploads.set(key, upload);
    } else if (!upload || upload.size !== offset) {
      this.dropUpload(key);
      this.reply(
        msg,
        Code.REQUEST_ENTITY_INCOMPLETE,
        [],
        diag(`block ${b.num} does not follow the blocks received so far`),
      );
      return undefined;
    }
    upload.parts.push(msg.payload);
    upload.size += msg.payload.length;
    this.counters.blocksReceived++;
    if (upload.size > this.opts.maxMessageSize) return tooLarge();
    upload.timer.refresh();
    if (b.more) {
      const szx = Math.min(b.szx, this.szx);
      this.reply(
        msg,
        Code.CONTINUE,
        [blockOption(Opt.BLOCK1, { num: b.num, more: true, szx })],
        Buffer.alloc(0),
      );
      return undefined;
    }
    this.dropUpload(key);
    return Buffer.concat(upload.parts, upload.size);
  }

  private async serveNextBlock(msg: CoapMessage, method: CoapMethod, key: string, b: Block): Promise<void> {
    let download = this.downloads.get(key);
    if (!download) {
      // Without a kept body, only a GET can be answered again; anything else would repeat side effects.
      if (method !== "GET") {
        return this.reply(
          msg,
          Code.REQUEST_ENTITY_INCOMPLETE,
          [],
          diag("no block-wise response in progress for this request"),
        );
      }
      const res = await this.callHandler(method, msg, Buffer.alloc(0));
      const resolved = this.resolveResponse(res);
      if (codeClass(resolved.code) !== 2)
        return this.reply(msg, resolved.code, resolved.options, resolved.payload);
      download = this.keepDownload(key, resolved);
      if (!download)
        return this.reply(
          msg,
          Code.SERVICE_UNAVAILABLE,
          [],
          diag("too many block-wise responses in progress"),
        );
    }
    this.sendBlock(msg, key, download, b.num, Math.min(b.szx === 7 ? 6 : b.szx, this.szx));
  }

  private respondWithBody(
    msg: CoapMessage,
    key: string,
    res: CoapResponse,
    reqBlock2: Block | undefined,
    extra: CoapOption[],
  ): void {
    const resolved = this.resolveResponse(res);
    const options = [...resolved.options, ...extra];
    const szx = Math.min(reqBlock2 ? (reqBlock2.szx === 7 ? 6 : reqBlock2.szx) : this.szx, this.szx);
    const whole = { code: resolved.code, token: msg.token, options, payload: resolved.payload };
    const needBlocks =
      (resolved.payload.length > blockSizeOf(szx) && (this.conn.peer.blockWise || reqBlock2 !== undefined)) ||
      encodedSize(whole) > this.conn.peer.maxMessageSize;
    if (!needBlocks) return this.send(whole);
    const download = this.keepDownload(key, {
      code: resolved.code,
      options: resolved.options,
      payload: resolved.payload,
    });
    if (!download)
      return this.reply(msg, Code.SERVICE_UNAVAILABLE, [], diag("too many block-wise responses in progress"));
    this.sendBlock(msg, key, download, 0, szx, extra);
  }

  private sendBlock(
    msg: CoapMessage,
    key: string,
    d: Download,
    num: number,
    szx: number,
    extra: CoapOption[] = [],
  ): void {
    const slice = sliceBlock(d.body, num, szx);
    if (!slice)
      return this.reply(
        msg,
        Code.BAD_OPTION,
        [],
        diag(`block ${num} is beyond the end of the ${d.body.length}-byte body`),
      );
    const options = [
      ...d.options,
      ...extra,
      { number: Opt.ETAG, value: d.etag },
      blockOption(Opt.BLOCK2, { num, more: slice.more, szx }),
    ];
    if (num === 0) options.push(uintOption(Opt.SIZE2, d.body.length));
    this.counters.blocksSent++;
    this.send({ code: d.code, token: msg.token, options, payload: slice.chunk });
    if (!slice.more) this.dropDownload(key);
    else d.timer.refresh();
  }

  private keepDownload(
    key: string,
    r: { code: number; options: CoapOption[]; payload: Buffer },
  ): Download | undefined {
    this.dropDownload(key);
    if (this.downloads.size >= MAX_TRANSFERS) return undefined;
    const d: Download = {
      code: r.code,
      options: r.options,
      body: r.payload,
      etag: randomBytes(4),
      timer: this.expire(() => this.dropDownload(key)),
    };
    this.downloads.set(key, d);
    return d;
  }

  private dropUpload(key: string): void {
    const u = this.uploads.get(key);
    if (u) clearTimeout(u.timer);
    this.uploads.delete(key);
  }

  private dropDownload(key: string): void {
    const d = this.downloads.get(key);
    if (d) clearTimeout(d.timer);
    this.downloads.delete(key);
  }

  private expire(fn: () => void): NodeJS.Timeout {
    const t = setTimeout(fn, TRANSFER_TTL_MS);
    t.unref();
    return t;
  }

  /** The server's authorize hook; a failing hook refuses with 5.00 rather than serving. */
  private async authorize(method: CoapMethod, msg: CoapMessage): Promise<CoapResponse | undefined> {
    const authorize = this.opts.authorize;
    if (!authorize) return undefined;
    const req = this.requestOf(method, msg, Buffer.alloc(0));
    try {
      return (await authorize(req)) ?? undefined;
    } catch (err) {
      this.report(
        new Error(`authorizing ${method} ${req.path} from ${req.remote} failed: ${errorText(err)}`),
      );
      return { code: "5.00", payload: diag("authorization failed") };
    }
  }

  private requestOf(method: CoapMethod, msg: CoapMessage, payload: Buffer): CoapServerRequest {
    const contentFormat = contentFormatOf(msg.options);
    const accept = acceptOf(msg.options);
    return {
      method,
      path: pathOf(msg.options),
      query: queryOf(msg.options),
      ...(contentFormat !== undefined ? { contentFormat } : {}),
      ...(accept !== undefined ? { accept } : {}),
      payload,
      options: msg.options,
      remote: this.conn.opts.remote,
      ...this.tlsPeer,
    };
  }

  private async callHandler(method: CoapMethod, msg: CoapMessage, payload: Buffer): Promise<CoapResponse> {
    const req = this.requestOf(method, msg, payload);
    const where = `${method} ${req.path} from ${req.remote}`;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = Promise.resolve().then(() => this.opts.handler(req));
      const limit = this.opts.requestTimeoutMs;
      if (!limit) return await answer;
      const timeout = new Promise<CoapResponse>((resolve) => {
        timer = setTimeout(() => {
          this.report(
            new CoapTcpError("COAP_TIMEOUT", `handler for ${where} did not answer within ${limit} ms`),
          );
          resolve({ code: "5.03", payload: diag(`request handler did not answer within ${limit} ms`) });
        }, limit);
      });
      return await Promise.race([answer, timeout]);
    } catch (err) {
      this.report(new Error(`handler for ${where} failed: ${errorText(err)}`, { cause: err }));
      return { code: "5.00", payload: diag(`request handler failed: ${errorText(err).slice(0, 200)}`) };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Validates what a handler returned; a bad answer becomes 5.00. */
  private resolveResponse(res: CoapResponse): { code: number; options: CoapOption[]; payload: Buffer } {
    const code = res && typeof res.code === "string" ? parseCode(res.code) : undefined;
    if (code === undefined || ![2, 4, 5].includes(codeClass(code)) || code === Code.CONTINUE) {
      const shown = res && typeof res.code === "string" ? res.code : typeof res;
      this.report(new Error(`handler returned an invalid response code ${JSON.stringify(shown)}`));
      return {
        code: Code.INTERNAL_SERVER_ERROR,
        options: [],
        payload: diag(`request handler returned an invalid response code`),
      };
    }
    const payload = Buffer.isBuffer(res.payload) ? res.payload : Buffer.alloc(0);
    const options = (res.options ?? []).filter(
      (o) => o.number !== Opt.BLOCK1 && o.number !== Opt.BLOCK2 && o.number !== Opt.CONTENT_FORMAT,
    );
    if (res.contentFormat !== undefined) options.push(uintOption(Opt.CONTENT_FORMAT, res.contentFormat));
    return { code, options, payload };
  }

  private reply(msg: CoapMessage, code: number, options: CoapOption[], payload: Buffer): void {
    this.send({ code, token: msg.token, options, payload });
  }

  private send(msg: CoapMessage): void {
    if (this.conn.closed) return;
    try {
      this.conn.send(msg);
    } catch (err) {
      this.report(new Error(`answering ${this.conn.opts.remote}: ${errorText(err)}`, { cause: err }));
    }
  }
}

function diag(text: string): Buffer {
  return Buffer.from(text, "utf8");
}

/** Blocks of one transfer share method, path, query and Accept; the token may change. */
function transferKey(method: string, options: readonly CoapOption[]): string {
  const path = pathOf(options);
  const query = queryOf(options).join("&");
  const accept = acceptOf(options) ?? "";
  return `${method} ${path}?${query} a=${accept}`;
}

/** Uploads also keep concurrent bodies to one resource apart by Request-Tag. */
function uploadKey(key: string, options: readonly CoapOption[]): string {
  const tag = findOption(options, Opt.REQUEST_TAG)?.value.toString("hex") ?? "";
  return `${key} t=${tag}`;
}
