/**
 * plgd DPS failures in the package's one vocabulary (lib/model/errors.ts). A DpsStepError
 * is a ProvisioningError: its neutral `code` is what flows switch on (msg.error.code, the
 * status payload's error.code), and plgd's own name for the failure (GET_CREDENTIALS,
 * ERROR_RESPONSE, ...; iotivity-lite api/plgd/plgd_dps.h plgd_dps_error_t) stays beside it
 * in `plgdError`, with the CoAP code the service answered in `status`.
 *
 * `final` keeps plgd's meaning of a non-transient failure (plgd-dev/doc, "Retry
 * mechanism"): the device forces a full re-provision on the next attempt. plgd's client
 * never gives up, so the long-running client retries final failures too, on its schedule.
 */
import { ProvisioningError, type ErrorCode } from "../../model/errors";
import { classifyNetworkFailure } from "../../transports/network-failure";
import { OcfFormatError } from "./ocf";
import { DpsErrorCode, STEP_FLAGS, type DpsErrorName, type DpsStep } from "./status";

export class DpsStepError extends ProvisioningError {
  constructor(
    code: ErrorCode,
    /** plgd's own name of the failure. */
    readonly plgdError: DpsErrorName,
    message: string,
    opts: {
      final?: boolean;
      /** The CoAP code the service answered ("4.03"). */
      coapCode?: string;
      retryAfterMs?: number;
      /** True when the step's own timeout expired (plgd then retries without waiting). */
      timedOut?: boolean;
      cause?: unknown;
    } = {},
  ) {
    super(code, message, {
      final: opts.final,
      status: opts.coapCode,
      retryAfterMs: opts.retryAfterMs,
      cause: opts.cause,
    });
    this.name = "DpsStepError";
    this.timedOut = opts.timedOut === true;
  }

  readonly timedOut: boolean;
  /** The step that failed, once known. */
  step?: DpsStep;

  get coapCode(): string | undefined {
    return typeof this.status === "string" ? this.status : undefined;
  }

  /** Transient in plgd's words: retry the failed step rather than start over. */
  get transient(): boolean {
    return !this.final;
  }
}

/**
 * An error answer of the DPS service. plgd: 5.03 and 5.04 are transient (the step is
 * retried); every other error code is a failure (a full re-provision). A 5.03 with Max-Age
 * is the service throttling this device (RFC 7252 section 5.9.3.4): BUSY, with the wait.
 */
export function answerError(coapCode: string, message: string, maxAgeS?: number): DpsStepError {
  if (coapCode === "5.03" || coapCode === "5.04") {
    const throttled = coapCode === "5.03" && maxAgeS !== undefined;
    return new DpsStepError(throttled ? "BUSY" : "UNAVAILABLE", "CONNECT", message, {
      coapCode,
      final: false,
      ...(throttled ? { retryAfterMs: maxAgeS * 1000 } : {}),
    });
  }
  const code: ErrorCode =
    coapCode === "4.01" || coapCode === "4.03"
      ? "DENIED"
      : coapCode === "4.04"
        ? "NOT_FOUND"
        : coapCode === "4.09"
          ? "CONFLICT"
          : coapCode === "4.13"
            ? "TOO_LARGE"
            : coapCode.startsWith("5.")
              ? "UNAVAILABLE"
              : "REFUSED";
  return new DpsStepError(code, "ERROR_RESPONSE", message, { coapCode, final: true });
}

/** An answer of the right code whose body is not the step's representation. */
export function invalidAnswer(step: DpsStep, message: string, coapCode?: string): DpsStepError {
  return new DpsStepError("INVALID_ANSWER", STEP_FLAGS[step].error, message, { coapCode, final: true });
}

/** The step's own deadline (each retry schedule value is the step's timeout, as plgd has it). */
export function stepTimeout(ms: number): DpsStepError {
  return new DpsStepError("TIMEOUT", "CONNECT", `no answer within ${ms / 1000} s`, {
    final: false,
    timedOut: true,
  });
}

/**
 * Any failure of a step as a DpsStepError: ours pass through; a body that does not parse
 * is the step's own failure; everything on the way (socket, TLS, CoAP over TCP) goes
 * through the one reading of network failures. A TLS failure is final, as in every other
 * dialect: plgd's client counts a handshake that fails as a failure of the step, not as
 * connection trouble that clears up, so the next attempt re-provisions fully (and, the
 * schedule exhausted, moves to the next endpoint).
 */
export function stepFailure(step: DpsStep, err: unknown, where: string): DpsStepError {
  let e: DpsStepError;
  if (err instanceof DpsStepError) e = err;
  else if (err instanceof OcfFormatError) e = invalidAnswer(step, err.message);
  else {
    const p = classifyNetworkFailure(err, where);
    e = new DpsStepError(p.code, "CONNECT", p.message, { final: p.final, cause: err });
  }
  e.step ??= step;
  return e;
}

/** What a status event says about the last failure (no secret is ever in these messages). */
export interface DpsErrorInfo {
  /** The neutral code (lib/model/errors.ts), as in msg.error.code. */
  code: ErrorCode;
  /** plgd's name of the failure, and its number in plgd_dps_error_t. */
  name: DpsErrorName;
  plgdCode: number;
  message: string;
  coapCode?: string;
  transient: boolean;
}

export function errorInfo(e: DpsStepError): DpsErrorInfo {
  const info: DpsErrorInfo = {
    code: e.code,
    name: e.plgdError,
    plgdCode: DpsErrorCode[e.plgdError],
    message: e.message,
    transient: e.transient,
  };
  if (e.coapCode) info.coapCode = e.coapCode;
  return info;
}
