// Watch benchmark: N WebSocket watchers on one prefix, puts at a fixed rate, event delivery latency,
// delivered events/s and server memory per watcher, through this gateway (in this process) and then
// the same scenario through etcd's own gateway (ws://<etcd>/v3/watch), printed side by side.
//
//   npm run bench:watch -- [--watchers 1000] [--rate 50] [--seconds 10] [--warmup 1] [--client-procs K]
//
// Processes: this one runs etcd (a child) and the gateway; the watchers live in K client processes and
// the puts come from one writer process (bench/watch-clients.ts), so the gateway's memory holds no
// client state and a busy gateway cannot delay the writer. Latency is put sent → event received, on the
// parent's clock (each child's offset is measured over IPC). The first --warmup seconds of puts are
// delivered but not measured: a fresh Node process runs its hot path cold (unoptimized) for a moment,
// and the measured figures are meant to be the steady state (--warmup 0 shows the cold start). Every
// wait is bounded in time.

import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { buildGateway, DEFAULT_STREAM_SETTINGS } from '../src/app';
import { EtcdClient } from '../src/etcd/client';
import { findEtcdBinary, startEtcd, type EtcdProcess } from '../src/etcd/process';
import { LatencyHistogram } from './histogram';
import type { ClientCommand, OpenedReply, ProgressReply, ResultReply, WrittenReply } from './watch-clients';
import { makeLog, positiveInt, procSample, runMain, sleep } from './setup';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const now = (): number => performance.timeOrigin + performance.now();
const log = makeLog('bench');

const { values: args } = parseArgs({
  options: {
    watchers: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    'client-procs': { type: 'string' },
  },
});
const WATCHERS = positiveInt('watchers', args.watchers, 1_000);
const RATE = positiveInt('rate', args.rate, 50);
const SECONDS = positiveInt('seconds', args.seconds, 10);
const WARMUP_SECONDS = args.warmup === '0' ? 0 : positiveInt('warmup', args.warmup, 1);
const CLIENT_PROCS = positiveInt('client-procs', args['client-procs'], Math.ceil(WATCHERS / 5_000));
const OPEN_TIMEOUT_MS = Math.max(30_000, WATCHERS * 10);
const DRAIN_TIMEOUT_MS = Math.min(300_000, Math.max(30_000, SECONDS * 6_000));
const OPEN_CONCURRENCY = 200;
// Generous cap on the whole run: two scenarios of open + writing + drain, plus starts and cleanups.
const OVERALL_TIMEOUT_MS = 2 * (OPEN_TIMEOUT_MS + (WARMUP_SECONDS + SECONDS) * 1_000 + DRAIN_TIMEOUT_MS + 60_000) + 60_000;

type Reply = OpenedReply | ProgressReply | ResultReply | WrittenReply | { type: 'clock'; id: number; now: number };
type Command = ClientCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

