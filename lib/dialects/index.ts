/**
 * The registration of every protocol: one device dialect and one serving dialect per
 * dialect id. Typed as a record over DialectId, so a new id does not compile until both of
 * its dialects are listed here, and test/contract/registrations.test.ts fails until both
 * run the contract suites (test/contract/device-<id>.test.ts, serving-<id>.test.ts).
 */
import type { DeviceDialect } from "../client/dialect";
import type { DialectId } from "../model/result";
import type { RunningService, ServingDialect } from "../service/dialect";
import { azureDpsDialect } from "./azure-dps/device-dialect";
import { azureDpsServing } from "./azure-dps/serving";
import { kuraDialect } from "./kura/device-dialect";
import { kuraServing } from "./kura/serving";
import { mainfluxDialect } from "./mainflux/device-dialect";
import { mainfluxServing } from "./mainflux/serving";
import { plgdDpsDialect } from "./plgd-dps/device-dialect";
import { plgdDpsServing } from "./plgd-dps/serving";
import { thingsboardDialect } from "./thingsboard/device-dialect";
import { thingsboardServing } from "./thingsboard/serving";

/* eslint-disable @typescript-eslint/no-explicit-any -- each dialect has its own settings */
export const DEVICE_DIALECTS: Readonly<Record<DialectId, DeviceDialect<any, any>>> = Object.freeze({
  thingsboard: thingsboardDialect,
  mainflux: mainfluxDialect,
  "plgd-dps": plgdDpsDialect,
  kura: kuraDialect,
  "azure-dps": azureDpsDialect,
});

export const SERVING_DIALECTS: Readonly<Record<DialectId, ServingDialect<any, RunningService>>> =
  Object.freeze({
    thingsboard: thingsboardServing,
    mainflux: mainfluxServing,
    "plgd-dps": plgdDpsServing,
    kura: kuraServing,
    "azure-dps": azureDpsServing,
  });
/* eslint-enable @typescript-eslint/no-explicit-any */
