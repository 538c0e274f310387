// A token bucket per client: `rate` requests per second on average, bursts up to `burst`. Past it the
// answer is 429 with Retry-After. Buckets of clients gone quiet are dropped, so the map stays small.

import { GatewayError, GrpcCode } from '../errors';
import type { RequestHead } from '../api/context';

interface Bucket {
  tokens: number;
  at: number;
}

const IDLE_MS = 60_000;

/** A request over its client's rate: the 429 to answer and its Retry-After header. */
export interface RateLimited {
  error: GatewayError;
  headers: Record<string, string>;
}

/** The limiter: undefined while the client is within its rate, else the refusal to send. */
export function rateLimit(opts: { rate: number; burst: number; clientOf: (req: RequestHead) => string }): (req: RequestHead) => RateLimited | undefined {
  const buckets = new Map<string, Bucket>();
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [k, b] of buckets) if (now - b.at > IDLE_MS) buckets.delete(k);
  }, IDLE_MS);
  sweeper.unref();
  return (req) => {
    const now = performance.now();
    const key = opts.clientOf(req);
    const bucket = buckets.get(key) ?? { tokens: opts.burst, at: now };
    bucket.tokens = Math.min(opts.burst, bucket.tokens + ((now - bucket.at) / 1000) * opts.rate);
    bucket.at = now;
    buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / opts.rate));
    return {
      error: new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: rate limit of ${opts.rate} requests/s exceeded`),
      headers: { 'Retry-After': String(retryAfter) },
    };
  };
}
