/**
 * What the PostgreSQL backend connects to: discrete fields or a URL, read into one set of
 * pool options, a description without secrets, and the redaction of secrets from any text
 * that goes into an error. No `pg` import here: it is loaded only when a store opens.
 */
import type { ConnectionOptions } from "node:tls";
import type { PoolConfig } from "pg";
import { StoreError } from "./backend";

export interface PostgresBackendOptions {
  /** postgres://user:password@host:port/database[?host=/socket/dir&sslmode=require]; fields below win. */
  url?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  /**
   * TLS options (a tls-config node's ca, cert, key). Given: the connection uses TLS and
   * the server's certificate is verified, whatever else is set.
   */
  tls?: ConnectionOptions;
  /** The table of this store: letters, digits and "_", starting with a letter or "_". */
  namespace?: string;
  /** Connections this store may hold (default 2): instances times this stays under max_connections. */
  poolSize?: number;
  /** When given, values are sealed with a key derived from it (as the file backend does). */
  passphrase?: string;
  /** scrypt cost N of a NEW store header; tests lower it. */
  scryptN?: number;
  /** How long a new connection may take (default 5 s). */
  connectTimeoutMs?: number;
  /** How long one statement may take before it fails with IO (default 15 s). */
  queryTimeoutMs?: number;
}

export const DEFAULT_NAMESPACE = "credential_store";
export const DEFAULT_POOL_SIZE = 2;
export const MAX_POOL_SIZE = 50;
/** Leaves room for "<namespace>_expires", the index, within PostgreSQL's 63-byte names. */
const NAMESPACE_RE = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;
/** URL query parameters understood here; any other is refused rather than silently dropped. */
const URL_PARAMS = new Set(["host", "port", "sslmode", "application_name"]);

/** A quoted identifier: the namespace is checked first, quoting keeps its case. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function checkNamespace(ns: unknown): string {
  const name = ns === undefined || ns === "" ? DEFAULT_NAMESPACE : ns;
  if (typeof name !== "string" || !NAMESPACE_RE.test(name))
    throw new StoreError(
      "UNSUPPORTED",
      "the namespace names the store's table: 1 to 48 letters, digits and _, not starting with a digit",
    );
  return name;
}

/** The connection after the URL and the fields are read together. */
export interface Connection {
  host: string;
  port: number;
  database: string;
  user?: string;
  password?: string;
  tls: boolean;
  applicationName?: string;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new StoreError("UNSUPPORTED", "the PostgreSQL URL holds a bad %-escape");
  }
}

/** The URL's parts; the message of a failure never repeats the URL (it may hold a password). */
function parseUrl(text: string): Partial<Connection> {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new StoreError(
      "UNSUPPORTED",
      "the PostgreSQL URL does not parse (postgres://user@host:port/database)",
    );
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:")
    throw new StoreError("UNSUPPORTED", "a PostgreSQL URL starts with postgres:// or postgresql://");
  for (const k of u.searchParams.keys())
    if (!URL_PARAMS.has(k))
      throw new StoreError(
        "UNSUPPORTED",
        `the PostgreSQL URL parameter "${k.slice(0, 30)}" is not supported (host, port, sslmode, application_name)`,
      );
  const out: Partial<Connection> = {};
  if (u.hostname) out.host = decode(u.hostname).replace(/^\[(.*)\]$/, "$1");
  if (u.searchParams.get("host")) out.host = u.searchParams.get("host") as string;
  const port = u.port || u.searchParams.get("port");
  if (port) out.port = Number(port);
  const db = decode(u.pathname.replace(/^\//, ""));
  if (db) out.database = db;
  if (u.username) out.user = decode(u.username);
  if (u.password) out.password = decode(u.password);
  const sslmode = u.searchParams.get("sslmode");
  if (sslmode !== null) {
    if (!["disable", "require", "verify-ca", "verify-full"].includes(sslmode))
      throw new StoreError(
        "UNSUPPORTED",
        "sslmode may be disable, require, verify-ca or verify-full (the certificate is always verified)",
      );
    out.tls = sslmode !== "disable";
  }
  const app = u.searchParams.get("application_name");
  if (app) out.applicationName = app;
  return out;
}

/** True when `url` parses and holds a password (the config node refuses one there). */
export function urlHasPassword(url: string | undefined): boolean {
  if (!url?.trim()) return false;
  try {
    return new URL(url.trim()).password !== "";
  } catch {
    return false;
  }
}

export function readConnection(opts: PostgresBackendOptions): Connection {
  const fromUrl = opts.url?.trim() ? parseUrl(opts.url.trim()) : {};
  const pick = <T>(field: T | undefined, url: T | undefined): T | undefined =>
    field !== undefined && field !== "" ? field : url;
  const port = pick(opts.port, fromUrl.port) ?? 5432;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new StoreError("UNSUPPORTED", "the PostgreSQL port must be a whole number from 1 to 65535");
  const database = pick(opts.database, fromUrl.database);
  if (!database)
    throw new StoreError("UNSUPPORTED", "the PostgreSQL store needs a database (or a URL naming one)");
  return {
    host: pick(opts.host, fromUrl.host) ?? "localhost",
    port,
    database,
    user: pick(opts.user, fromUrl.user),
    password: pick(opts.password, fromUrl.password),
    tls: opts.tls !== undefined || fromUrl.tls === true,
    applicationName: fromUrl.applicationName,
  };
}

export function checkPoolSize(n: unknown): number {
  const size = n === undefined ? DEFAULT_POOL_SIZE : n;
  if (typeof size !== "number" || !Number.isInteger(size) || size < 1 || size > MAX_POOL_SIZE)
    throw new StoreError("UNSUPPORTED", `the pool size must be a whole number from 1 to ${MAX_POOL_SIZE}`);
  return size;
}

/** pg.Pool's options. TLS always verifies the server (rejectUnauthorized cannot be turned off here). */
export function poolConfig(c: Connection, opts: PostgresBackendOptions): PoolConfig {
  return {
    host: c.host,
    port: c.port,
    database: c.database,
    user: c.user,
    password: c.password,
    ssl: c.tls ? { ...(opts.tls ?? {}), rejectUnauthorized: true } : false,
    max: checkPoolSize(opts.poolSize),
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    query_timeout: opts.queryTimeoutMs ?? 15000,
    idleTimeoutMillis: 30000,
    keepAlive: true,
    // An idle pool never keeps Node.js from exiting (close() ends it anyway).
    allowExitOnIdle: true,
    application_name: c.applicationName ?? "node-red-contrib-provisioning",
  };
}

/** "postgres db@host:port": what status and errors may show, never the user's password. */
export function describeConnection(c: Connection): string {
  const host = c.host.includes(":") ? `[${c.host}]` : c.host;
  return `postgres ${c.database}@${host}:${c.port}`;
}

/** `text` with every secret of the options replaced (the password, the URL and its password). */
export function redact(text: string, opts: PostgresBackendOptions, c?: Connection): string {
  const secrets = [opts.password, c?.password, opts.url, opts.passphrase].filter(
    (s): s is string => typeof s === "string" && s.length > 0,
  );
  for (const s of [...secrets]) {
    secrets.push(encodeURIComponent(s));
  }
  let out = text;
  for (const s of secrets.sort((a, b) => b.length - a.length)) out = out.split(s).join("***");
  // Any URL with credentials in it, whatever they are.
  return out.replace(/(postgres(?:ql)?:\/\/[^:@/\s]*):[^@\s]*@/gi, "$1:***@");
}
