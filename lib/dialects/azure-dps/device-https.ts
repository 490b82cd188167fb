/**
 * Azure DPS device side over HTTPS, as the Device Registration REST API and Microsoft's
 * Node SDK (provisioning/transport/http/src/http.ts over azure-iot-http-base's
 * RestApiClient) send it: `PUT /{idScope}/registrations/{id}/register?api-version=..`
 * with the registration request, then `GET /{idScope}/registrations/{id}/operations/{op}
 * ?api-version=..` while the service assigns; `Accept: application/json`, `Content-Type:
 * application/json; charset=utf-8`, `Authorization` the SAS token (none with X.509, whose
 * client certificate is the TLS options'), a `retry-after` header honoured. node:https
 * rather than fetch: fetch cannot take a CA or a client certificate without undici's
 * dispatcher. One kept-alive socket per attempt.
 */
import { Agent, request, type RequestOptions } from "node:https";
import type { IncomingMessage } from "node:http";
import { finalError } from "../../model/errors";
import { AbortedError, parseRetryAfter } from "../../retry/run";
import { classifyNetworkFailure } from "../../transports/network-failure";
import { tlsSocketOptions } from "../../transports/tls-client";
import type { DpsAnswer, DpsSession, DpsStep, SessionOptions } from "./device-flow";
import type { AzurePrepared } from "./device-prepare";
import { httpRegisterPath, httpStatusPath } from "./wire";

/** What we say we are (the SDK: `azure-iot-provisioning-device/<version> (<node>; <os>)`). */
export const USER_AGENT = "node-red-contrib-provisioning (azure-dps)";

const STATUS_BODY = "{}";

export function openHttpsSession(p: AzurePrepared, o: SessionOptions): DpsSession {
  const where = p.target.endpoint;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let told = false;

  const send = (step: DpsStep): Promise<DpsAnswer> =>
    new Promise<DpsAnswer>((resolve, reject) => {
      if (o.signal.aborted) return reject(new AbortedError());
      const register = step.kind === "register";
      const path = register
        ? httpRegisterPath(p.idScope, p.registrationId, p.apiVersion)
        : httpStatusPath(p.idScope, p.registrationId, step.operationId, p.apiVersion);
      const headers: Record<string, string | number> = {
        accept: "application/json",
        "content-type": "application/json; charset=utf-8",
        "user-agent": USER_AGENT,
      };
      if (o.password !== undefined) headers.authorization = o.password;
      // The Node SDK's status GET carries `{}` (RestApiClient serializes the empty object it
      // is given): what Azure takes from every device on that SDK, so ours sends the same.
      const body = register ? p.body : STATUS_BODY;
      headers["content-length"] = Buffer.byteLength(body);
      const options: RequestOptions = {
        host: p.target.hostname,
        port: p.target.port,
        method: register ? "PUT" : "GET",
        path,
        headers,
        agent,
        ...tlsSocketOptions(o.tls),
      };
      let settled = false;
      const finish = (err: Error | undefined, answer?: DpsAnswer) => {
        if (settled) return;
        settled = true;
        o.signal.removeEventListener("abort", onAbort);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(answer as DpsAnswer);
      };
      const onAbort = () => finish(new AbortedError());
      const onResponse = (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > p.maxAnswerBytes)
            finish(finalError("TOO_LARGE", `${where} sent an answer larger than ${p.maxAnswerBytes} bytes`));
          else chunks.push(c);
        });
        res.on("error", (err) => finish(classifyNetworkFailure(err, where)));
        res.on("end", () =>
          finish(undefined, {
            status: res.statusCode ?? 0,
            retryAfterMs: parseRetryAfter(res.headers["retry-after"]),
            body: Buffer.concat(chunks),
          }),
        );
      };
      const req = request(options, onResponse);
      req.on("error", (err) => finish(classifyNetworkFailure(err, where)));
      req.on("socket", () => {
        if (!told) o.onRequesting?.();
        told = true;
      });
      o.signal.addEventListener("abort", onAbort, { once: true });
      req.end(body);
    });

  return {
    send,
    close() {
      agent.destroy();
      return Promise.resolve();
    },
  };
}
