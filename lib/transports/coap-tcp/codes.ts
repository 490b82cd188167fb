/** CoAP codes are one byte: class in the top 3 bits, detail in the low 5 (RFC 7252 §3). */
export function makeCode(cls: number, detail: number): number {
  return ((cls & 0x07) << 5) | (detail & 0x1f);
}

export function codeClass(code: number): number {
  return code >> 5;
}

/** "2.05" form, as the CoAP specifications write codes. */
export function codeToString(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, "0")}`;
}

/** Parses "2.05"; undefined when the text is not a CoAP code. */
export function parseCode(text: string): number | undefined {
  const m = /^([0-7])\.([0-3][0-9])$/.exec(text);
  if (!m) return undefined;
  const detail = Number(m[2]);
  if (detail > 31) return undefined;
  return makeCode(Number(m[1]), detail);
}

export const Code = {
  EMPTY: 0x00,
  GET: makeCode(0, 1),
  POST: makeCode(0, 2),
  PUT: makeCode(0, 3),
  DELETE: makeCode(0, 4),
  CONTINUE: makeCode(2, 31),
  BAD_REQUEST: makeCode(4, 0),
  BAD_OPTION: makeCode(4, 2),
  NOT_FOUND: makeCode(4, 4),
  METHOD_NOT_ALLOWED: makeCode(4, 5),
  REQUEST_ENTITY_INCOMPLETE: makeCode(4, 8),
  REQUEST_ENTITY_TOO_LARGE: makeCode(4, 13),
  INTERNAL_SERVER_ERROR: makeCode(5, 0),
  SERVICE_UNAVAILABLE: makeCode(5, 3),
  PROXYING_NOT_SUPPORTED: makeCode(5, 5),
  // RFC 8323 §5: signaling codes live in class 7.
  CSM: makeCode(7, 1),
  PING: makeCode(7, 2),
  PONG: makeCode(7, 3),
  RELEASE: makeCode(7, 4),
  ABORT: makeCode(7, 5),
} as const;

export type CoapMethod = "GET" | "POST" | "PUT" | "DELETE";

const METHOD_CODES: Record<CoapMethod, number> = {
  GET: Code.GET,
  POST: Code.POST,
  PUT: Code.PUT,
  DELETE: Code.DELETE,
};

export function methodCode(method: CoapMethod): number {
  const code = METHOD_CODES[method];
  if (code === undefined) throw new TypeError(`unsupported CoAP method ${String(method)}`);
  return code;
}

export function methodName(code: number): CoapMethod | undefined {
  switch (code) {
    case Code.GET:
      return "GET";
    case Code.POST:
      return "POST";
    case Code.PUT:
      return "PUT";
    case Code.DELETE:
      return "DELETE";
    default:
      return undefined;
  }
}

/** Option numbers of requests and responses (RFC 7252 §5.10, RFC 7959, RFC 9175). */
export const Opt = {
  IF_MATCH: 1,
  URI_HOST: 3,
  ETAG: 4,
  IF_NONE_MATCH: 5,
  OBSERVE: 6,
  URI_PORT: 7,
  LOCATION_PATH: 8,
  OSCORE: 9,
  URI_PATH: 11,
  CONTENT_FORMAT: 12,
  MAX_AGE: 14,
  URI_QUERY: 15,
  HOP_LIMIT: 16,
  ACCEPT: 17,
  LOCATION_QUERY: 20,
  BLOCK2: 23,
  BLOCK1: 27,
  SIZE2: 28,
  PROXY_URI: 35,
  PROXY_SCHEME: 39,
  SIZE1: 60,
  NO_RESPONSE: 258,
  REQUEST_TAG: 292,
} as const;

/** Signaling option numbers are scoped to their code (RFC 8323 §5.3-5.6). */
export const SigOpt = {
  MAX_MESSAGE_SIZE: 2,
  BLOCK_WISE_TRANSFER: 4,
  CUSTODY: 2,
  ALTERNATIVE_ADDRESS: 2,
  HOLD_OFF: 4,
  BAD_CSM_OPTION: 2,
} as const;

/** Odd option numbers are critical: a receiver that does not know one must not ignore it. */
export function isCritical(optionNumber: number): boolean {
  return (optionNumber & 1) === 1;
}

export const ContentFormat = {
  TEXT: 0,
  LINK_FORMAT: 40,
  OCTET_STREAM: 42,
  JSON: 50,
  CBOR: 60,
  OCF_CBOR: 10000,
} as const;
