// A token bucket per client: `rate` requests per second on average, bursts up to `burst`. Past it the
// answer is 429 with Retry-After. Buckets of clients gone quiet are dropped, so the map stays small.
// A request is an HTTP request, a stream's open (a WebSocket upgrade, an HTTP or SSE/NDJSON watch) or
// one message on a stream (a WebSocket message, each request of a watch or keepalive body).

import { GatewayError, GrpcCode } from '../errors';

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

/** The limiter: undefined while the client (by its key) is within its rate, else the refusal to send.
 *  `count` requests at once (a body of many) are taken whole or not at all. */
export type RateLimiter = (client: string, count?: number) => RateLimited | undefined;

export function rateLimit(opts: { rate: number; burst: number }): RateLimiter {
  const buckets = new Map<string, Bucket>();
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [k, b] of buckets) if (now - b.at > IDLE_MS) buckets.delete(k);
  }, IDLE_MS);
  sweeper.unref();
  return (key, count = 1): RateLimited | undefined => {
    const now = performance.now();
    const bucket = buckets.get(key) ?? { tokens: opts.burst, at: now };
    bucket.tokens = Math.min(opts.burst, bucket.tokens + ((now - bucket.at) / 1000) * opts.rate);
    bucket.at = now;
    buckets.set(key, bucket);
    if (bucket.tokens >= count) {
      bucket.tokens -= count;
      return undefined;
    }
    if (count > opts.burst) {
      // Never within the rate, however long it waits: no Retry-After.
      return {
        error: new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: rate limit of ${opts.rate} requests/s exceeded: the body holds more requests than the burst of ${opts.burst} (RATE_LIMIT_BURST); send them in smaller bodies`),
        headers: {},
      };
    }
    const retryAfter = Math.max(1, Math.ceil((count - bucket.tokens) / opts.rate));
    return {
      error: new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: rate limit of ${opts.rate} requests/s exceeded`),
      headers: { 'Retry-After': String(retryAfter) },
    };
  };
}