/** A bench/watch-clients.js child with request/answer over IPC. */
class Worker {
  readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve(r: Reply): void; reject(e: Error): void }>();
  private nextId = 1;
  readonly exited: Promise<void>;

  constructor() {
    this.child = fork(path.join(__dirname, 'watch-clients.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.resolve(m);
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        for (const p of this.pending.values()) p.reject(new Error(`client process exited (${signal ?? code})`));
        this.pending.clear();
        resolve();
      }),
    );
  }

  ask<T extends Reply>(cmd: Command, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`client process gave no answer to ${cmd.cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ ...cmd, id } as ClientCommand);
    });
  }

  /** Measures the child's clock against ours (best of several round trips) and tells it the offset. */
  async syncClock(): Promise<void> {
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < 20; i++) {
      const t0 = now();
      const r = await this.ask<{ type: 'clock'; id: number; now: number }>({ cmd: 'clock' }, 5_000);
      const t1 = now();
      if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: r.now - (t0 + t1) / 2 };
    }
    this.child.send({ cmd: 'offset', offsetMs: best.offset } satisfies ClientCommand);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.send({ cmd: 'close' } satisfies ClientCommand);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

interface Memory {
  nodeRss: number;
  nodeHeap: number;
  etcdRss: number;
  etcdHeap: number;
}

interface ScenarioResult {
  name: string;
  opened: number;
  openFailed: number;
  openErrors: string[];
  openMs: number;
  puts: WrittenReply;
  /** Measured puts found in etcd afterwards: a put that timed out may still have been applied. */
  committed: number;
  expected: number;
  delivered: number;
  minPerWatcher: number;
  disorder: number;
  errors: number;
  closes: Record<string, number>;
  eventsPerSec: number;
  hist: LatencyHistogram;
  before: Memory;
  after: Memory;
}

async function metric(etcd: EtcdProcess, name: string): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`etcd /metrics has no ${name}`);
  return Number(m[1]);
}

async function measure(etcd: EtcdProcess): Promise<Memory> {
  gc();
  gc();
  const mem = process.memoryUsage();
  const etcdRss = etcd.pid === undefined ? NaN : (await procSample(etcd.pid)).rssBytes;
  // A heap profile with gc=1 makes Go collect first, so the heap figure holds live objects only.
  await (await fetch(`${etcd.clientUrl}/debug/pprof/heap?gc=1`, { signal: AbortSignal.timeout(10_000) })).arrayBuffer();
  const etcdHeap = await metric(etcd, 'go_memstats_heap_alloc_bytes');
  return { nodeRss: mem.rss, nodeHeap: mem.heapUsed, etcdRss, etcdHeap };
}

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond().catch(() => false)) return;
    await sleep(200);
  }
  log(`warning: gave up waiting for ${what} after ${timeoutMs} ms`);
}

/** How many keys etcd holds under `prefix` (undefined when etcd does not answer in time). */
async function countKeys(client: EtcdClient, prefix: string): Promise<number | undefined> {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  try {
    const r = await client.unary<{ count?: string | number }>('KV', 'Range', { key: Buffer.from(prefix), range_end: end, count_only: true }, { idempotent: true });
    return Number(r.count ?? 0);
  } catch {
    return undefined;
  }
}

async function runScenario(
  name: string,
  url: string,
  prefix: string,
  etcd: EtcdProcess,
  client: EtcdClient,
  idle: () => Promise<boolean>,
): Promise<ScenarioResult> {
  const watchersBefore = await metric(etcd, 'etcd_debugging_mvcc_watcher_total');
  const before = await measure(etcd);
  const clients = Array.from({ length: CLIENT_PROCS }, () => new Worker());
  const writer = new Worker();
  try {
    await Promise.all([...clients, writer].map((w) => w.syncClock()));
    log(`${name}: opening ${WATCHERS} watchers on ${url} (${CLIENT_PROCS} client process(es))`);
    const shares = clients.map((_, i) => Math.floor(WATCHERS / CLIENT_PROCS) + (i < WATCHERS % CLIENT_PROCS ? 1 : 0));
    const opened = await Promise.all(
      clients.map((c, i) =>
        c.ask<OpenedReply>(
          { cmd: 'open', url, count: shares[i], prefix, concurrency: OPEN_CONCURRENCY, timeoutMs: OPEN_TIMEOUT_MS },
          OPEN_TIMEOUT_MS + 10_000,
        ),
      ),
    );
    const ok = opened.reduce((a, o) => a + o.ok, 0);
    const openMs = Math.max(...opened.map((o) => o.ms));
    log(`${name}: ${ok} open in ${(openMs / 1000).toFixed(1)} s${ok < WATCHERS ? `; failures: ${opened.flatMap((o) => o.errors).join('; ')}` : ''}`);
    await sleep(1_000);
    const after = await measure(etcd);

    log(`${name}: writing ${RATE} puts/s for ${WARMUP_SECONDS} s (warm-up) + ${SECONDS} s`);
    const puts = await writer.ask<WrittenReply>(
      { cmd: 'write', endpoint: etcd.clientUrl, prefix, rate: RATE, seconds: SECONDS, warmup: RATE * WARMUP_SECONDS },
      (WARMUP_SECONDS + SECONDS) * 1_000 + 30_000,
    );
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;
    let committed = puts.ok;
    let expected = ok * committed;
    let delivered = 0;
    while (Date.now() < deadline) {
      committed = (await countKeys(client, `${prefix}m/`)) ?? committed;
      expected = ok * committed;
      const progress = await Promise.all(clients.map((c) => c.ask<ProgressReply>({ cmd: 'progress' }, 30_000)));
      delivered = progress.reduce((a, p) => a + p.events, 0);
      if (delivered >= expected) break;
      await sleep(250);
    }
    if (delivered < expected) log(`${name}: ${expected - delivered} events still missing after a ${DRAIN_TIMEOUT_MS / 1000} s drain`);
    const results = await Promise.all(clients.map((c) => c.ask<ResultReply>({ cmd: 'result' }, 30_000)));
    const hist = new LatencyHistogram();
    const closes: Record<string, number> = {};
    for (const r of results) {
      hist.merge(r.hist);
      for (const [code, n] of Object.entries(r.closes)) closes[code] = (closes[code] ?? 0) + n;
    }
    const lastRecv = Math.max(...results.map((r) => r.lastRecv));
    const total = results.reduce((a, r) => a + r.events, 0);
    return {
      name,
      opened: ok,
      openFailed: WATCHERS - ok,
      openErrors: opened.flatMap((o) => o.errors),
      openMs,
      puts,
      committed,
      expected,
      delivered: total,
      minPerWatcher: Math.min(...results.map((r) => r.minPerWatcher)),
      disorder: results.reduce((a, r) => a + r.disorder, 0),
      errors: results.reduce((a, r) => a + r.errors, 0),
      closes,
      eventsPerSec: lastRecv > puts.firstSend ? total / ((lastRecv - puts.firstSend) / 1000) : 0,
      hist,
      before,
      after,
    };
  } finally {
    log(`${name}: closing watchers`);
    await Promise.all([...clients, writer].map((w) => w.close()));
    await waitUntil(
      `${name}: etcd watchers back to ${watchersBefore}`,
      async () => (await metric(etcd, 'etcd_debugging_mvcc_watcher_total')) <= watchersBefore && (await idle()),
      30_000,
    );
  }
}

const kib = (bytes: number, n: number): string => (n > 0 && Number.isFinite(bytes) ? `${(bytes / n / 1024).toFixed(1)} KiB` : 'n/a');
const ms = (v: number): string => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ms` : 'n/a');
const int = (v: number): string => Math.round(v).toLocaleString('en-US');

