import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { finalError, transientError, type ProvisioningError } from "../../model/errors";
import { AbortedError, parseRetryAfter } from "../../retry/run";
import { classifyNetworkFailure } from "../../transports/network-failure";
import { HTTP_PATH } from "./wire";
import { describeUri, tlsSocketOptions, type TbExchange, type TbExchangeOptions } from "./client-common";

// Kept here for the callers that imported it from the ThingsBoard client.
export { parseRetryAfter };

/**
 * An HTTP status that is not ThingsBoard's answer (ThingsBoard answers 200 with JSON, also
 * for NOT_FOUND and FAILURE), in the shared vocabulary; `status` keeps the number.
 */
export function httpStatusFailure(
  status: number,
  message: string,
  retryAfter?: string | string[],
): ProvisioningError {
  if (status === 429 || status === 503) {
    // RFC 6585 section 4 and RFC 9110 section 15.6.4: throttled or overloaded; the
    // Retry-After it sends is honoured by the retry loop.
    return transientError("BUSY", `${message}: busy, try later`, {
      status,
      retryAfterMs: parseRetryAfter(retryAfter),
    });
  }
  // Other 5xx are the server's passing trouble; any other status means a wrong URL or proxy.
  if (status >= 500) return transientError("UNAVAILABLE", message, { status });
  if (status === 401 || status === 403) return finalError("DENIED", message, { status });
  if (status === 404) return finalError("NOT_FOUND", message, { status });
  if (status >= 400) return finalError("REFUSED", message, { status });
  return finalError("INVALID_ANSWER", message, { status });
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
      () => finish(transientError("TIMEOUT", `no answer from ${where} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          finish(finalError("TOO_LARGE", `${where} sent an answer larger than ${MAX_ANSWER_BYTES} bytes`));
        } else chunks.push(c);
      });
      res.on("error", (err) => finish(classifyNetworkFailure(err, where)));
      res.on("end", () => {
        const status = res.statusCode ?? 0;
        if (status === 200 || status === 201) return finish(undefined, Buffer.concat(chunks));
        finish(httpStatusFailure(status, `${where} answered HTTP ${status}`, res.headers["retry-after"]));
      });
    };
    const req = secure ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
    req.on("error", (err) => finish(classifyNetworkFailure(err, where)));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("socket", () => opts.onRequesting?.());
    req.end(body);
  });
