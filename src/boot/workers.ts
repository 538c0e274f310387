// WORKERS > 1: a primary process (which owns the embedded etcd, when there is one) forks that many
// gateway workers with node's cluster module. They share the listening socket (the primary hands out
// connections round-robin), so HTTP requests, HTTP streams and WebSockets of one connection stay on one
// worker. Each worker has its own etcd connections, watch hub and keepalive streams.
//
// The primary forwards SIGTERM/SIGINT (graceful stop) and SIGHUP (access file reload), replaces a worker
// that dies unexpectedly (at most MAX_RESTARTS_PER_MINUTE), and answers /metrics for the whole gateway:
// a worker asks it, and it gathers every worker's registry with prom-client's AggregatorRegistry.

import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

const METRICS_REQUEST = 'gateway:metrics';
const MAX_RESTARTS_PER_MINUTE = 10;

interface MetricsMessage {
  type: typeof METRICS_REQUEST;
  id: number;
  text?: string;
  error?: string;
}

const isMetricsMessage = (m: unknown): m is MetricsMessage =>
  typeof m === 'object' && m !== null && (m as { type?: unknown }).type === METRICS_REQUEST;

export interface PrimaryOptions {
  workers: number;
  /** Environment added to every worker's (the etcd endpoints, when the primary runs the embedded etcd). */
  env: Record<string, string>;
  shutdownGraceMs: number;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  /** Once every worker listens, with the port they share. */
  onListening(port: number): void;
  /** After every worker has stopped (signal) or when workers keep dying; `code` is the exit code. */
  onStopped(code: number): Promise<void> | void;
}

export function runPrimary(opts: PrimaryOptions): void {
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  let announced = false;
  const listening = new Set<number>();
  const restarts: number[] = [];

  const fork = (): Worker => {
    const worker = cluster.fork(opts.env);
    worker.on('message', (m: unknown) => {
      if (!isMetricsMessage(m)) return;
      aggregator.clusterMetrics().then(
        (text) => worker.send({ type: METRICS_REQUEST, id: m.id, text }),
        (err: Error) => worker.send({ type: METRICS_REQUEST, id: m.id, error: err.message }),
      );
    });
    return worker;
  };

  cluster.on('listening', (worker, address) => {
    listening.add(worker.id);
    if (!announced && listening.size >= opts.workers) {
      announced = true;
      opts.onListening(address.port);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) finished();
      return;
    }
    const now = Date.now();
    restarts.push(now);
    while (restarts.length && now - restarts[0] > 60_000) restarts.shift();
    if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
      opts.log.error({ restarts: restarts.length }, 'workers keep dying: stopping the gateway');
      stop('worker failures', 1);
      return;
    }
    opts.log.warn({ worker: worker.process.pid, code, signal }, 'worker died: starting another');
    fork();
  });

  let exitCode = 0;
  let done = false;
  const finished = (): void => {
    if (done) return;
    done = true;
    void opts.onStopped(exitCode);
  };
  const stop = (why: string, code = 0): void => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    opts.log.info({ why }, 'stopping the workers');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => Boolean(w));
    if (workers.length === 0) finished();
    for (const w of workers) w.process.kill('SIGTERM');
    // Workers finish their requests within the grace period; past it (and a margin) they are killed.
    setTimeout(() => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    }, opts.shutdownGraceMs + 5_000).unref();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
  for (let i = 0; i < opts.workers; i++) fork();
}

/** In a worker: the registry the primary gathers, and a function that asks the primary for the
 *  metrics of every worker (in Prometheus text format). */
export function workerMetrics(registry: Registry): () => Promise<string> {
  AggregatorRegistry.setRegistries([registry]);
  // prom-client installs a worker's answering listener when an AggregatorRegistry is constructed.
  new AggregatorRegistry();
  let next = 0;
  const waiting = new Map<number, { resolve(text: string): void; reject(e: Error): void }>();
  process.on('message', (m: unknown) => {
    if (!isMetricsMessage(m)) return;
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.text !== undefined) w.resolve(m.text);
    else w.reject(new Error(m.error ?? 'no metrics'));
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error('the primary process did not answer with the metrics within 5 s'));
      }, 5_000);
      waiting.set(id, {
        resolve: (t) => (clearTimeout(timer), resolve(t)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      process.send?.({ type: METRICS_REQUEST, id });
    });
}

export const isWorker = (): boolean => cluster.isWorker;
