// Watch benchmark: N WebSocket watchers on one prefix (or each on a key of its own), puts at a fixed
// rate, event delivery latency, delivered events/s, etcd CPU per put and server memory per watcher,
// through this gateway (in this process) and then the same scenario through etcd's own gateway
// (ws://<etcd>/v3/watch), printed side by side with the ratio.
//
//   npm run bench:watch                      the issue's four cells, one after the other
//   npm run bench:watch -- --cell 2          one of them (1: 1,000 watchers, one prefix, 50 puts/s;
//                                            2: 10,000, one prefix, 10 puts/s; 3: 10,000, one prefix,
//                                            rising rates until p99 > 1 s; 4: 10,000 on 10,000 keys, 50/s)
//   npm run bench:watch -- [--watchers 1000] [--rates 50[,100,...]] [--keys shared|distinct]
//                          [--max-p99-ms M] [--target both|gateway|etcd|floor|all|<list>] [--seconds 10]
//                          [--warmup 1] [--client-procs K] [--client lean|ws] [--cpu-profile DIR]
//
// --cpu-profile DIR writes a V8 CPU profile of this process (the gateway or the floor) for each measured
// phase (warm-up included), as <DIR>/<target>-<rate>.cpuprofile (Chrome DevTools opens it).
//
// Targets: `gateway` (this one), `etcd` (etcd's gateway), `floor` (bench/watch-floor.ts: the least any
// WebSocket watch gateway in Node must do, on this machine, with these clients); `both` is gateway,etcd
// (the default), `all` is all three, or a comma list.
//
// Several rates are phases on the same open watchers; with --max-p99-ms the phases stop after the first
// whose p99 is above it, and the highest rate within it is reported.
// Processes: this one runs etcd (a child) and the gateway; the watchers live in K client processes and
// the puts come from one writer process (bench/watch-clients.ts), so the gateway's memory holds no
// client state and a busy gateway cannot delay the writer. Latency is put sent → event received, on the
// parent's clock (each child's offset is measured over IPC). The first --warmup seconds of puts are
// delivered but not measured: a fresh Node process runs its hot path cold (unoptimized) for a moment,
// and the measured figures are meant to be the steady state (--warmup 0 shows the cold start). Every
// wait is bounded in time.

import '../src/boot/v8-tuning';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { buildGateway, DEFAULT_STREAM_SETTINGS } from '../src/boot/gateway';
import { EtcdClient } from '../src/etcd/client';
import { findEtcdBinary, startEtcd, type EtcdProcess } from '../src/embedded-etcd/process';
import { LatencyHistogram } from './histogram';
import { startFloorServer, type FloorServer } from './watch-floor';
import type { ClientCommand, ClientKind, Keys, OpenedReply, ProgressReply, ResultReply, WrittenReply } from './watch-clients';
import { makeLog, positiveInt, procSample, runMain, sleep } from './setup';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const now = (): number => performance.timeOrigin + performance.now();
const log = makeLog('bench');

const { values: args } = parseArgs({
  options: {
    cell: { type: 'string' },
    watchers: { type: 'string' },
    rate: { type: 'string' },
    rates: { type: 'string' },
    keys: { type: 'string' },
    'max-p99-ms': { type: 'string' },
    target: { type: 'string' },
    sse: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    'client-procs': { type: 'string' },
    client: { type: 'string' },
    'cpu-profile': { type: 'string' },
  },
});
interface Cell {
  watchers: number;
  rates: number[];
  keys: Keys;
  maxP99Ms?: number;
}

const CELLS: Record<string, Cell> = {
  '1': { watchers: 1_000, rates: [50], keys: 'shared' },
  '2': { watchers: 10_000, rates: [10], keys: 'shared' },
  '3': { watchers: 10_000, rates: [10, 20, 50, 100, 200, 500, 1_000], keys: 'shared', maxP99Ms: 1_000 },
  '4': { watchers: 10_000, rates: [50], keys: 'distinct' },
};

