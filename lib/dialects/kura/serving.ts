/**
 * TRANSITIONAL: the Everyware / Kura serving dialect's place in the registration, replaced
 * by its real implementation before this dialect is offered anywhere.
 */
import { finalError } from "../../model/errors";
import type { RunningService, ServingDialect } from "../../service/dialect";

export const kuraServing: ServingDialect<unknown, RunningService> = {
  id: "kura",
  lockAccount: "deviceName",
  check: () => "the Everyware / Kura serving dialect is not ready yet",
  start: () => Promise.reject(finalError("CONFIG", "the Everyware / Kura serving dialect is not ready yet")),
};
