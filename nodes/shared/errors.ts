/**
 * What a node says when it fails. The cores (lib/) describe a failure in English for the
 * person who reads logs and tests (ProvisioningError, StoreError); the node puts the
 * sentence its catalogue has for the failure's code in front of it, in the runtime's
 * language (settings.js `lang`, else the system's): `<type>.errors.codes.<CODE>` in
 * nodes/locales/<lang>/<type>.json. The code,
 * `final`, the peer's own word (`status`) and the wait it asked for stay as they were, so a
 * Catch node's msg.error.code and the message's msg.errorStatus keep their meaning.
 */
import { isErrorCode, ProvisioningError } from "../../lib/model/errors";
import { StoreError } from "../../lib/stores/backend";

/** RED._ of the node's own catalogue (Node-RED binds it to the node set's namespace). */
export interface Translator {
  _: (key: string, values?: Record<string, string | number>) => string;
}

/** "<sentence>: <detail>", or the sentence alone when the core said nothing more. */
export function withDetail(sentence: string, detail: string): string {
  return detail ? `${sentence}: ${detail}` : sentence;
}

/**
 * The error a node gives done(err) for a failure with one of the neutral codes
 * (ERROR_CODES). A StoreError that reaches a node of another kind (a registry that cannot
 * be read) keeps its own code and is said in the words of STORE. Anything else (an error
 * with no code we know) is left as it is.
 */
export function localizedError(RED: Translator, type: string, err: unknown): Error {
  if (!(err instanceof Error)) return err as Error;
  const code = (err as { code?: unknown }).code;
  const said = isErrorCode(code) ? code : err instanceof StoreError ? "STORE" : undefined;
  if (said === undefined) return err;
  const message = withDetail(RED._(`${type}.errors.codes.${said}`), err.message);
  let out: Error;
  if (err instanceof ProvisioningError)
    out = new ProvisioningError(err.code, message, {
      final: err.final,
      status: err.status,
      retryAfterMs: err.retryAfterMs,
      cause: err.cause,
    });
  else if (err instanceof StoreError) out = new StoreError(err.code, message);
  else
    out = Object.assign(new Error(message, err.cause === undefined ? undefined : { cause: err.cause }), err);
  // Where it went wrong is where the core threw it.
  if (err.stack) out.stack = err.stack;
  return out;
}

/** A credential-store node's failure: the sentence for its StoreError code, then the detail. */
export function localizedStoreError(RED: Translator, type: string, err: StoreError): StoreError {
  const out = new StoreError(err.code, withDetail(RED._(`${type}.errors.codes.${err.code}`), err.message));
  if (err.stack) out.stack = err.stack;
  return out;
}
