// Latency histogram with logarithmic buckets (1 % wide, from 1 µs to ~4 h): fixed size, mergeable
// across processes, percentiles exact to within one bucket; the maximum is kept exactly.

const GROWTH = Math.log(1.01);
const BUCKETS = 2_200;

export interface HistogramData {
  counts: number[];
  count: number;
  maxMs: number;
  /** Samples below zero: receive before send, i.e. clock skew beyond the correction. */
  negative: number;
}

export class LatencyHistogram {
  private counts = new Float64Array(BUCKETS);
  count = 0;
  maxMs = 0;
  negative = 0;

  /** One sample of `ms`, or `count` of them (a fraction when a quantile stands for a share of a run). */
  add(ms: number, count = 1): void {
    if (ms < 0) this.negative += count;
    const us = Math.max(1, ms * 1000);
    const i = Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / GROWTH));
    this.counts[i] += count;
    this.count += count;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  merge(data: HistogramData): void {
    const n = Math.min(BUCKETS, data.counts.length);
    for (let i = 0; i < n; i++) this.counts[i] += data.counts[i];
    this.count += data.count;
    this.negative += data.negative;
    this.maxMs = Math.max(this.maxMs, data.maxMs);
  }

  /** The upper bound (ms) of the bucket holding the p-th quantile, p in [0, 1]; NaN when empty. */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(p * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(Math.exp(i * GROWTH) / 1000, this.maxMs);
    }
    return this.maxMs;
  }

  toJSON(): HistogramData {
    return { counts: Array.from(this.counts), count: this.count, maxMs: this.maxMs, negative: this.negative };
  }
}