function table(results: [ScenarioResult, ScenarioResult], etcdVersion: string): string {
  const [ours, theirs] = results;
  const closes = (r: ScenarioResult): string =>
    Object.keys(r.closes).length ? Object.entries(r.closes).map(([c, n]) => `${n}× ${c}`).join(', ') : '0';
  const rows: Array<[string, string, string]> = [
    ['watchers open', `${ours.opened}/${WATCHERS}`, `${theirs.opened}/${WATCHERS}`],
    ['time to open them', `${(ours.openMs / 1000).toFixed(2)} s`, `${(theirs.openMs / 1000).toFixed(2)} s`],
    [
      'puts acked / failed / in etcd',
      `${ours.puts.ok} / ${ours.puts.failed} / ${ours.committed}`,
      `${theirs.puts.ok} / ${theirs.puts.failed} / ${theirs.committed}`,
    ],
    ['writer max lag behind schedule', ms(ours.puts.maxLagMs), ms(theirs.puts.maxLagMs)],
    ['events expected', int(ours.expected), int(theirs.expected)],
    ['events delivered', int(ours.delivered), int(theirs.delivered)],
    ['fewest events on one watcher', int(ours.minPerWatcher), int(theirs.minPerWatcher)],
    ['events out of order', int(ours.disorder), int(theirs.disorder)],
    ['error answers / server closes', `${ours.errors} / ${closes(ours)}`, `${theirs.errors} / ${closes(theirs)}`],
    ['delivered events/s', int(ours.eventsPerSec), int(theirs.eventsPerSec)],
    ['latency p50', ms(ours.hist.percentile(0.5)), ms(theirs.hist.percentile(0.5))],
    ['latency p99', ms(ours.hist.percentile(0.99)), ms(theirs.hist.percentile(0.99))],
    ['latency max', ms(ours.hist.maxMs), ms(theirs.hist.maxMs)],
    [
      'gateway RSS / watcher',
      kib(ours.after.nodeRss - ours.before.nodeRss, ours.opened),
      `${kib(theirs.after.etcdRss - theirs.before.etcdRss, theirs.opened)} (a)`,
    ],
    [
      'gateway heap / watcher',
      `${kib(ours.after.nodeHeap - ours.before.nodeHeap, ours.opened)} (V8)`,
      `${kib(theirs.after.etcdHeap - theirs.before.etcdHeap, theirs.opened)} (Go) (a)`,
    ],
    ['etcd server RSS / watcher', kib(ours.after.etcdRss - ours.before.etcdRss, ours.opened), '(a)'],
    [
      'all server RSS / watcher',
      kib(ours.after.nodeRss - ours.before.nodeRss + ours.after.etcdRss - ours.before.etcdRss, ours.opened),
      kib(theirs.after.etcdRss - theirs.before.etcdRss, theirs.opened),
    ],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max('this gateway'.length, ...rows.map((r) => r[1].length));
  const cpus = os.cpus();
  const lines = [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM; node ${process.version}, etcd ${etcdVersion}`,
    `scenario: ${WATCHERS} WebSocket watchers on one prefix, ${RATE} puts/s for ${SECONDS} s after ${WARMUP_SECONDS} s of unmeasured warm-up puts,`,
    `          watchers in ${CLIENT_PROCS} client process(es), puts from 1 writer process (gRPC straight to etcd)`,
    '',
    `${''.padEnd(w0)}  ${'this gateway'.padEnd(w1)}  etcd gateway`,
    ...rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`),
    '',
    'latency: put sent → event received by the client (both on one clock), through etcd commit and the gateway.',
    '(a) etcd serves its gateway from its own process: its row is the whole etcd process (gateway + watchers).',
    `memory: delta after opening the watchers (after GC: V8 by gc(), Go by pprof ?gc=1), divided by the watchers open.`,
  ];
  if (ours.hist.negative + theirs.hist.negative > 0) lines.push(`note: ${ours.hist.negative + theirs.hist.negative} latencies below zero (clock offset error)`);
  for (const r of results) if (r.openErrors.length) lines.push(`${r.name} open failures: ${r.openErrors.join('; ')}`);
  return lines.join('\n');
}

