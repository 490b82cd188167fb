/**
 * THIS PACKAGE'S OWN definition of an Everyware-style provisioning exchange. Everyware
 * Cloud's provisioning documentation names the steps (connect to the provision broker with
 * a provision request's client id, user name and password; send a provision message, with
 * the activation key when the request has one; receive the certificate chain, the
 * configuration and the applications; disconnect; reconnect to the account broker) but not
 * the topics or metric names of that exchange, and no public code has them. So they are
 * defined here, once, in the Kura MQTT namespace that eclipse/kura's and eclipse/kapua's
 * documentation and code use for every device application, and with KuraPayload bodies
 * (./payload.ts): both sides of this package speak it, and the topic templates are
 * settings, so that a user can match a broker that names things otherwise.
 *
 * The namespace (eclipse/kura, "MQTT namespace" and the CloudService request/response
 * pattern): a device publishes and subscribes under `$EDC/<account>/<client-id>/...`
 * (Kapua's broker ACLs allow a device exactly that subtree); a request is published to
 * `.../<app-id>/{GET|PUT|DEL|EXEC}/<resource>` with the metrics `request.id` and
 * `requester.client.id`, and its reply comes on
 * `$EDC/<account>/<requester.client.id>/<app-id>/REPLY/<request.id>` with `response.code`
 * (200, 400, 404, 500) and, on failure, `response.exception.message`.
 *
 * The exchange, app id PROV-V1 (ours: Kura's own apps are CONF-V1, DEPLOY-V2, CMD-V1),
 * all at QoS 1, the device being the requester, so every topic is in its own subtree:
 *
 *   1. the device subscribes to its reply topic
 *        $EDC/{account}/{clientId}/PROV-V1/REPLY/{requestId}
 *   2. and publishes the provision message to
 *        $EDC/{account}/{clientId}/PROV-V1/EXEC/provision
 *      metrics (all STRING): request.id (a fresh random id per attempt),
 *      requester.client.id (its client id), activation.key (when it has one), and its
 *      identity under Kura's BIRTH certificate names (eclipse/kura
 *      LifecyclePayloadBuilder, eclipse/kapua simulator-kura BirthCertificateBuilder):
 *      display_name, model_name, model_id, part_number, serial_number, firmware_version,
 *      bios_version, os, os_version, os_arch, ..., application_ids (comma-separated).
 *   3. the service answers on the reply topic:
 *        response.code INT32 200, and STRING metrics:
 *          certificate.chain            PEM certificates, the chain whose root signs what
 *                                       the account sends (checked by ca-authentication)
 *          broker-url                   \
 *          topic.context.account-name    | the account's MQTT configuration, under the
 *          username                      | names of Kura's MqttDataTransport settings
 *          password                      | (at most one configuration per request)
 *          client-id                    /
 *          application.<n>.dp.name      \  n = 1..9: the applications, under DEPLOY-V2's
 *          application.<n>.dp.version    | install metric names
 *          application.<n>.dp.uri       /
 *      or a refusal: response.code 400 (the message is malformed), 403 (the activation
 *      key is wrong: ours, Kura defines no code for it), 404 (no provision request for
 *      this device), 500 (the service failed), with response.exception.message.
 *   4. after an answer with code 200, the device publishes to
 *        $EDC/{account}/{clientId}/PROV-V1/EXEC/provisioned
 *      (request.id, requester.client.id) so the service can count the request completed
 *      only once the device holds its answer, then disconnects.
 *
 * A CONNECT that matches no provision request is refused at CONNECT (MQTT 3.1.1 return
 * codes 4 or 5), before any of this.
 */
import { finalError, ProvisioningError, transientError, type ErrorCode } from "../../model/errors";
import { splitCertificates } from "../../pki/pem";
import { metricsOf, type KuraMetric, type KuraMetricValue, type KuraPayload } from "./payload";

/** Our application id for the exchange. */
export const PROVISION_APP_ID = "PROV-V1";

export type TopicVariable = "account" | "clientId" | "appId" | "requestId";

export interface KuraTopics {
  /** Where the device sends the provision message. */
  request: string;
  /** Where the service answers; the device subscribes to it before it asks. */
  reply: string;
  /** Where the device says it holds its answer. */
  completed: string;
}

