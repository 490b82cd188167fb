/**
 * The statements of the PostgreSQL backend over one store table, and how its failures
 * read as StoreError codes. A table per store:
 *
 *   key        text COLLATE "C" PRIMARY KEY   (byte order: LIKE 'prefix%' can use the index)
 *   value      json NOT NULL                  (the value, or its SealedBox when sealed)
 *   sealed     boolean NOT NULL
 *   meta       json NOT NULL                  (EntryMeta: listing reads it alone)
 *   version    bigint NOT NULL                (+1 on every write: update()'s version check)
 *   expires_at timestamptz                    (meta.expiresAt, for claims, counters and pruning)
 *
 * json rather than jsonb: jsonb refuses the escape \u0000 that a JSON string may hold
 * (PostgreSQL manual, "JSON Types": "jsonb will reject \u0000"), and keeps no key order.
 * The key check of an encrypted store is one row under HEADER_KEY, which holds a control
 * character and so can never be an entry's key (entry.ts checkKey refuses those).
 */
import { StoreError } from "./backend";
import { quoteIdent } from "./postgres-config";
import { COUNT_KIND, TRANSIENT_KINDS } from "./primitives";

export const HEADER_KEY = "\u0001store-header";

/** SQLSTATEs after which a transaction is simply run again (PostgreSQL Appendix A). */
const RETRY_CODES = new Set([
  "23505", // unique_violation: a row inserted by another instance since we looked
  "40001", // serialization_failure
  "40P01", // deadlock_detected
]);

export function isRetriable(err: unknown): boolean {
  return RETRY_CODES.has((err as { code?: unknown } | null)?.code as string);
}

/**
 * A pg failure as a StoreError: no privilege or a read-only server (a hot standby) is
 * READ_ONLY, everything else (refused, reset, timed out, the server shutting down,
 * authentication) is IO. `scrub` takes secrets out of the driver's text first.
 */
export function pgFailure(err: unknown, what: string, scrub: (s: string) => string): StoreError {
  if (err instanceof StoreError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : undefined;
  const text = scrub(String(e?.message ?? err ?? "failed")).slice(0, 300) || "failed";
  const detail = `${what}: ${text}${code && !text.includes(code) ? ` (${code})` : ""}`;
  if (code === "42501" || code === "25006") return new StoreError("READ_ONLY", detail);
  return new StoreError("IO", detail);
}

/** Escapes LIKE's wildcards (and its escape character) so a prefix matches only itself. */
export function likePrefix(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (c) => "\\" + c) + "%";
}

export interface StoreSql {
  create: string;
  index: string;
  get: string;
  set: string;
  insertIfAbsent: string;
  updateIfVersion: string;
  insertStrict: string;
  updateByKey: string;
  delete: string;
  list: string;
  lockMany: string;
  getMany: string;
  claim: string;
  count: string;
  prune: string;
}

const COLS = "key, value, sealed, meta, version, expires_at";

export function storeSql(namespace: string): StoreSql {
  const t = quoteIdent(namespace);
  const ix = quoteIdent(`${namespace}_expires`);
  const live = `t.sealed = false AND t.meta->>'kind' = '${COUNT_KIND}' AND t.expires_at > $5
    AND json_typeof(t.value->'n') = 'number' AND json_typeof(t.value->'since') = 'string'`;
  return {
    create: `CREATE TABLE IF NOT EXISTS ${t} (
      key text COLLATE "C" PRIMARY KEY,
      value json NOT NULL,
      sealed boolean NOT NULL DEFAULT false,
      meta json NOT NULL,
      version bigint NOT NULL DEFAULT 1,
      expires_at timestamptz
    )`,
    index: `CREATE INDEX IF NOT EXISTS ${ix} ON ${t} (expires_at) WHERE expires_at IS NOT NULL`,
    get: `SELECT value, sealed, meta, version FROM ${t} WHERE key = $1`,
    // $1 key, $2 value, $3 sealed, $4 meta, $5 expires_at
    set: `INSERT INTO ${t} AS t (${COLS}) VALUES ($1, $2, $3, $4, 1, $5)
      ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, sealed = EXCLUDED.sealed,
        meta = EXCLUDED.meta, version = t.version + 1, expires_at = EXCLUDED.expires_at`,
    insertIfAbsent: `INSERT INTO ${t} (${COLS}) VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (key) DO NOTHING`,
    // ... $6 the version read
    updateIfVersion: `UPDATE ${t} SET value = $2, sealed = $3, meta = $4, version = version + 1,
      expires_at = $5 WHERE key = $1 AND version = $6`,
    insertStrict: `INSERT INTO ${t} (${COLS}) VALUES ($1, $2, $3, $4, 1, $5)`,
    updateByKey: `UPDATE ${t} SET value = $2, sealed = $3, meta = $4, version = version + 1,
      expires_at = $5 WHERE key = $1`,
    delete: `DELETE FROM ${t} WHERE key = $1`,
    list: `SELECT key, meta FROM ${t} WHERE key LIKE $1 AND key <> $2 ORDER BY key`,
    lockMany: `SELECT key, value, sealed, meta, version FROM ${t} WHERE key = ANY($1::text[])
      ORDER BY key FOR UPDATE`,
    getMany: `SELECT key, value, sealed, meta, version FROM ${t} WHERE key = ANY($1::text[])`,
    // $6 now: a claim whose expiry has passed is taken over, a live one is left alone.
    claim: `INSERT INTO ${t} AS t (${COLS}) VALUES ($1, $2, $3, $4, 1, $5)
      ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, sealed = EXCLUDED.sealed,
        meta = EXCLUDED.meta, version = t.version + 1, expires_at = EXCLUDED.expires_at
      WHERE t.expires_at IS NOT NULL AND t.expires_at <= $6`,
    // $1 key, $2 first value, $3 first meta, $4 window end, $5 now (timestamptz),
    // $6 now (ISO text, for updatedAt). A live window counts on, else the first value.
    count: `INSERT INTO ${t} AS t (${COLS}) VALUES ($1, $2, false, $3, 1, $4)
      ON CONFLICT (key) DO UPDATE SET
        value = CASE WHEN ${live}
          THEN json_build_object('n', (t.value->>'n')::bigint + 1, 'since', t.value->>'since')
          ELSE EXCLUDED.value END,
        meta = CASE WHEN ${live}
          THEN json_build_object('obtainedAt', t.value->>'since', 'updatedAt', $6::text,
            'kind', '${COUNT_KIND}', 'expiresAt', t.meta->>'expiresAt')
          ELSE EXCLUDED.meta END,
        sealed = false,
        version = t.version + 1,
        expires_at = CASE WHEN ${live} THEN t.expires_at ELSE EXCLUDED.expires_at END
      RETURNING (t.value->>'n')::bigint AS n`,
    // Bounded, and never waits for a row another instance holds (SKIP LOCKED).
    prune: `DELETE FROM ${t} WHERE key IN (
      SELECT key FROM ${t} WHERE expires_at <= $1
        AND meta->>'kind' IN (${TRANSIENT_KINDS.map((k) => `'${k}'`).join(", ")})
      ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  };
}
