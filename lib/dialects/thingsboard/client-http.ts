import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { AbortedError } from "../../retry/run";
import { HTTP_PATH } from "./wire";
import {
  classifyNetworkError,
  describeUri,
  TbFinalError,
  TbTransientError,
  tlsSocketOptions,
  type TbExchange,
  type TbExchangeOptions,
} from "./client-common";

/**
 * Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date. Milliseconds from
 * now, or undefined when absent or unreadable.
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  now: number = Date.now(),
): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/** Answers larger than this are not ThingsBoard's: stop reading rather than buffer them. */
const MAX_ANSWER_BYTES = 256 * 1024;

/** `{base}/api/v1/provision`, keeping a base path the user gave (a reverse proxy prefix). */
export function httpProvisionUrl(base: URL): URL {
  const url = new URL(base.href);
  url.pathname = url.pathname.replace(/\/+$/, "") + HTTP_PATH;
  url.search = "";
  url.hash = "";
  return url;
}

/**
 * One provisioning exchange over HTTP(S). node:https rather than fetch: fetch cannot take a
 * CA, a client certificate or a per-request verification choice without undici's
 * dispatcher, which is not a dependency here.
 */
export const httpExchange: TbExchange = (uri: URL, body: string, opts: TbExchangeOptions) =>
  new Promise<Buffer>((resolve, reject) => {
    const where = describeUri(uri);
    if (opts.signal?.aborted) return reject(new AbortedError());
    const url = httpProvisionUrl(uri);
    const secure = url.protocol === "https:";
    const options: RequestOptions = {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        "content-length": Buffer.byteLength(body),
      },
      agent: false,
    };
    if (secure) Object.assign(options, tlsSocketOptions(opts.tls));
    let settled = false;
    const finish = (err: Error | undefined, answer?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(answer as Buffer);
    };
    const onAbort = () => finish(new AbortedError());
    const timer = setTimeout(
      () => finish(new TbTransientError("TIMEOUT", `no answer from ${where} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          finish(
            new TbFinalError(
              "INVALID_ANSWER",
              `${where} sent an answer larger than ${MAX_ANSWER_BYTES} bytes`,
            ),
          );
        } else chunks.push(c);
      });
      res.on("error", (err) => finish(classifyNetworkError(err, where)));
      res.on("end", () => {
        const status = res.statusCode ?? 0;
        if (status === 200 || status === 201) return finish(undefined, Buffer.concat(chunks));
        const msg = `${where} answered HTTP ${status}`;
        if (status === 429 || status === 503) {
          // RFC 6585 section 4 and RFC 9110 section 15.6.4: throttled or overloaded; the
          // Retry-After it sends is honoured by the retry loop.
          const after = parseRetryAfter(res.headers["retry-after"]);
          return finish(new TbTransientError("BUSY", `${msg}: busy, try later`, after));
        }
        // Other 5xx are the server's passing trouble; any other status means a wrong URL or proxy.
        finish(
          status >= 500 || status === 429
            ? new TbTransientError("STATUS", msg)
            : new TbFinalError("STATUS", msg),
        );
      });
    };
    const req = secure ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
    req.on("error", (err) => finish(classifyNetworkError(err, where)));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("socket", () => opts.onRequesting?.());
    req.end(body);
  });
