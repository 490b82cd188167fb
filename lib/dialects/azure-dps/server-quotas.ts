/**
 * Azure DPS's quotas ("Azure IoT Hub Device Provisioning Service quotas and limits"):
 * registrations per minute per service (1,000) and operation status polls per device
 * (5 per 10 seconds). Past either, Azure answers 429 with a retry-after; so does this.
 * Memory is bounded: at most `maxDevices` registration ids are remembered, the least
 * recently seen forgotten first.
 */

/** A sliding window of timestamps per key. */
export class PollLimit {
  private readonly seen = new Map<string, number[]>();

  constructor(
    private readonly count: number,
    private readonly windowMs: number,
    private readonly maxDevices = 10000,
  ) {}

  /** Takes one poll for `key`; undefined when allowed, else the milliseconds to wait. */
  take(key: string, nowMs: number): number | undefined {
    const list = (this.seen.get(key) ?? []).filter((t) => t > nowMs - this.windowMs);
    this.seen.delete(key);
    if (this.seen.size >= this.maxDevices) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    if (list.length >= this.count) {
      this.seen.set(key, list);
      return Math.max(1, list[0] + this.windowMs - nowMs);
    }
    list.push(nowMs);
    this.seen.set(key, list);
    return undefined;
  }
}

/** A token bucket for the whole service: `perMinute` registrations, refilled evenly. */
export class RegistrationQuota {
  private tokens: number;
  private at: number;

  constructor(
    private readonly perMinute: number,
    nowMs: number,
  ) {
    this.tokens = perMinute;
    this.at = nowMs;
  }

  /** Takes one registration; undefined when allowed, else the milliseconds to wait. */
  take(nowMs: number): number | undefined {
    const rate = this.perMinute / 60000;
    this.tokens = Math.min(this.perMinute, this.tokens + Math.max(0, nowMs - this.at) * rate);
    this.at = nowMs;
    if (this.tokens < 1) return Math.ceil((1 - this.tokens) / rate);
    this.tokens -= 1;
    return undefined;
  }
}
