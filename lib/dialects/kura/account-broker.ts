/**
 * A demo stand-in for an Everyware account broker: after provisioning, a Kura device
 * disconnects from the provision broker and reconnects to its account's broker with the
 * configuration it was handed (Everyware Cloud's provisioning documentation, step 4). So
 * that a demo or an example runs with no outside service, this small broker accepts only
 * the account credentials handed out by this service's COMPLETED requests, and lets each
 * client publish and subscribe only in its own `$EDC/<account>/<client id>/#` subtree, as
 * Kapua's broker ACLs give a device exactly that subtree. It is not an account broker
 * (no persistence, no data, no platform); it is what a device needs to show it reconnected.
 */
import type { AuthenticateError, Client } from "aedes";
import type { TlsOptions } from "node:tls";
import { secretsEqual } from "../../util/secrets";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../transports/embedded-broker";
import type { KuraProvisioningService } from "./server";

export interface KuraAccountBrokerOptions {
  host?: string;
  /** 0 picks a free port. */
  port: number;
  tls?: TlsOptions;
}

export interface KuraAccountBroker {
  port: number;
  close(): Promise<void>;
}

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** The subtree a session may use; set when its CONNECT is accepted. */
const PREFIX = Symbol("kura-account-prefix");
type WithPrefix = Client & { [PREFIX]?: string };

/** Whether a topic or filter stays inside `prefix` (no wildcard before its end). */
export function insidePrefix(prefix: string, topic: string): boolean {
  return topic.startsWith(prefix) && !/[+#]/.test(prefix) && topic.length > prefix.length;
}

/**
 * The account subtree of a client that presents credentials handed out by a COMPLETED
 * request, or undefined. The account password is compared in constant time.
 */
export async function accountSessionOf(
  service: KuraProvisioningService,
  clientId: string,
  username: string | undefined,
  password: string,
): Promise<string | undefined> {
  if (!username) return undefined;
  let found: string | undefined;
  for (const s of await service.records.list(service.account)) {
    if (s.kind !== "COMPLETED") continue;
    const r = await service.records.get({ group: s.group, id: s.id });
    const c = r?.configuration;
    if (!r || r.status !== "COMPLETED" || !c) continue;
    const id = c.clientId || r.clientId;
    const ok =
      c.username === username && id === clientId && secretsEqual(c.password, password) && c.password !== "";
    if (ok && !found) found = `$EDC/${c.accountName || service.account}/${id}/`;
  }
  return found;
}

export async function startKuraAccountBroker(
  service: KuraProvisioningService,
  opts: KuraAccountBrokerOptions,
): Promise<KuraAccountBroker> {
  const broker: EmbeddedBroker = await startEmbeddedBroker({
    host: opts.host ?? "127.0.0.1",
    port: opts.port,
    tls: opts.tls,
    // Devices stay connected to their account broker: no first-request deadline, no lifetime.
    limits: { firstRequestMs: 0, maxLifetimeMs: 0 },
    hooks: {
      preConnect: (_client, packet, cb) => {
        // A will would be a publish outside any check.
        packet.will = undefined;
        cb(null, true);
      },
      authenticate: (client, username, password, done) => {
        const pw = password === undefined ? "" : Buffer.from(password).toString("utf8");
        accountSessionOf(service, client.id, username, pw).then(
          (prefix) => {
            if (!prefix) return done(refusal("bad user name or password", 4), false);
            (client as WithPrefix)[PREFIX] = prefix;
            done(null, true);
          },
          () => done(refusal("the account broker cannot read its store", 3), false),
        );
      },
      authorizePublish: (client, packet, cb) => {
        const prefix = (client as WithPrefix | null)?.[PREFIX];
        if (!prefix || !insidePrefix(prefix, packet.topic))
          return cb(new Error("a device may publish only under its own $EDC subtree"));
        cb(null);
      },
      authorizeSubscribe: (client, sub, cb) => {
        const prefix = (client as WithPrefix | null)?.[PREFIX];
        if (!prefix || !insidePrefix(prefix, sub.topic)) return cb(null, null);
        cb(null, sub);
      },
      authorizeForward: (client, packet) => {
        const prefix = (client as WithPrefix | null)?.[PREFIX];
        return prefix && packet.topic.startsWith(prefix) ? packet : null;
      },
    },
  });
  return { port: broker.port, close: () => broker.close() };
}
