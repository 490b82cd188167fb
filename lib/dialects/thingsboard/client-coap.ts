import { isIPv6 } from "node:net";
import type { IncomingMessage } from "coap";
import { coapLib } from "../../util/protocol-libs";
import { finalError, transientError, type ProvisioningError } from "../../model/errors";
import { AbortedError } from "../../retry/run";
import { classifyNetworkFailure } from "../../transports/network-failure";
import { COAP_PATH } from "./wire";
import { describeUri, type TbExchange, type TbExchangeOptions } from "./client-common";

/**
 * A CoAP response code that is not ThingsBoard's answer, in the shared vocabulary (RFC 7252
 * section 5.9: 4.01/4.03 refuse the sender, 4.04 no such resource, 5.xx the server's
 * trouble); `status` keeps the code ("4.04").
 */
export function coapStatusFailure(code: string, message: string): ProvisioningError {
  const status = code;
  if (code.startsWith("5.")) return transientError("UNAVAILABLE", message, { status });
  if (code === "4.01" || code === "4.03") return finalError("DENIED", message, { status });
  if (code === "4.04") return finalError("NOT_FOUND", message, { status });
  if (code.startsWith("4.")) return finalError("REFUSED", message, { status });
  return finalError("INVALID_ANSWER", message, { status });
}

/**
 * One provisioning exchange over CoAP/UDP: a confirmable POST to /api/v1/provision. Each
 * exchange gets its own agent (its own socket), closed afterwards, so nothing (socket,
 * message-id or token tables) outlives the attempt or is shared with other flows through
 * node-coap's global agent.
 */
export const coapExchange: TbExchange = (uri: URL, body: string, opts: TbExchangeOptions) =>
  new Promise<Buffer>((resolve, reject) => {
    const where = describeUri(uri);
    if (opts.signal?.aborted) return reject(new AbortedError());
    const host = uri.hostname.replace(/^\[|\]$/g, "");
    const agent = new (coapLib().Agent)({ type: isIPv6(host) ? "udp6" : "udp4" });
    let settled = false;
    const finish = (err: Error | undefined, answer?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      try {
        agent.close();
      } catch {
        // node-coap closes an agent by itself once its last request is answered.
      }
      if (err) reject(err);
      else resolve(answer as Buffer);
    };
    const onAbort = () => finish(new AbortedError());
    const timer = setTimeout(
      () => finish(transientError("TIMEOUT", `no answer from ${where} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    agent.on("error", (err: Error) => finish(classifyNetworkFailure(err, where)));
    const req = agent.request({
      hostname: host,
      port: Number(uri.port || 5683),
      method: "POST",
      pathname: `/${COAP_PATH}`,
      confirmable: true,
      contentFormat: "application/json",
      accept: "application/json",
    });
    req.on("response", (res: IncomingMessage) => {
      // ThingsBoard: SUCCESS is 2.01, NOT_FOUND and FAILURE are 4.00; both carry the JSON.
      if (res.code === "2.01" || res.code === "2.04" || res.code === "2.05" || res.code === "4.00") {
        return finish(undefined, res.payload);
      }
      finish(coapStatusFailure(res.code, `${where} answered CoAP ${res.code}`));
    });
    req.on("timeout", () =>
      finish(transientError("TIMEOUT", `no answer from ${where} after CoAP retransmissions`)),
    );
    req.on("error", (err: Error) => finish(classifyNetworkFailure(err, where)));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    opts.onRequesting?.();
    req.end(Buffer.from(body));
  });