function cellsFromArgs(): Cell[] {
  const custom = args.watchers !== undefined || args.rate !== undefined || args.rates !== undefined || args.keys !== undefined;
  if (args.cell !== undefined) {
    const cell = CELLS[args.cell];
    if (!cell) throw new Error(`--cell: one of ${Object.keys(CELLS).join(', ')}`);
    return [cell];
  }
  if (!custom) return Object.values(CELLS);
  const rates = (args.rates ?? args.rate ?? '50').split(',').map((r) => positiveInt('rates', r));
  if (args.keys !== undefined && args.keys !== 'shared' && args.keys !== 'distinct') throw new Error('--keys: shared or distinct');
  return [
    {
      watchers: positiveInt('watchers', args.watchers, 1_000),
      rates,
      keys: (args.keys ?? 'shared') as Keys,
      maxP99Ms: args['max-p99-ms'] === undefined ? undefined : positiveInt('max-p99-ms', args['max-p99-ms']),
    },
  ];
}

const CLIENT = (args.client ?? 'lean') as ClientKind;
if (CLIENT !== 'lean' && CLIENT !== 'ws') throw new Error('--client: lean (the default) or ws');
const TARGET_NAMES: Record<string, string[]> = { both: ['gateway', 'etcd'], all: ['gateway', 'floor', 'etcd'] };
const TARGETS = new Set(TARGET_NAMES[args.target ?? 'both'] ?? (args.target ?? '').split(','));
for (const t of TARGETS) if (!['gateway', 'etcd', 'floor'].includes(t)) throw new Error('--target: both, all, or a comma list of gateway, floor, etcd');
const SSE_MODE = args.sse ?? 'auto';
if (!['auto', 'on', 'off'].includes(SSE_MODE)) throw new Error('--sse: auto (cells of at most 1,000 watchers), on or off');
/** Whether a cell also runs as Server-Sent Events watchers (GET /v1/watch/). */
const withSse = (cell: Cell): boolean => SSE_MODE === 'on' || (SSE_MODE === 'auto' && cell.watchers <= 1_000);
const SECONDS = positiveInt('seconds', args.seconds, 10);
const WARMUP_SECONDS = args.warmup === '0' ? 0 : positiveInt('warmup', args.warmup, 1);
const CELLS_TO_RUN = cellsFromArgs();
const clientProcs = (watchers: number): number => positiveInt('client-procs', args['client-procs'], Math.ceil(watchers / 5_000));
const openTimeoutMs = (watchers: number): number => Math.max(30_000, watchers * 10);
const DRAIN_TIMEOUT_MS = Math.min(300_000, Math.max(30_000, SECONDS * 6_000));
const OPEN_CONCURRENCY = 200;
// Generous cap on the whole run: per cell and target, open + each phase's writing and drain, plus
// starts and cleanups.
const OVERALL_TIMEOUT_MS =
  CELLS_TO_RUN.reduce(
    (t, c) => t + (withSse(c) ? 3 : 2) * (openTimeoutMs(c.watchers) + c.rates.length * ((WARMUP_SECONDS + SECONDS) * 1_000 + DRAIN_TIMEOUT_MS) + 60_000),
    0,
  ) + 60_000;

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
      const r = await this.ask<{ type: 'clock'; id: number; now: number }>({ cmd: 'clock' }, 30_000);
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

interface Phase {
  rate: number;
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
  /** etcd's CPU time (user + system) over the phase, per committed put. */
  etcdCpuPerPutMs: number;
  /** The serving process's CPU time over the phase per delivered event: this process for this gateway
   *  (the bench's own share in it is small), etcd's for etcd's gateway. */
  cpuPerEventUs: number;
}

interface ScenarioResult {
  name: string;
  /** Served from this process (this gateway, the floor): its CPU and memory are this process's. */
  inProcess: boolean;
  opened: number;
  openErrors: string[];
  openMs: number;
  phases: Phase[];
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

/** A CPU profile of this process from now until `stop`. */
async function startProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, JSON.stringify(profile));
      log(`CPU profile: ${file}`);
    },
  };
}

