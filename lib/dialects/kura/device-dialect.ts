/**
 * TRANSITIONAL: the Everyware / Kura device dialect's place in the registration, replaced
 * by its real implementation over ./device.ts before this dialect is offered anywhere.
 */
import type { DeviceDialect } from "../../client/dialect";
import { finalError } from "../../model/errors";

export const kuraDialect: DeviceDialect<unknown, never> = {
  id: "kura",
  identity: { messageProperty: "clientId" },
  endpointOf() {
    throw finalError("CONFIG", "the Everyware / Kura device dialect is not ready yet");
  },
  prepare() {
    return Promise.reject(finalError("CONFIG", "the Everyware / Kura device dialect is not ready yet"));
  },
  attempt() {
    return Promise.reject(finalError("CONFIG", "the Everyware / Kura device dialect is not ready yet"));
  },
};
