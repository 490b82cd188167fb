/**
 * The registration operations a device polls (PUT .../register answers an operation id,
 * GET .../operations/{id} its state). Kept in memory, bounded; over a store shared by
 * several instances (StoreBackend.shared: PostgreSQL) each operation is also written there,
 * begun and ended, because behind a load balancer a device's polls reach any instance:
 * over HTTPS each poll is a request of its own, a few seconds after the last (the
 * retry-after), and a new connection may carry it, which the balancer may give to an
 * instance that never saw the register. Over MQTT the polls ride the session's one
 * connection.
 *
 * An operation an instance began and never ended (that instance killed mid-operation) is
 * answered from the registration record when that instance stored it before it died
 * (server.ts), else "failed" once past its stale bound, so the device registers again
 * instead of polling an operation nobody runs.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { JsonValue, StoreBackend } from "../../stores/backend";
import { EPHEMERAL_KIND } from "../../stores/primitives";

/** Operations kept in memory at most, and how long each is kept after it began. */
export const MAX_OPERATIONS = 10000;
export const OPERATION_TTL_MS = 10 * 60 * 1000;
/** How long an unfinished operation of another instance is polled as "assigning" past the decision time. */
export const OPERATION_STALE_MARGIN_MS = 60 * 1000;

/** One answer as a transport sends it (server.ts DpsAnswer). */
export interface OperationAnswer {
  status: number;
  body: unknown;
  retryAfterS?: number;
}

export interface Operation {
  id: string;
  /** Lower case (Azure's ids are case-insensitive). */
  registrationId: string;
  startedMs: number;
  done?: OperationAnswer;
}

/**
 * What a poll finds: the operation, running or ended (`elsewhere` when another instance
 * runs it), or "stale" (begun elsewhere, never ended).
 */
export type Found = { op: Operation; elsewhere?: true } | "stale" | undefined;

interface StoredOperation {
  registrationId: string;
  startedMs: number;
  staleAtMs: number;
  done?: OperationAnswer;
}

export class Operations {
  private readonly local = new Map<string, Operation>();
  private readonly store?: StoreBackend;

  constructor(
    store: StoreBackend,
    private readonly now: () => number,
    /** The longest an operation runs: the flow's decision time when it decides. */
    private readonly runMs: number,
  ) {
    if (store.shared) this.store = store;
  }

  /** A new operation, written to the shared store (when there is one) before it is answered. */
  async begin(registrationId: string): Promise<Operation> {
    // Oldest first (insertion order): expired ones go, and the oldest when full.
    for (const [id, op] of this.local) {
      if (this.local.size < MAX_OPERATIONS && !this.expired(op)) break;
      this.local.delete(id);
    }
    // Azure's look ("4.<16 hex>.<uuid>"); random, so one device cannot guess another's.
    const op: Operation = {
      id: `4.${randomBytes(8).toString("hex")}.${randomUUID()}`,
      registrationId,
      startedMs: this.now(),
    };
    if (this.store) await this.write(op);
    this.local.set(op.id, op);
    return op;
  }

  /** The operation's end, in memory at once and then in the shared store (never rejects). */
  async end(op: Operation, answer: OperationAnswer): Promise<void> {
    op.done = answer;
    if (!this.store) return;
    try {
      await this.write(op);
    } catch {
      // Unwritten: a poll at another instance finds it running, then stale; this one knows.
    }
  }

  /** The operation of `registrationId` under `id`, from memory or the shared store. */
  async find(id: string, registrationId: string): Promise<Found> {
    const mine = this.local.get(id);
    if (mine) return mine.registrationId === registrationId && !this.expired(mine) ? { op: mine } : undefined;
    if (!this.store || id.length > 128) return undefined;
    const entry = await this.store.get(keyOf(id));
    const s = entry?.value as unknown as StoredOperation | undefined;
    if (!entry || entry.expired || !s || s.registrationId !== registrationId) return undefined;
    const op: Operation = { id, registrationId, startedMs: s.startedMs };
    if (s.done) return { op: { ...op, done: s.done }, elsewhere: true };
    return this.now() > s.staleAtMs ? "stale" : { op, elsewhere: true };
  }

  private expired(op: Operation): boolean {
    return this.now() - op.startedMs > OPERATION_TTL_MS;
  }

  private async write(op: Operation): Promise<void> {
    const value: StoredOperation = {
      registrationId: op.registrationId,
      startedMs: op.startedMs,
      staleAtMs: op.startedMs + this.runMs + OPERATION_STALE_MARGIN_MS,
    };
    if (op.done) value.done = op.done;
    await (this.store as StoreBackend).set(keyOf(op.id), value as unknown as JsonValue, {
      kind: EPHEMERAL_KIND,
      expiresAt: new Date(op.startedMs + OPERATION_TTL_MS).toISOString(),
    });
  }
}

/** Hashed: a key names no operation id (a poll's only secret); "#" keeps it apart from records. */
function keyOf(id: string): string {
  return `azure-dps/#operation/${createHash("sha256").update(id, "utf8").digest("hex")}`;
}
