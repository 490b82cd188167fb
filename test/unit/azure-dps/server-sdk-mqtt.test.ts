/** The Azure DPS serving side over MQTT against Microsoft's device SDK (see test/support/azure-sdk-suite.ts). */
import { azureSdkSuite } from "../../support/azure-sdk-suite";

azureSdkSuite("mqtt");