/** The same watchers as Server-Sent Events (GET /v1/watch/) beside the WebSocket figures. */
function sseTable(ws: ScenarioResult, sse: ScenarioResult): string {
  const rows: Array<[string, string, string]> = [
    ['watchers open', `${ws.opened}/${WATCHERS}`, `${sse.opened}/${WATCHERS}`],
    ['events delivered / expected', `${int(ws.delivered)} / ${int(ws.expected)}`, `${int(sse.delivered)} / ${int(sse.expected)}`],
    ['events out of order', int(ws.disorder), int(sse.disorder)],
    ['latency p50', ms(ws.hist.percentile(0.5)), ms(sse.hist.percentile(0.5))],
    ['latency p99', ms(ws.hist.percentile(0.99)), ms(sse.hist.percentile(0.99))],
    ['latency max', ms(ws.hist.maxMs), ms(sse.hist.maxMs)],
    ['gateway RSS / watcher', kib(ws.after.nodeRss - ws.before.nodeRss, ws.opened), kib(sse.after.nodeRss - sse.before.nodeRss, sse.opened)],
    ['gateway heap / watcher', kib(ws.after.nodeHeap - ws.before.nodeHeap, ws.opened), kib(sse.after.nodeHeap - sse.before.nodeHeap, sse.opened)],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max('WebSocket /v3/watch'.length, ...rows.map((r) => r[1].length));
  return [
    '',
    `this gateway, ${WATCHERS} watchers on one prefix: WebSocket (above) and Server-Sent Events (GET /v1/watch/)`,
    `${''.padEnd(w0)}  ${'WebSocket /v3/watch'.padEnd(w1)}  SSE /v1/watch`,
    ...rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`),
  ].join('\n');
}

async function main(): Promise<void> {
  const bin = findEtcdBinary();
  if (!bin) throw new Error('no etcd binary: set ETCD_BIN or put etcd on PATH');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-bench-'));
  let etcd: EtcdProcess | undefined;
  let client: EtcdClient | undefined;
  let server: http.Server | undefined;
  let gateway: ReturnType<typeof buildGateway> | undefined;
  const overall = setTimeout(() => {
    log(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s; stopping`);
    etcd?.kill('SIGKILL');
    process.exit(2);
  }, OVERALL_TIMEOUT_MS);
  overall.unref();
  try {
    log(`starting etcd (${bin})`);
    etcd = await startEtcd({ bin, dataDir, extraArgs: ['--enable-pprof'] });
    const version = ((await (await fetch(`${etcd.clientUrl}/version`)).json()) as { etcdserver: string }).etcdserver;
    client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 5_000 });
    const gw = buildGateway({
      etcd: client,
      maxBodyBytes: 2 * 1024 * 1024,
      streams: { ...DEFAULT_STREAM_SETTINGS, maxWatchConnections: WATCHERS + 1_000 },
    });
    gateway = gw;
    server = http.createServer(gw.handler);
    gw.attach(server);
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;

    const ours = await runScenario('this gateway', `ws://127.0.0.1:${port}/v3/watch`, 'bench/gw/', etcd, client, async () => {
      const s = gw.hub.stats();
      return s.connections === 0 && s.watches === 0;
    });
    const theirs = await runScenario('etcd gateway', `ws://127.0.0.1:${etcd.clientPort}/v3/watch`, 'bench/etcd/', etcd, client, async () => true);
    process.stdout.write(`${table([ours, theirs], version)}\n`);
    const sse = await runScenario('this gateway, SSE', `http://127.0.0.1:${port}/v1/watch/bench/sse/?prefix`, 'bench/sse/', etcd, client, async () => {
      const s = gw.hub.stats();
      return s.connections === 0 && s.watches === 0;
    });
    process.stdout.write(`${sseTable(ours, sse)}\n`);
  } finally {
    gateway?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    client?.close();
    await etcd?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    clearTimeout(overall);
  }
}

runMain('bench', main);