export const DEFAULT_TOPICS: Readonly<KuraTopics> = Object.freeze({
  request: "$EDC/{account}/{clientId}/{appId}/EXEC/provision",
  reply: "$EDC/{account}/{clientId}/{appId}/REPLY/{requestId}",
  completed: "$EDC/{account}/{clientId}/{appId}/EXEC/provisioned",
});

/** Metric names of the Kura request/response pattern (eclipse/kura KuraRequestPayload, KuraResponsePayload). */
export const METRIC = Object.freeze({
  requestId: "request.id",
  requesterClientId: "requester.client.id",
  responseCode: "response.code",
  responseExceptionMessage: "response.exception.message",
  /** Ours. */
  activationKey: "activation.key",
  /** Ours. */
  certificateChain: "certificate.chain",
});

/** The account configuration, under the names of Kura's MqttDataTransport settings. */
export const CONFIGURATION_METRIC = Object.freeze({
  brokerUrl: "broker-url",
  accountName: "topic.context.account-name",
  username: "username",
  password: "password",
  clientId: "client-id",
});

/** `application.<n>.<DEPLOY-V2 install metric>`, n = 1..MAX_APPLICATIONS. */
export function applicationMetric(n: number, key: "name" | "version" | "uri"): string {
  return `application.${n}.dp.${key}`;
}

/** Everyware's limit: at most 9 applications (bundles) per provision request. */
export const MAX_APPLICATIONS = 9;

/** A device's identity, carried under Kura's BIRTH certificate metric names (all strings). */
export interface KuraDeviceIdentity {
  uptime?: string;
  displayName?: string;
  modelName?: string;
  modelId?: string;
  partNumber?: string;
  serialNumber?: string;
  availableProcessors?: string;
  totalMemory?: string;
  firmwareVersion?: string;
  biosVersion?: string;
  os?: string;
  osVersion?: string;
  osArch?: string;
  jvmName?: string;
  jvmVersion?: string;
  jvmProfile?: string;
  kuraVersion?: string;
  osgiFramework?: string;
  osgiFrameworkVersion?: string;
  connectionInterface?: string;
  connectionIp?: string;
  /** Sent as one comma-separated string, as Kura's BIRTH sends it. */
  applicationIds?: string[];
}

type IdentityString = Exclude<keyof KuraDeviceIdentity, "applicationIds">;

/** Identity field -> BIRTH metric name, in the order Kura's BIRTH lists them. */
export const BIRTH_METRIC: Readonly<Record<keyof KuraDeviceIdentity, string>> = Object.freeze({
  uptime: "uptime",
  displayName: "display_name",
  modelName: "model_name",
  modelId: "model_id",
  partNumber: "part_number",
  serialNumber: "serial_number",
  availableProcessors: "available_processors",
  totalMemory: "total_memory",
  firmwareVersion: "firmware_version",
  biosVersion: "bios_version",
  os: "os",
  osVersion: "os_version",
  osArch: "os_arch",
  jvmName: "jvm_name",
  jvmVersion: "jvm_version",
  jvmProfile: "jvm_profile",
  kuraVersion: "kura_version",
  osgiFramework: "osgi_framework",
  osgiFrameworkVersion: "osgi_framework_version",
  connectionInterface: "connection_interface",
  connectionIp: "connection_ip",
  applicationIds: "application_ids",
});

/** Longest string metric we read (an identity value, a key, a configuration value). */
export const MAX_FIELD_CHARS = 1024;
/** Longest certificate chain we read: a few PEM certificates of some kB each. */
export const MAX_CHAIN_CHARS = 64 * 1024;
const MAX_EXCEPTION_CHARS = 200;

// ---------------------------------------------------------------------------------------
// Topics

const VARIABLES: readonly TopicVariable[] = ["account", "clientId", "appId", "requestId"];

/**
 * Why a topic template cannot be used, or undefined. A placeholder is a whole topic level
 * (so a topic can be matched back into its values), no wildcards, and the template must
 * hold the client id (privacy: each device asks and is answered in its own subtree);
 * `mustHave` adds what a template needs besides (the reply: {requestId}).
 */