async function runScenario(
  name: string,
  inProcess: boolean,
  url: string,
  prefix: string,
  cell: Cell,
  etcd: EtcdProcess,
  client: EtcdClient,
  idle: () => Promise<boolean>,
): Promise<ScenarioResult> {
  const watchersBefore = await metric(etcd, 'etcd_debugging_mvcc_watcher_total');
  const before = await measure(etcd);
  const procs = clientProcs(cell.watchers);
  const openTimeout = openTimeoutMs(cell.watchers);
  const clients = Array.from({ length: procs }, () => new Worker());
  const writer = new Worker();
  try {
    await Promise.all([...clients, writer].map((w) => w.syncClock()));
    log(`${name}: opening ${cell.watchers} watchers (${cell.keys} keys) on ${url} (${procs} client process(es))`);
    const shares = clients.map((_, i) => Math.floor(cell.watchers / procs) + (i < cell.watchers % procs ? 1 : 0));
    const firsts = shares.map((_, i) => shares.slice(0, i).reduce((a, b) => a + b, 0));
    const opened = await Promise.all(
      clients.map((c, i) =>
        c.ask<OpenedReply>(
          { cmd: 'open', url, count: shares[i], prefix, concurrency: OPEN_CONCURRENCY, timeoutMs: openTimeout, keys: cell.keys, first: firsts[i], client: CLIENT },
          openTimeout + 10_000,
        ),
      ),
    );
    const ok = opened.reduce((a, o) => a + o.ok, 0);
    const openMs = Math.max(...opened.map((o) => o.ms));
    log(`${name}: ${ok} open in ${(openMs / 1000).toFixed(1)} s${ok < cell.watchers ? `; failures: ${opened.flatMap((o) => o.errors).join('; ')}` : ''}`);
    await sleep(1_000);
    const after = await measure(etcd);
    const phases: Phase[] = [];
    for (const [n, rate] of cell.rates.entries()) {
      await Promise.all(clients.map((c) => c.ask<ProgressReply>({ cmd: 'reset' }, 30_000)));
      const keysBefore = cell.keys === 'shared' ? ((await countKeys(client, `${prefix}m/`)) ?? 0) : 0;
      const etcdCpu = async (): Promise<number> => (etcd.pid === undefined ? NaN : (await procSample(etcd.pid)).cpuMs);
      // etcd's CPU when idle (raft ticks, the watchers' housekeeping) is measured first and taken out,
      // so that a put's share is not inflated at low rates.
      const idleFrom = await etcdCpu();
      const idleStart = Date.now();
      await sleep(2_000);
      const cpuBefore = await etcdCpu();
      const idlePerMs = (cpuBefore - idleFrom) / (Date.now() - idleStart);
      const profile = inProcess && args['cpu-profile'] !== undefined ? await startProfile() : undefined;
      const phaseStart = Date.now();
      const ownBefore = process.cpuUsage();
      log(`${name}: phase ${n + 1}/${cell.rates.length}: ${rate} puts/s for ${WARMUP_SECONDS} s (warm-up) + ${SECONDS} s`);
      const puts = await writer.ask<WrittenReply>(
        { cmd: 'write', endpoint: etcd.clientUrl, prefix: prefix, rate, seconds: SECONDS, warmup: rate * WARMUP_SECONDS, keys: cell.keys, watchers: cell.watchers, from: keysBefore },
        // The answer waits its turn behind the events this process is still fanning out.
        (WARMUP_SECONDS + SECONDS) * 1_000 + DRAIN_TIMEOUT_MS,
      );
      const deadline = Date.now() + DRAIN_TIMEOUT_MS;
      let committed = puts.ok;
      // Shared: every watcher gets every put; distinct keys: each put reaches the one watcher of its key.
      const expectedOf = (c: number): number => (cell.keys === 'shared' ? ok * c : c);
      let expected = expectedOf(committed);
      let delivered = 0;
      while (Date.now() < deadline) {
        if (cell.keys === 'shared') committed = ((await countKeys(client, `${prefix}m/`)) ?? keysBefore + committed) - keysBefore;
        expected = expectedOf(committed);
        const progress = await Promise.all(clients.map((c) => c.ask<ProgressReply>({ cmd: 'progress' }, 30_000)));
        delivered = progress.reduce((a, p) => a + p.events, 0);
        if (delivered >= expected) break;
        await sleep(250);
      }
      const cpuAfter = (await etcdCpu()) - idlePerMs * (Date.now() - phaseStart);
      const own = process.cpuUsage(ownBefore);
      if (profile) await profile.stop(path.join(args['cpu-profile']!, `${name.replace(/\W+/g, '-')}-${rate}.cpuprofile`));
      if (delivered < expected) log(`${name}: ${expected - delivered} events still missing after a ${DRAIN_TIMEOUT_MS / 1000} s drain`);
      const results = await Promise.all(clients.map((c) => c.ask<ResultReply>({ cmd: 'result' }, 30_000)));
      const hist = new LatencyHistogram();
      const closes: Record<string, number> = {};
      for (const r of results) {
        hist.merge(r.hist);
        for (const [code, k] of Object.entries(r.closes)) closes[code] = (closes[code] ?? 0) + k;
      }
      const lastRecv = Math.max(...results.map((r) => r.lastRecv));
      const total = results.reduce((a, r) => a + r.events, 0);
      const phase: Phase = {
        rate,
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
        etcdCpuPerPutMs: (cpuAfter - cpuBefore) / Math.max(1, puts.ok + rate * WARMUP_SECONDS),
        cpuPerEventUs: (inProcess ? (own.user + own.system) / 1000 : cpuAfter - cpuBefore) * 1000 / Math.max(1, total),
      };
      phases.push(phase);
      log(`${name}: ${rate} puts/s: p50 ${ms(hist.percentile(0.5))}, p99 ${ms(hist.percentile(0.99))}, ${int(total)}/${int(expected)} events`);
      if (cell.maxP99Ms !== undefined && !(hist.percentile(0.99) <= cell.maxP99Ms)) break;
    }
    return { name, inProcess, opened: ok, openErrors: opened.flatMap((o) => o.errors), openMs, phases, before, after };
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

function table(results: ScenarioResult[], cell: Cell, etcdVersion: string): string {
  const closes = (p: Phase): string => (Object.keys(p.closes).length ? Object.entries(p.closes).map(([c, n]) => `${n}× ${c}`).join(', ') : '0');
  // The ratio is this gateway's figure over etcd's gateway's, when the run has both.
  const gw = results.findIndex((r) => r.name === 'this gateway');
  const etcdGw = results.findIndex((r) => r.name === 'etcd gateway');
  const withRatio = gw >= 0 && etcdGw >= 0;
  const ratio = (a: number, b: number): string => (withRatio && Number.isFinite(a / b) && b > 0 ? `${(a / b).toFixed(2)}x` : '');
  type Row = [string, ...string[]];
  const rows: Row[] = [];
  const row = (label: string, values: Array<[string, number]>): void => {
    rows.push([label, ...values.map(([text]) => text), withRatio ? ratio(values[gw][1], values[etcdGw][1]) : '']);
  };
  row('watchers open', results.map((r) => [`${r.opened}/${cell.watchers}`, r.opened]));
  row('time to open them', results.map((r) => [`${(r.openMs / 1000).toFixed(2)} s`, r.openMs]));
  const phases = Math.max(...results.map((r) => r.phases.length));
  for (let i = 0; i < phases; i++) {
    const at = results.map((r) => r.phases[i]);
    const rate = at.find(Boolean)?.rate ?? 0;
    rows.push([`-- ${rate} puts/s`, ...results.map(() => ''), '']);
    const each = (f: (p: Phase) => [string, number]): Array<[string, number]> => at.map((p) => (p ? f(p) : ['-', NaN]));
    row('puts acked / failed / in etcd', each((p) => [`${p.puts.ok} / ${p.puts.failed} / ${p.committed}`, p.committed]));
    row('writer max lag behind schedule', each((p) => [ms(p.puts.maxLagMs), p.puts.maxLagMs]));
    row('events expected / delivered', each((p) => [`${int(p.expected)} / ${int(p.delivered)}`, p.delivered]));
    row('fewest events on one watcher', each((p) => [int(p.minPerWatcher), p.minPerWatcher]));
    row('events out of order', each((p) => [int(p.disorder), p.disorder]));
    row('error answers / server closes', each((p) => [`${p.errors} / ${closes(p)}`, p.errors]));
    row('delivered events/s', each((p) => [int(p.eventsPerSec), p.eventsPerSec]));
    row('latency p50', each((p) => [ms(p.hist.percentile(0.5)), p.hist.percentile(0.5)]));
    row('latency p99', each((p) => [ms(p.hist.percentile(0.99)), p.hist.percentile(0.99)]));
    row('latency max', each((p) => [ms(p.hist.maxMs), p.hist.maxMs]));
    row('etcd CPU per put', each((p) => [ms(p.etcdCpuPerPutMs), p.etcdCpuPerPutMs]));
    row('gateway CPU per event (b)', each((p) => [`${p.cpuPerEventUs.toFixed(1)} µs`, p.cpuPerEventUs]));
  }
  if (cell.maxP99Ms !== undefined) {
    row(
      `highest rate with p99 ≤ ${cell.maxP99Ms} ms`,
      results.map((r) => {
        const within = r.phases.filter((p) => p.hist.percentile(0.99) <= cell.maxP99Ms! && p.delivered >= p.expected).map((p) => p.rate);
        const best = within.length ? Math.max(...within) : 0;
        return [best ? `${best} puts/s` : 'none', best];
      }),
    );
  }
  const mem = (r: ScenarioResult, gateway: boolean): [string, number] => {
    const [rss, heap] = gateway && r.inProcess ? [r.after.nodeRss - r.before.nodeRss, r.after.nodeHeap - r.before.nodeHeap] : [r.after.etcdRss - r.before.etcdRss, r.after.etcdHeap - r.before.etcdHeap];
    return [`${kib(rss, r.opened)} RSS, ${kib(heap, r.opened)} heap`, rss / r.opened];
  };
  row('gateway memory / watcher (a)', results.map((r) => mem(r, true)));
  row(
    'all server RSS / watcher',
    results.map((r) => {
      const bytes = r.inProcess ? r.after.nodeRss - r.before.nodeRss + r.after.etcdRss - r.before.etcdRss : r.after.etcdRss - r.before.etcdRss;
      return [kib(bytes, r.opened), bytes / r.opened];
    }),
  );
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length), c === 0 ? 0 : 12));
  const cpus = os.cpus();
  const header = ['', ...results.map((r) => r.name), withRatio ? 'ratio' : ''];
  const line = (r: string[]): string => r.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd();
  const lines = [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM; node ${process.version}, etcd ${etcdVersion}`,
    `cell: ${cell.watchers} WebSocket watchers ${cell.keys === 'shared' ? 'on one prefix' : 'each on a key of its own'}, ${cell.rates.join(' / ')} puts/s for ${SECONDS} s each after ${WARMUP_SECONDS} s of unmeasured warm-up puts,`,
    `      watchers in ${clientProcs(cell.watchers)} client process(es) (${CLIENT === 'lean' ? 'a minimal WebSocket reader of the bench\'s own' : 'the ws package'}), puts from 1 writer process (gRPC straight to etcd)`,
    '',
    line(header),
    ...rows.map(line),
    '',
    'latency: put sent → event received by the client (both on one clock), through etcd commit and the gateway.',
    'ratio: this gateway / etcd gateway. etcd CPU per put: etcd user + system CPU over the phase (warm-up included), less',
    '       its idle rate measured for 2 s before, / puts.',
    '(a) etcd serves its gateway from its own process: its column is the whole etcd process (gateway + watchers, Go heap).',
    '(b) CPU of the serving process over the phase (warm-up included) / events delivered: this process (gateway and bench)',
    '    for this gateway and the floor, the whole etcd process for etcd\'s gateway.',
    ...(results.some((r) => r.name === 'floor')
      ? ['floor: one etcd watch per distinct watch, each response JSON-encoded and framed once, the same bytes written to',
         '       every socket (bench/watch-floor.ts): the least a WebSocket watch gateway in Node does, with the same clients.']
      : []),
    `memory: delta after opening the watchers (after GC: V8 by gc(), Go by pprof ?gc=1), divided by the watchers open.`,
  ];
  const negative = results.reduce((a, r) => a + r.phases.reduce((b, p) => b + p.hist.negative, 0), 0);
  if (negative > 0) lines.push(`note: ${negative} latencies below zero (clock offset error)`);
  for (const r of results) if (r.openErrors.length) lines.push(`${r.name} open failures: ${r.openErrors.join('; ')}`);
  return lines.join('\n');
}

/** The same watchers as Server-Sent Events (GET /v1/watch/) beside the WebSocket figures, first phase. */
function sseTable(ws: ScenarioResult, sse: ScenarioResult, cell: Cell): string {
  const [w, e] = [ws.phases[0], sse.phases[0]];
  const rows: Array<[string, string, string]> = [
    ['watchers open', `${ws.opened}/${cell.watchers}`, `${sse.opened}/${cell.watchers}`],
    ['events delivered / expected', `${int(w.delivered)} / ${int(w.expected)}`, `${int(e.delivered)} / ${int(e.expected)}`],
    ['events out of order', int(w.disorder), int(e.disorder)],
    ['latency p50', ms(w.hist.percentile(0.5)), ms(e.hist.percentile(0.5))],
    ['latency p99', ms(w.hist.percentile(0.99)), ms(e.hist.percentile(0.99))],
    ['latency max', ms(w.hist.maxMs), ms(e.hist.maxMs)],
    ['gateway RSS / watcher', kib(ws.after.nodeRss - ws.before.nodeRss, ws.opened), kib(sse.after.nodeRss - sse.before.nodeRss, sse.opened)],
    ['gateway heap / watcher', kib(ws.after.nodeHeap - ws.before.nodeHeap, ws.opened), kib(sse.after.nodeHeap - sse.before.nodeHeap, sse.opened)],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max('WebSocket /v3/watch'.length, ...rows.map((r) => r[1].length));
  return [
    `this gateway, ${cell.watchers} watchers on one prefix at ${cell.rates[0]} puts/s: WebSocket and Server-Sent Events (GET /v1/watch/)`,
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
  let floor: FloorServer | undefined;
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
      streams: { ...DEFAULT_STREAM_SETTINGS, maxWatchConnections: Math.max(...CELLS_TO_RUN.map((c) => c.watchers)) + 1_000 },
    });
    gateway = gw;
    server = http.createServer(gw.handler);
    gw.attach(server);
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;

    for (const [n, cell] of CELLS_TO_RUN.entries()) {
      const results: ScenarioResult[] = [];
      const gatewayIdle = async (): Promise<boolean> => {
        const s = gw.hub.stats();
        return s.connections === 0 && s.watches === 0;
      };
      if (TARGETS.has('gateway')) {
        results.push(await runScenario('this gateway', true, `ws://127.0.0.1:${port}/v3/watch`, `bench/${n}/gw/`, cell, etcd, client, gatewayIdle));
      }
      if (TARGETS.has('floor')) {
        floor ??= await startFloorServer(client);
        const f = floor;
        results.push(await runScenario('floor', true, `ws://127.0.0.1:${f.port}/v3/watch`, `bench/${n}/floor/`, cell, etcd, client, async () => f.idle()));
      }
      if (TARGETS.has('etcd')) {
        results.push(await runScenario('etcd gateway', false, `ws://127.0.0.1:${etcd.clientPort}/v3/watch`, `bench/${n}/etcd/`, cell, etcd, client, async () => true));
      }
      process.stdout.write(`${table(results, cell, version)}\n\n`);
      // The same watchers as Server-Sent Events, where they all watch one prefix (an SSE URL names one key).
      if (withSse(cell) && TARGETS.has('gateway') && cell.keys === 'shared') {
        const sse = await runScenario('this gateway, SSE', true, `http://127.0.0.1:${port}/v1/watch/bench/${n}/sse/?prefix`, `bench/${n}/sse/`, cell, etcd, client, gatewayIdle);
        process.stdout.write(`${sseTable(results[0], sse, cell)}\n\n`);
      }
    }
  } finally {
    gateway?.close();
    await floor?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    client?.close();
    await etcd?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    clearTimeout(overall);
  }
}

runMain('bench', main);
