/**
 * What the Mainflux bootstrap service answers, as plain values (status, headers, body),
 * so that the service core stays apart from any HTTP server: http.ts writes them to a
 * node:http or Express response.
 */

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface ServiceRequest {
  method: string;
  /** Path below the service root, e.g. /things/bootstrap/abc (percent-encoded as received). */
  path: string;
  authorization?: string;
  contentType?: string;
  body?: Buffer;
  remote?: string;
}

export const JSON_TYPE = "application/json";

export function json(status: number, body: string, extra: Record<string, string> = {}): Answer {
  return { status, headers: { "content-type": JSON_TYPE, ...extra }, body: Buffer.from(body, "utf8") };
}

export function empty(status: number, extra: Record<string, string> = {}): Answer {
  return { status, headers: { ...extra }, body: Buffer.alloc(0) };
}
