import { randomFillSync } from "node:crypto";

const POOL_SIZE = 4096;

/**
 * Random tokens from a refilled pool: one getrandom call per ~1000 tokens instead of one
 * per request. Uniqueness per connection is the caller's check against its pending map.
 */
export class TokenSource {
  private pool = Buffer.alloc(POOL_SIZE);
  private at = POOL_SIZE;

  constructor(private readonly length = 4) {}

  next(): Buffer {
    if (this.at + this.length > POOL_SIZE) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    const token = Buffer.from(this.pool.subarray(this.at, this.at + this.length));
    this.at += this.length;
    return token;
  }
}
