// Prometheus metrics (prom-client), on a registry of the gateway's own so that several gateways built in
// one process (tests) do not share counters. Route labels are operation IDs, never raw paths, so a
// client probing random paths cannot grow the label space.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { CounterSeries, HistogramSeries } from './series';
import type { WatchHub } from '../watch/hub';
import type { KeepAliveHub } from '../keepalive';

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();
  // The per-request series count outside prom-client's children (src/core/observability/series.ts).
  readonly httpRequests = new CounterSeries({
    name: 'gateway_http_requests_total',
    help: 'HTTP requests answered, by operation, method and status',
    labelNames: ['route', 'method', 'status'],
    registry: this.registry,
  });
  readonly httpDuration = new HistogramSeries({
    name: 'gateway_http_request_duration_seconds',
    help: 'Time from request to the end of the answer (for streams: to the end of the stream), by operation',
    labelNames: ['route'],
    buckets: DURATION_BUCKETS,
    registry: this.registry,
  });
  readonly etcdDuration = new HistogramSeries({
    name: 'gateway_etcd_request_duration_seconds',
    help: 'Time of unary calls to etcd, by service, method and gRPC code',
    labelNames: ['service', 'method', 'code'],
    buckets: DURATION_BUCKETS,
    registry: this.registry,
  });
  readonly etcdErrors = new CounterSeries({
    name: 'gateway_etcd_errors_total',
    help: 'Unary calls to etcd that failed, by service, method and gRPC code',
    labelNames: ['service', 'method', 'code'],
    registry: this.registry,
  });
  readonly openConnections = new Gauge({
    name: 'gateway_open_connections',
    help: 'Open TCP connections to the gateway',
    registers: [this.registry],
  });
  readonly webSockets = new Gauge({
    name: 'gateway_websocket_connections',
    help: 'Open WebSocket connections',
    registers: [this.registry],
  });

  /** Set in a cluster worker: the metrics of every worker, gathered by the primary process. */
  aggregate?: () => Promise<string>;

  /** The Prometheus text of this gateway (of all its workers when there are several). */
  text(): Promise<string> {
    return this.aggregate ? this.aggregate() : this.registry.metrics();
  }

  /** Children by route/method/status, found with one string key. */
  private readonly requestChildren = new Map<string, { count: { inc(): void }; duration: { observe(v: number): void } }>();

  /** One HTTP request answered (or given up by its client: status 499). */
  request(route: string, method: string, status: number, seconds: number): void {
    const key = `${route} ${method} ${status}`;
    let child = this.requestChildren.get(key);
    if (!child) {
      child = { count: this.httpRequests.labels(route, method, String(status)), duration: this.httpDuration.labels(route) };
      // Methods are whatever clients send: keep the cache (not the counters) bounded.
      if (this.requestChildren.size < 10_000) this.requestChildren.set(key, child);
    }
    child.count.inc();
    child.duration.observe(seconds);
  }

  /** Labelled children by service/method/code, for the same reason. */
  private readonly etcdChildren = new Map<string, { duration: { observe(v: number): void }; errors?: { inc(): void } }>();

  /** One unary call to etcd finished (code 0) or failed (its gRPC code). */
  etcdCall(service: string, method: string, code: number, seconds: number): void {
    const key = `${service} ${method} ${code}`;
    let child = this.etcdChildren.get(key);
    if (!child) {
      const labels = [service, method, String(code)] as const;
      child = { duration: this.etcdDuration.labels(...labels), errors: code !== 0 ? this.etcdErrors.labels(...labels) : undefined };
      // Services and methods are the gateway's own, codes are gRPC's 17: bounded, but kept so anyway.
      if (this.etcdChildren.size < 10_000) this.etcdChildren.set(key, child);
    }
    child.duration.observe(seconds);
    child.errors?.inc();
  }

  constructor(streams: { hub: WatchHub; keepalive: KeepAliveHub }) {
    collectDefaultMetrics({ register: this.registry });
    const { hub, keepalive } = streams;
    // Values the hubs keep themselves, read at scrape time.
    const read: Array<[name: string, help: string, kind: 'gauge' | 'counter', value: () => number]> = [
      ['gateway_watch_connections', 'Open watch connections (HTTP streams and WebSockets)', 'gauge', () => hub.stats().connections],
      ['gateway_watches', 'Active watches', 'gauge', () => hub.stats().watches],
      ['gateway_watch_etcd_watches', 'Watches inside etcd carrying the client watches (identical ones share one)', 'gauge', () => hub.stats().etcdWatches],
      ['gateway_watch_etcd_streams', 'etcd Watch streams carrying the watches', 'gauge', () => hub.stats().etcdStreams],
      ['gateway_watch_events_delivered_total', 'Watch events sent to clients', 'counter', () => hub.stats().eventsDelivered],
      ['gateway_watch_resumes_total', 'Watches re-created on a new etcd stream after one broke', 'counter', () => hub.stats().resumes],
      ['gateway_lease_keepalives_total', 'Lease renewals sent to etcd', 'counter', () => keepalive.renewals],
    ];
    for (const [name, help, kind, value] of read) {
      if (kind === 'gauge') {
        new Gauge({ name, help, registers: [this.registry], collect() { this.set(value()); } });
      } else {
        new Counter({ name, help, registers: [this.registry], collect() { this.reset(); this.inc(value()); } });
      }
    }
  }
}
