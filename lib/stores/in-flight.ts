import { StoreError } from "./backend";

/**
 * The operations of one store under way, so that close() can wait for them. Nothing
 * starts after close: an operation is handed over as a function, not as a promise that
 * would already be running.
 */
export class InFlight {
  private readonly running = new Set<Promise<unknown>>();
  private isClosed = false;

  constructor(private readonly describe: () => string) {}

  get closed(): boolean {
    return this.isClosed;
  }

  refusal(): StoreError {
    return new StoreError("IO", `the store ${this.describe()} is closed`);
  }

  run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.isClosed) return Promise.reject(this.refusal());
    const p = operation();
    this.running.add(p);
    const done = () => this.running.delete(p);
    p.then(done, done);
    return p;
  }

  /** Refuses new operations and waits for those under way, whatever becomes of them. */
  async close(): Promise<void> {
    this.isClosed = true;
    await Promise.allSettled([...this.running]);
  }
}
