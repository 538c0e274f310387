// Counters and histograms for the per-request metrics, registered in prom-client's registry like any
// other metric (prom-client formats, aggregates across workers and serves them), but counted here:
// prom-client's own labelled children convert and hash their label object on every inc() and
// observe(), about 700 bytes of garbage and 1–2 µs per request for the three series a request touches.
// A child here is bound to its labels once and counts into plain numbers.

import type { Registry } from 'prom-client';

type Labels = Record<string, string>;

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** The registry's view of a metric (prom-client calls get() at every scrape, reset() on resetMetrics). */
abstract class Series<Child> {
  readonly aggregator = 'sum';
  protected readonly children = new Map<string, { labels: Labels; child: Child }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  /** The child for these label values (in labelNames order), made once. */
  labels(...values: string[]): Child {
    const key = values.join('\u0000');
    let entry = this.children.get(key);
    if (!entry) {
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]));
      entry = { labels, child: this.create() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  protected abstract create(): Child;
  protected abstract values(labels: Labels, child: Child): MetricValue[];

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricValue[] }> {
    const values: MetricValue[] = [];
    for (const { labels, child } of this.children.values()) values.push(...this.values(labels, child));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** Zeroes every child (children stay bound: callers keep them). */
  reset(): void {
    for (const { child } of this.children.values()) this.zero(child);
  }

  protected abstract zero(child: Child): void;
}

export class CounterSeries extends Series<{ value: number; inc(): void }> {
  constructor(opts: { name: string; help: string; labelNames: readonly string[]; registry: Registry }) {
    super(opts.name, opts.help, 'counter', opts.labelNames, opts.registry);
  }

  protected create(): { value: number; inc(): void } {
    return {
      value: 0,
      inc() {
        this.value++;
      },
    };
  }

  protected values(labels: Labels, child: { value: number }): MetricValue[] {
    return [{ labels, value: child.value }];
  }

  protected zero(child: { value: number }): void {
    child.value = 0;
  }
}

interface Buckets {
  counts: Float64Array;
  sum: number;
  count: number;
  observe(v: number): void;
}

export class HistogramSeries extends Series<Buckets> {
  private readonly bounds: readonly number[];

  constructor(opts: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[]; registry: Registry }) {
    super(opts.name, opts.help, 'histogram', opts.labelNames, opts.registry);
    this.bounds = [...opts.buckets].sort((a, b) => a - b);
  }

  protected create(): Buckets {
    const bounds = this.bounds;
    return {
      counts: new Float64Array(bounds.length),
      sum: 0,
      count: 0,
      observe(v: number) {
        for (let i = 0; i < bounds.length; i++) {
          if (v <= bounds[i]) {
            this.counts[i]++;
            break;
          }
        }
        this.sum += v;
        this.count++;
      },
    };
  }

  protected zero(b: Buckets): void {
    b.counts.fill(0);
    b.sum = 0;
    b.count = 0;
  }

  protected values(labels: Labels, b: Buckets): MetricValue[] {
    const bucket = `${this.name}_bucket`;
    const out: MetricValue[] = [];
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += b.counts[i];
      out.push({ labels: { le, ...labels }, value: cumulative, metricName: bucket });
    });
    out.push({ labels: { le: '+Inf', ...labels }, value: b.count, metricName: bucket });
    out.push({ labels, value: b.sum, metricName: `${this.name}_sum` });
    out.push({ labels, value: b.count, metricName: `${this.name}_count` });
    return out;
  }
}
