// A token bucket per client: `rate` requests per second on average, bursts up to `burst`. Past it the
// answer is 429 with Retry-After. Buckets of clients gone quiet are dropped, so the map stays small.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, GrpcCode } from '../errors';
import { sendError } from '../api/router';

interface Bucket {
  tokens: number;
  at: number;
}

const IDLE_MS = 60_000;

/** True when the client is over its rate and was answered 429. */
export function rateLimit(opts: {
  rate: number;
  burst: number;
  clientOf: (req: IncomingMessage) => string;
}): (req: IncomingMessage, res: ServerResponse) => boolean {
  const buckets = new Map<string, Bucket>();
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [k, b] of buckets) if (now - b.at > IDLE_MS) buckets.delete(k);
  }, IDLE_MS);
  sweeper.unref();
  return (req, res) => {
    const now = performance.now();
    const key = opts.clientOf(req);
    const bucket = buckets.get(key) ?? { tokens: opts.burst, at: now };
    bucket.tokens = Math.min(opts.burst, bucket.tokens + ((now - bucket.at) / 1000) * opts.rate);
    bucket.at = now;
    buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return false;
    }
    const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / opts.rate));
    sendError(res, new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: rate limit of ${opts.rate} requests/s exceeded`), {
      'Retry-After': String(retryAfter),
    });
    return true;
  };
}
