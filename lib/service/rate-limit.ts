/**
 * A token bucket per remote address: the serving side's flood protection. Memory is
 * bounded (least recently seen remotes are forgotten first) so that a scan from many
 * addresses cannot grow it without limit.
 */

/** The serving nodes' default: a gateway may onboard 100 children at once, then 20 a second. */
export const DEFAULT_RATE_LIMIT: Readonly<RateLimitOptions> = Object.freeze({ perSecond: 20, burst: 100 });

export interface RateLimitOptions {
  /** Tokens added per second; 0 or less turns the limiter off. */
  perSecond: number;
  /** Largest number of requests a remote may make at once. */
  burst: number;
  /** Most remotes remembered at once (default 10,000). */
  maxRemotes?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxRemotes: number;

  constructor(
    private readonly opts: RateLimitOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.maxRemotes = opts.maxRemotes ?? 10000;
  }

  /** Seconds until a refused remote has a token again (for Retry-After). */
  get retryAfterSeconds(): number {
    return this.enabled ? 1 / this.opts.perSecond : 1;
  }

  get enabled(): boolean {
    return this.opts.perSecond > 0;
  }

  /** Takes one token for `remote`; false means the remote is over its rate. */
  take(remote: string | undefined): boolean {
    if (!this.enabled || remote === undefined) return true;
    const b = this.bucket(remote);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Gives back one token taken earlier (never above the burst): a transport that charged a
   * remote at connect time returns it just before the request it paid for is counted.
   */
  refund(remote: string | undefined): void {
    if (!this.enabled || remote === undefined) return;
    const b = this.bucket(remote);
    b.tokens = Math.min(Math.max(1, this.opts.burst), b.tokens + 1);
  }

  private bucket(remote: string): Bucket {
    const t = this.now();
    let b = this.buckets.get(remote);
    if (b) {
      b.tokens = Math.min(this.opts.burst, b.tokens + ((t - b.at) / 1000) * this.opts.perSecond);
      b.at = t;
      // Re-inserting keeps the Map in least-recently-seen order for eviction.
      this.buckets.delete(remote);
    } else {
      if (this.buckets.size >= this.maxRemotes) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
      b = { tokens: Math.max(1, this.opts.burst), at: t };
    }
    this.buckets.set(remote, b);
    return b;
  }
}
