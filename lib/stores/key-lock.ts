/** Serialises async work per key: the next job for a key starts when the previous settles. */
export class KeyLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(job, job);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /**
   * Runs `job` holding the locks of all `keys`, taken one after the other in key order: two
   * jobs over overlapping keys then always queue in the same order, so none waits for a
   * lock the other holds while holding one it wants (the classic lock-ordering rule).
   */
  runMany<T>(keys: readonly string[], job: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const step = (i: number): Promise<T> =>
      i === sorted.length ? job() : this.run(sorted[i], () => step(i + 1));
    return step(0);
  }
}