export function templateError(template: string, mustHave: TopicVariable[] = []): string | undefined {
  if (typeof template !== "string" || template === "") return "the topic template is empty";
  const seen = new Set<string>();
  for (const level of template.split("/")) {
    if (level.includes("+") || level.includes("#")) return `the topic template ${template} holds a wildcard`;
    if (!level.includes("{") && !level.includes("}")) continue;
    const m = /^\{([A-Za-z]+)\}$/.exec(level);
    if (!m) return `in the topic template ${template}, a placeholder must be a whole level`;
    if (!VARIABLES.includes(m[1] as TopicVariable))
      return `the topic template ${template} names the unknown placeholder {${m[1]}}`;
    if (seen.has(m[1])) return `the topic template ${template} names {${m[1]}} twice`;
    seen.add(m[1]);
  }
  for (const v of ["clientId", ...mustHave])
    if (!seen.has(v)) return `the topic template ${template} lacks {${v}}`;
  return undefined;
}

/** Why a set of templates cannot be used, or undefined. */
export function topicsError(t: KuraTopics): string | undefined {
  return (
    templateError(t.request) ??
    templateError(t.reply, ["requestId"]) ??
    templateError(t.completed) ??
    (t.request === t.completed ? "the request and completed topics are the same" : undefined)
  );
}

