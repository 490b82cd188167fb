/**
 * Errors of the Mainflux dialect. `code` is stable (copied to msg.error.code); `status`
 * is the HTTP status the service answered, when there was one. Messages never hold a key.
 */
import { FinalError } from "../../retry/run";

export type MainfluxErrorCode =
  | "CONFIG" // a setting that cannot work (key length, URL)
  | "MISSING_KEY" // 401
  | "FORBIDDEN" // 403: wrong external key or encryption key
  | "NOT_FOUND" // 404: unknown external id
  | "UNAVAILABLE" // 503, 5xx, network
  | "REFUSED" // another 4xx
  | "BAD_RESPONSE" // not JSON, cannot be decrypted, too large, bad certificate
  | "TIMEOUT";

interface Coded {
  code: MainfluxErrorCode;
  status?: number;
}

/** Worth another attempt under the retry policy. */
export class MainfluxError extends Error implements Coded {
  constructor(
    readonly code: MainfluxErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "MainfluxError";
  }
}

/** Never retried: asking again cannot change the answer. */
export class MainfluxFinalError extends FinalError implements Coded {
  constructor(
    readonly code: MainfluxErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "MainfluxFinalError";
  }
}