/** Why a value cannot stand in a topic level (an account, a client id, a request id), or undefined. */
export function topicValueError(value: unknown, what: string): string | undefined {
  if (typeof value !== "string" || value === "") return `the ${what} is empty`;
  if (value.length > 256) return `the ${what} is longer than 256 characters`;
  if (/[/+#]/.test(value) || value.includes("\0"))
    return `the ${what} holds a character a topic level cannot: / + # or NUL`;
  return undefined;
}

export type TopicValues = Partial<Record<TopicVariable, string>>;

/** Fills a template; throws CONFIG when a value it needs is missing or cannot stand in a level. */
export function topicFor(template: string, values: TopicValues): string {
  return template
    .split("/")
    .map((level) => {
      const m = /^\{([A-Za-z]+)\}$/.exec(level);
      if (!m) return level;
      const name = m[1] as TopicVariable;
      const err = topicValueError(values[name], name);
      if (err) throw finalError("CONFIG", err);
      return values[name] as string;
    })
    .join("/");
}

/** Reads a topic back through a template: the values, or undefined when it does not match. */
export function matchTopic(template: string, topic: string): TopicValues | undefined {
  const want = template.split("/");
  const got = topic.split("/");
  if (want.length !== got.length) return undefined;
  const out: TopicValues = {};
  for (let i = 0; i < want.length; i++) {
    const m = /^\{([A-Za-z]+)\}$/.exec(want[i]);
    if (!m) {
      if (want[i] !== got[i]) return undefined;
    } else {
      if (got[i] === "") return undefined;
      out[m[1] as TopicVariable] = got[i];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The provision message (device -> service)

export interface KuraProvisionRequest {
  requestId: string;
  requesterClientId: string;
  activationKey?: string;
  identity: KuraDeviceIdentity;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

function str(name: string, value: string): KuraMetric {
  return { name, type: "STRING", value };
}

function identityMetrics(identity: KuraDeviceIdentity): KuraMetric[] {
  const out: KuraMetric[] = [];
  for (const [key, name] of Object.entries(BIRTH_METRIC) as Array<[keyof KuraDeviceIdentity, string]>) {
    const v = identity[key];
    if (v === undefined || v === "") continue;
    if (key === "applicationIds") {
      const ids = v as string[];
      if (ids.length > 0) out.push(str(name, ids.join(",")));
    } else out.push(str(name, v as string));
  }
  return out;
}

export function buildProvisionRequest(r: KuraProvisionRequest, now = Date.now()): KuraPayload {
  const metrics: KuraMetric[] = [
    str(METRIC.requestId, r.requestId),
    str(METRIC.requesterClientId, r.requesterClientId),
  ];
  if (r.activationKey !== undefined && r.activationKey !== "")
    metrics.push(str(METRIC.activationKey, r.activationKey));
  return { timestamp: now, metrics: [...metrics, ...identityMetrics(r.identity)] };
}

function stringMetric(
  m: Map<string, KuraMetricValue>,
  name: string,
  fail: (message: string) => ProvisioningError,
  max = MAX_FIELD_CHARS,
): string | undefined {
  const v = m.get(name);
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw fail(`the metric ${name} is not a string`);
  if (v.length > max) throw fail(`the metric ${name} is longer than ${max} characters`);
  return v;
}

/**
 * Reads a provision message (the serving side). Throws INVALID (final) when it is not
 * one; unknown metrics are ignored.
 */
export function parseProvisionRequest(p: KuraPayload): KuraProvisionRequest {
  const fail = (message: string) => finalError("INVALID", message);
  const m = metricsOf(p);
  const requestId = stringMetric(m, METRIC.requestId, fail);
  if (requestId === undefined || !REQUEST_ID.test(requestId))
    throw fail(
      `the provision message has no ${METRIC.requestId} of 1 to 64 letters, digits, '.', '_' or '-'`,
    );
  const requesterClientId = stringMetric(m, METRIC.requesterClientId, fail);
  if (requesterClientId === undefined || topicValueError(requesterClientId, "requester client id"))
    throw fail(`the provision message has no usable ${METRIC.requesterClientId}`);
  const out: KuraProvisionRequest = { requestId, requesterClientId, identity: {} };
  const key = stringMetric(m, METRIC.activationKey, fail);
  if (key !== undefined) out.activationKey = key;
  for (const [field, name] of Object.entries(BIRTH_METRIC) as Array<[keyof KuraDeviceIdentity, string]>) {
    const v = stringMetric(m, name, fail);
    if (v === undefined || v === "") continue;
    if (field === "applicationIds")
      out.identity.applicationIds = v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
    else out.identity[field as IdentityString] = v;
  }
  return out;
}

/** A new request id: 32 hex characters, fresh for every attempt. */
export function newRequestId(random: (n: number) => Buffer): string {
  return random(16).toString("hex");
}

// ---------------------------------------------------------------------------------------
// The answer (service -> device)

export interface KuraAccountConfiguration {
  brokerUrl: string;
  accountName: string;
  username: string;
  password: string;
  clientId: string;
}

export interface KuraApplication {
  name: string;
  version: string;
  uri: string;
}

export interface KuraProvisionAnswer {
  /** PEM, one per certificate, in the order sent. */
  certificateChain: string[];
  configuration?: KuraAccountConfiguration;
  applications: KuraApplication[];
}

/** response.code values; 403 is ours (see the header). */
export const RESPONSE_CODE = Object.freeze({
  ok: 200,
  badRequest: 400,
  denied: 403,
  notFound: 404,
  error: 500,
});

const BROKER_SCHEMES = new Set(["mqtt:", "mqtts:", "tcp:", "ssl:", "ws:", "wss:"]);

/** Why a broker URL cannot be used, or undefined. */
export function brokerUrlError(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "the broker URL does not parse";
  }
  if (!BROKER_SCHEMES.has(u.protocol)) return `the broker URL's scheme ${u.protocol} is not an MQTT one`;
  if (u.hostname === "") return "the broker URL has no host";
  return undefined;
}

/** Builds the answer (the serving side); throws CONFIG when what it would hand out is unusable. */
export function buildProvisionAnswer(a: KuraProvisionAnswer, now = Date.now()): KuraPayload {
  const metrics: KuraMetric[] = [{ name: METRIC.responseCode, type: "INT32", value: RESPONSE_CODE.ok }];
  if (a.certificateChain.length > 0) metrics.push(str(METRIC.certificateChain, a.certificateChain.join("")));
  if (a.configuration) {
    const c = a.configuration;
    const err = brokerUrlError(c.brokerUrl);
    if (err) throw finalError("CONFIG", err);
    for (const [key, name] of Object.entries(CONFIGURATION_METRIC) as Array<
      [keyof KuraAccountConfiguration, string]
    >)
      metrics.push(str(name, c[key]));
  }
  if (a.applications.length > MAX_APPLICATIONS)
    throw finalError("CONFIG", `more than ${MAX_APPLICATIONS} applications`);
  a.applications.forEach((app, i) => {
    metrics.push(str(applicationMetric(i + 1, "name"), app.name));
    metrics.push(str(applicationMetric(i + 1, "version"), app.version));
    metrics.push(str(applicationMetric(i + 1, "uri"), app.uri));
  });
  return { timestamp: now, metrics };
}

/** Builds a refusal: a response.code other than 200 and its exception message. */
export function buildProvisionRefusal(code: number, message: string, now = Date.now()): KuraPayload {
  return {
    timestamp: now,
    metrics: [
      { name: METRIC.responseCode, type: "INT32", value: code },
      str(METRIC.responseExceptionMessage, message),
    ],
  };
}

/** What a response code means for the device: the neutral code. */
export function codeOfResponse(code: number): ErrorCode {
  if (code === RESPONSE_CODE.badRequest) return "INVALID";
  if (code === RESPONSE_CODE.denied) return "DENIED";
  if (code === RESPONSE_CODE.notFound) return "NOT_FOUND";
  if (code >= 400 && code < 500) return "REFUSED";
  if (code >= 500 && code < 600) return "UNAVAILABLE";
  return "INVALID_ANSWER";
}

/**
 * Reads the answer (the device side). A refusal throws its neutral code with the
 * response code in `status` (UNAVAILABLE is transient, the others final); an answer that
 * is not ours throws INVALID_ANSWER.
 */
export function parseProvisionAnswer(p: KuraPayload): KuraProvisionAnswer {
  const fail = (message: string) => finalError("INVALID_ANSWER", message);
  const m = metricsOf(p);
  const code = m.get(METRIC.responseCode);
  if (typeof code !== "number" || !Number.isInteger(code))
    throw fail(`the answer has no ${METRIC.responseCode} (INT32)`);
  if (code !== RESPONSE_CODE.ok) {
    const said = m.get(METRIC.responseExceptionMessage);
    const text = typeof said === "string" && said !== "" ? `: ${said.slice(0, MAX_EXCEPTION_CHARS)}` : "";
    const neutral = codeOfResponse(code);
    const message = `the service refused the provision message with response code ${code}${text}`;
    throw neutral === "UNAVAILABLE"
      ? transientError(neutral, message, { status: code })
      : finalError(neutral, message, { status: code });
  }
  const chainText = stringMetric(m, METRIC.certificateChain, fail, MAX_CHAIN_CHARS);
  const out: KuraProvisionAnswer = {
    certificateChain: chainText === undefined ? [] : splitCertificates(chainText),
    applications: [],
  };
  if (chainText !== undefined && chainText.trim() !== "" && out.certificateChain.length === 0)
    throw fail(`the answer's ${METRIC.certificateChain} holds no PEM certificate`);
  const config: Partial<KuraAccountConfiguration> = {};
  let anyConfig = false;
  for (const [key, name] of Object.entries(CONFIGURATION_METRIC) as Array<
    [keyof KuraAccountConfiguration, string]
  >) {
    const v = stringMetric(m, name, fail);
    if (v !== undefined) {
      config[key] = v;
      anyConfig = true;
    }
  }
  if (anyConfig) {
    if (!config.brokerUrl) throw fail(`the answer's configuration has no ${CONFIGURATION_METRIC.brokerUrl}`);
    const err = brokerUrlError(config.brokerUrl);
    if (err) throw fail(`the answer's configuration: ${err}`);
    out.configuration = {
      brokerUrl: config.brokerUrl,
      accountName: config.accountName ?? "",
      username: config.username ?? "",
      password: config.password ?? "",
      clientId: config.clientId ?? "",
    };
  }
  for (let n = 1; n <= MAX_APPLICATIONS; n++) {
    const name = stringMetric(m, applicationMetric(n, "name"), fail);
    const version = stringMetric(m, applicationMetric(n, "version"), fail);
    const uri = stringMetric(m, applicationMetric(n, "uri"), fail);
    if (name === undefined && version === undefined && uri === undefined) continue;
    if (!name || version === undefined || !uri)
      throw fail(`the answer's application ${n} lacks its name, version or uri`);
    out.applications.push({ name, version, uri });
  }
  return out;
}
