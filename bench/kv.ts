// KV benchmark: request throughput and latency of unary KV calls through this gateway and through
// etcd's own gateway, side by side, plus the direct gRPC ceiling (the etcd3 client's raw calls).
//
//   npm run bench -- [--seconds 5] [--rounds 5] [--connections 1,16,64] [--workloads range1,range100,put,txn,mixed,v1get,v1put]
//                   [--workers 1,2] [--loader auto|wrk|autocannon] [--baseline DIR]
//
// --baseline DIR adds another build of this gateway (a checkout at DIR, built: DIR/dist/src/main.js),
// with the first --workers count, as one more target in the same alternated rounds: a before/after
// comparison on the same etcd in the same minutes. Its rows are labelled "N base"; the /v1/ workloads
// skip it (an older build may have no /v1/).
//
// Processes: etcd (a child), this gateway (another child: `node dist/src/main.js`, so its CPU time and
// memory can be read from /proc and it does not share an event loop with the load generator), and this
// one, which runs the gRPC loops and the HTTP load: wrk (a child, one thread) where it is installed,
// else autocannon in this process (pipelining 1 either way). Each cell (workload × connections) runs
// against this gateway, etcd's gateway and gRPC directly in rounds: every target gets `seconds / rounds`
// per round, one after the other, each round starting one target further along, and a target's rounds
// are summed (requests, CPU) and merged (latency histogram). etcd changes under a run — its database
// grows with every put, it snapshots its log every 100,000 writes, Go collects garbage — and a stall
// lands on whichever target is running: alternating short rounds spreads those over all targets instead
// of charging one target's whole cell with them. Each workload is warmed up for 1 s on every target first
// (unmeasured). Every wait is bounded in time.
//
// v1get and v1put are the same operations as range1 and put through this gateway's own API
// (`GET /v1/kv/bench/one`, `PUT /v1/kv/bench/put/<n>` with the value as the body); etcd's gateway has no
// /v1/, so its column (and the gRPC ones) run range1 and put: the row reads against the range1 and put
// rows above it.

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Etcd3 } from 'etcd3';
import { EtcdClient } from '../src/etcd/client';
import { findEtcdBinary, startEtcd, type EtcdProcess } from '../src/embedded-etcd/process';
import { makeLog, positiveInt, procSample, runMain, startGatewayProcess, withTimeout, type GatewayProcess, type ProcSample } from './setup';
import { LatencyHistogram } from './histogram';
import { runWrk, wrkInstalled, type WrkRequest } from './wrk';

const log = makeLog('bench');

const WORKLOADS = ['range1', 'range100', 'put', 'txn', 'mixed', 'v1get', 'v1put'] as const;
type Workload = (typeof WORKLOADS)[number];

/** What etcd's gateway and the gRPC clients run for a workload: the /v3/ form of a /v1/ one. */
function v3Form(w: Workload): Workload {
  if (w === 'v1get') return 'range1';
  if (w === 'v1put') return 'put';
  return w;
}

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string' },
    /** The seconds per cell and target are run in this many rounds, the targets alternated. */
    rounds: { type: 'string' },
    connections: { type: 'string' },
    workloads: { type: 'string' },
    workers: { type: 'string' },
    /** Measure this gateway only (a long memory run needs no comparison). */
    'gateway-only': { type: 'boolean' },
    /** The HTTP load generator: wrk when installed (auto), or the one named. */
    loader: { type: 'string' },
    /** Another built checkout of this gateway to run beside this one (before/after). */
    baseline: { type: 'string' },
  },
});

const SECONDS = positiveInt('seconds', args.seconds ?? '5');
const CONNECTIONS = (args.connections ?? '1,16,64').split(',').map((c) => positiveInt('connections', c.trim()));
const SELECTED: Workload[] = (args.workloads ?? WORKLOADS.join(',')).split(',').map((w) => {
  const name = w.trim();
  if (!(WORKLOADS as readonly string[]).includes(name)) throw new Error(`--workloads: unknown "${name}" (known: ${WORKLOADS.join(', ')})`);
  return name as Workload;
});
/** Gateways measured: one per worker count (WORKERS), all started at the beginning. */
const WORKER_COUNTS = (args.workers ?? '1,2').split(',').map((c) => positiveInt('workers', c.trim()));
const GATEWAY_ONLY = args['gateway-only'] === true;
const LOADER = ((): 'wrk' | 'autocannon' => {
  const wanted = args.loader ?? 'auto';
  if (wanted === 'autocannon') return 'autocannon';
  if (wanted !== 'auto' && wanted !== 'wrk') throw new Error(`--loader: unknown "${wanted}" (known: auto, wrk, autocannon)`);
  if (wrkInstalled()) return 'wrk';
  if (wanted === 'wrk') throw new Error('--loader wrk: no wrk on PATH (Debian: apt-get install wrk)');
  return 'autocannon';
})();
/** Default: 5 rounds (or the most up to 5 that divide --seconds); one for a gateway-only run, whose RSS
 *  timeline should be one unbroken run. */
const ROUNDS = ((): number => {
  if (args.rounds === undefined) return GATEWAY_ONLY ? 1 : ([5, 4, 3, 2].find((r) => SECONDS % r === 0) ?? 1);
  const r = positiveInt('rounds', args.rounds);
  if (SECONDS % r !== 0) throw new Error(`--rounds ${r}: --seconds (${SECONDS}) must be a multiple of it (wrk runs whole seconds)`);
  return r;
})();
const ROUND_SECONDS = SECONDS / ROUNDS;
const WARMUP_SECONDS = 1;
const CELL_TIMEOUT_MS = (ROUND_SECONDS + 30) * 1_000;
// Cells: per workload a warm-up on every target, and per connection count the rounds of every target.
const BASELINE_MAIN = args.baseline === undefined ? undefined : path.resolve(args.baseline, 'dist', 'src', 'main.js');
const TARGETS = WORKER_COUNTS.length + 3 + (BASELINE_MAIN ? 1 : 0);
const OVERALL_TIMEOUT_MS = SELECTED.length * TARGETS * (WARMUP_SECONDS + 30 + CONNECTIONS.length * ROUNDS * (ROUND_SECONDS + 30)) * 1_000 + 120_000;

// ---- request bodies ----------------------------------------------------------------------------------

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const ONE_KEY = 'bench/one';
const PREFIX = 'bench/p/';
const PREFIX_END = 'bench/p0'; // '/' + 1
const CAS_KEY = 'bench/cas';
const CAS_VALUE = 'v';
const SMALL_VALUE = 'x'.repeat(64);
const PUT_KEYS = 1_000;

const RANGE1_BODY = JSON.stringify({ key: b64(ONE_KEY) });
const RANGE100_BODY = JSON.stringify({ key: b64(PREFIX), range_end: b64(PREFIX_END) });
const PUT_BODIES = Array.from({ length: PUT_KEYS }, (_, i) => JSON.stringify({ key: b64(`bench/put/${i}`), value: b64(SMALL_VALUE) }));
// Compare-and-swap: put the key only if its value is still what we expect (it always is: the value put
// is the same, so every transaction takes the success branch and writes).
const TXN_BODY = JSON.stringify({
  compare: [{ key: b64(CAS_KEY), target: 'VALUE', result: 'EQUAL', value: b64(CAS_VALUE) }],
  success: [{ request_put: { key: b64(CAS_KEY), value: b64(CAS_VALUE) } }],
});

// Access control is on while measuring: every request carries a bearer token the gateway checks
// (SHA-256, constant-time compare) and every key is checked against the client's grants.
const BENCH_TOKEN = 'bench-token';
const AUTH = { authorization: `Bearer ${BENCH_TOKEN}` };
const ACCESS_YAML = [
  'clients:',
  '  - name: bench',
  `    token_sha256: ${createHash('sha256').update(BENCH_TOKEN).digest('hex')}`,
  '    grants:',
  '      - { prefix: "bench/", rights: [read, write] }',
  '',
].join('\n');

let putCounter = 0;
const nextPutBody = (): string => PUT_BODIES[putCounter++ % PUT_KEYS];

type Req = autocannon.Request;
const V1_GET_PATH = `/v1/kv/${ONE_KEY}`;
const v1PutPath = (i: number): string => `/v1/kv/bench/put/${i}`;
let v1PutCounter = 0;
const rangeReq = (body: string): Req => ({ method: 'POST', path: '/v3/kv/range', body });
const putReq = (): Req => ({ method: 'POST', path: '/v3/kv/put', setupRequest: (r) => ({ ...r, body: nextPutBody() }) });
const txnReq = (): Req => ({ method: 'POST', path: '/v3/kv/txn', body: TXN_BODY });

/** The sequence each autocannon connection loops over. mixed: 70 % range1, 20 % put, 10 % txn. */
function httpRequests(w: Workload): Req[] {
  switch (w) {
    case 'range1':
      return [rangeReq(RANGE1_BODY)];
    case 'range100':
      return [rangeReq(RANGE100_BODY)];
    case 'put':
      return [putReq()];
    case 'txn':
      return [txnReq()];
    case 'v1get':
      return [{ method: 'GET', path: V1_GET_PATH }];
    case 'v1put':
      return [{ method: 'PUT', setupRequest: (r) => ({ ...r, path: v1PutPath(v1PutCounter++ % PUT_KEYS), body: SMALL_VALUE }) }];
    case 'mixed':
      return [
        rangeReq(RANGE1_BODY),
        rangeReq(RANGE1_BODY),
        putReq(),
        rangeReq(RANGE1_BODY),
        rangeReq(RANGE1_BODY),
        txnReq(),
        rangeReq(RANGE1_BODY),
        putReq(),
        rangeReq(RANGE1_BODY),
        rangeReq(RANGE1_BODY),
      ];
  }
}

/** The same sequences for wrk, which takes a fixed list: the puts' rotating keys are spelled out. */
function wrkRequests(w: Workload): WrkRequest[] {
  const post = (p: string, body: string): WrkRequest => ({ method: 'POST', path: p, body });
  const puts = PUT_BODIES.map((b) => post('/v3/kv/put', b));
  const range1 = post('/v3/kv/range', RANGE1_BODY);
  const txn = post('/v3/kv/txn', TXN_BODY);
  switch (w) {
    case 'range1':
      return [range1];
    case 'range100':
      return [post('/v3/kv/range', RANGE100_BODY)];
    case 'put':
      return puts;
    case 'txn':
      return [txn];
    case 'v1get':
      return [{ method: 'GET', path: V1_GET_PATH, body: '' }];
    case 'v1put':
      return Array.from({ length: PUT_KEYS }, (_, i) => ({ method: 'PUT', path: v1PutPath(i), body: SMALL_VALUE }));
    case 'mixed':
      // 7 range1, 2 put, 1 txn per ten, in the order autocannon's list has them; 100 tens use every put key.
      return Array.from({ length: PUT_KEYS / 2 }, (_, i) => [range1, range1, puts[2 * i], range1, range1, txn, range1, puts[2 * i + 1], range1, range1]).flat();
  }
}

// The same operations as gRPC calls (proto-loader: bytes as Buffers, enums as strings), made either by
// the etcd3 package's own generated clients (grpc-js) or by the gateway's EtcdClient (its lean HTTP/2
// transport), both in this process.
type Unary = (service: 'KV', method: string, request: unknown, opts: { idempotent: boolean }) => Promise<unknown>;
interface Caller {
  unary: Unary;
}
type Call = (c: Caller) => Promise<unknown>;

/** The etcd3 package's KV client, called directly (no pool retries: its raw service client). */
function etcd3Caller(client: Etcd3): Caller {
  const kv = client.kv;
  const methods: Record<string, (req: never) => Promise<unknown>> = {
    Range: (r) => kv.range(r),
    Put: (r) => kv.put(r),
    Txn: (r) => kv.txn(r),
  };
  return { unary: (_service, method, request) => methods[method](request as never) };
}
const grpcRange1: Call = (c) => c.unary('KV', 'Range', { key: Buffer.from(ONE_KEY) }, { idempotent: true });
const grpcRange100: Call = (c) => c.unary('KV', 'Range', { key: Buffer.from(PREFIX), range_end: Buffer.from(PREFIX_END) }, { idempotent: true });
let grpcPutCounter = 0;
const grpcPut: Call = (c) =>
  c.unary('KV', 'Put', { key: Buffer.from(`bench/put/${grpcPutCounter++ % PUT_KEYS}`), value: Buffer.from(SMALL_VALUE) }, { idempotent: false });
const TXN_REQUEST = {
  compare: [{ key: Buffer.from(CAS_KEY), target: 'VALUE', result: 'EQUAL', value: Buffer.from(CAS_VALUE) }],
  success: [{ request_put: { key: Buffer.from(CAS_KEY), value: Buffer.from(CAS_VALUE) } }],
};
const grpcTxn: Call = (c) => c.unary('KV', 'Txn', TXN_REQUEST, { idempotent: false });
const MIXED: Call[] = [grpcRange1, grpcRange1, grpcPut, grpcRange1, grpcRange1, grpcTxn, grpcRange1, grpcPut, grpcRange1, grpcRange1];

function grpcCalls(w: Workload): Call[] {
  switch (v3Form(w)) {
    case 'range1':
      return [grpcRange1];
    case 'range100':
      return [grpcRange100];
    case 'put':
      return [grpcPut];
    case 'txn':
      return [grpcTxn];
    case 'mixed':
      return MIXED;
    default:
      throw new Error(`no gRPC form of ${w}`);
  }
}

// ---- measuring -----------------------------------------------------------------------------------------

interface Run {
  requests: number;
  /** Answers that were not 2xx, and connection errors / timeouts. */
  bad: number;
  seconds: number;
  hist: LatencyHistogram;
}

const emptyRun = (): Run => ({ requests: 0, bad: 0, seconds: 0, hist: new LatencyHistogram() });

/** Adds one round to a target's total. */
function addRound(total: Run, round: Run): void {
  total.requests += round.requests;
  total.bad += round.bad;
  total.seconds += round.seconds;
  total.hist.merge(round.hist.toJSON());
}

const RSS_TIMELINE_MS = 10_000; // Linux USER_HZ: 100 on every mainstream architecture.

/** A process and its children (a gateway's cluster workers): CPU time and RSS summed. */
async function treeSample(pid: number): Promise<ProcSample> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  const pids = [pid, ...children.split(' ').filter(Boolean).map(Number)];
  const samples = await Promise.all(pids.map((p) => procSample(p).catch(() => ({ cpuMs: 0, rssBytes: 0 }))));
  return samples.reduce((a, b) => ({ cpuMs: a.cpuMs + b.cpuMs, rssBytes: a.rssBytes + b.rssBytes }));
}

/** Runs `fn`, and reports the CPU time the process trees of `pids` used meanwhile and their peak RSS
 *  (sampled every 100 ms). */
async function withProcStats<T>(
  pids: number[],
  fn: () => Promise<T>,
): Promise<{ result: T; cpuMs: number[]; peakRss: number[]; rssTimeline: number[] }> {
  const before = await Promise.all(pids.map(treeSample));
  const peakRss = before.map((s) => s.rssBytes);
  /** RSS of the first process tree every RSS_TIMELINE_MS, for the memory-over-time line of long runs. */
  const rssTimeline: number[] = [];
  let ticks = 0;
  const timer = setInterval(() => {
    const tick = ticks++;
    pids.forEach((pid, i) => {
      treeSample(pid)
        .then((s) => {
          peakRss[i] = Math.max(peakRss[i], s.rssBytes);
          if (i === 0 && tick % (RSS_TIMELINE_MS / 100) === 0) rssTimeline.push(s.rssBytes);
        })
        .catch(() => undefined);
    });
  }, 100);
  try {
    const result = await fn();
    const after = await Promise.all(pids.map(treeSample));
    after.forEach((s, i) => (peakRss[i] = Math.max(peakRss[i], s.rssBytes)));
    return { result, cpuMs: after.map((s, i) => s.cpuMs - before[i].cpuMs), peakRss, rssTimeline };
  } finally {
    clearInterval(timer);
  }
}

/** Where wrk's Lua scripts are written (the run's temporary directory). */
let scratchDir = os.tmpdir();

async function runHttp(baseUrl: string, w: Workload, connections: number, seconds: number, headers: Record<string, string> = {}): Promise<Run> {
  if (LOADER === 'wrk') {
    const r = await runWrk({
      baseUrl,
      connections,
      seconds,
      requests: wrkRequests(w),
      headers: { 'content-type': 'application/json', ...headers },
      dir: scratchDir,
      timeoutMs: seconds * 1_000 + 30_000,
    });
    const hist = new LatencyHistogram();
    for (const ms of r.quantilesMs) hist.add(ms, r.answered / r.quantilesMs.length);
    return { requests: r.ok, bad: r.bad, seconds: r.seconds, hist };
  }
  const hist = new LatencyHistogram();
  let instance: autocannon.Instance | undefined;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: baseUrl,
        connections,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        headers: { 'content-type': 'application/json', ...headers },
        requests: httpRequests(w),
      },
      (err, result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(result)),
    );
    // The per-response latency (ms, fractional) into our histogram: autocannon's own is in whole ms.
    instance.on('response', (_client, _status, _bytes, responseTime) => hist.add(responseTime));
  });
  const r = await withTimeout(`autocannon ${w} ×${connections} on ${baseUrl}`, done, seconds * 1_000 + 30_000, () => instance?.stop());
  return { requests: r['2xx'], bad: r.non2xx + r.errors, seconds: r.duration, hist };
}

async function runGrpc(client: Caller, w: Workload, concurrency: number, seconds: number): Promise<Run> {
  const hist = new LatencyHistogram();
  const calls = grpcCalls(w);
  let ok = 0;
  let bad = 0;
  const start = performance.now();
  const end = start + seconds * 1_000;
  const loop = async (): Promise<void> => {
    for (let i = 0; performance.now() < end; i++) {
      const t0 = performance.now();
      try {
        await calls[i % calls.length](client);
        hist.add(performance.now() - t0);
        ok++;
      } catch {
        bad++;
      }
    }
  };
  await withTimeout(`gRPC ${w} ×${concurrency}`, Promise.all(Array.from({ length: concurrency }, loop)), seconds * 1_000 + 30_000);
  return { requests: ok, bad, seconds: (performance.now() - start) / 1_000, hist };
}

// ---- processes -----------------------------------------------------------------------------------------

interface Gateway extends GatewayProcess {
  /** The WORKERS count, and " base" for the --baseline build. */
  workers: string;
  baseline: boolean;
}

async function startGateway(etcdUrl: string, workers: number, accessFile: string, main?: string): Promise<Gateway> {
  const g = await startGatewayProcess({ etcdUrl, env: { WORKERS: String(workers), ACCESS_FILE: accessFile }, main });
  return Object.assign(g, { workers: `${workers}${main ? ' base' : ''}`, baseline: main !== undefined });
}

/** One request of each kind through a gateway: 200, and the transaction took its success branch. */
async function checkGateway(name: string, url: string, headers: Record<string, string>): Promise<void> {
  const post = async (p: string, body: string): Promise<Record<string, unknown>> => {
    const r = await fetch(`${url}${p}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(5_000) });
    if (!r.ok) throw new Error(`${name} ${p}: HTTP ${r.status} ${await r.text()}`);
    return (await r.json()) as Record<string, unknown>;
  };
  const one = await post('/v3/kv/range', RANGE1_BODY);
  if (String(one.count) !== '1') throw new Error(`${name}: range of ${ONE_KEY} gave count ${String(one.count)}`);
  const many = await post('/v3/kv/range', RANGE100_BODY);
  if (String(many.count) !== '100' || (many.kvs as unknown[]).length !== 100) throw new Error(`${name}: prefix range gave count ${String(many.count)}`);
  await post('/v3/kv/put', PUT_BODIES[0]);
  const txn = await post('/v3/kv/txn', TXN_BODY);
  if (txn.succeeded !== true) throw new Error(`${name}: compare-and-swap did not succeed: ${JSON.stringify(txn)}`);
  if (name === 'this gateway') {
    const got = await fetch(`${url}${V1_GET_PATH}`, { headers, signal: AbortSignal.timeout(5_000) });
    if (got.status !== 200 || (await got.text()) !== SMALL_VALUE) throw new Error(`${name}: GET ${V1_GET_PATH} gave HTTP ${got.status}`);
    const put = await fetch(`${url}${v1PutPath(0)}`, { method: 'PUT', body: SMALL_VALUE, headers, signal: AbortSignal.timeout(5_000) });
    if (put.status !== 200 && put.status !== 201) throw new Error(`${name}: PUT ${v1PutPath(0)} gave HTTP ${put.status}`);
    const refused = await fetch(`${url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64('other') }), headers, signal: AbortSignal.timeout(5_000) });
    if (refused.status !== 403) throw new Error(`${name}: access control is not on (a key outside bench/ gave HTTP ${refused.status})`);
  }
}

// ---- report --------------------------------------------------------------------------------------------

interface Ours {
  workers: string;
  run: Run;
  /** CPU ms per 1,000 requests: the gateway's processes, and etcd meanwhile. */
  cpu: number;
  etcdCpu: number;
  rssMiB: number;
  rssTimeline: number[];
}

interface Cell {
  workload: Workload;
  connections: number;
  ours: Ours[];
  theirs: Run;
  /** The etcd3 package's client, and the gateway's EtcdClient, from this process. */
  etcd3: Run;
  h2: Run;
  theirsEtcdCpu: number;
}

const rate = (r: Run): number => (r.seconds > 0 ? r.requests / r.seconds : 0);
const fmtInt = (v: number): string => Math.round(v).toLocaleString('en-US');
const fmtMs = (v: number): string => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : 'n/a');
const perK = (cpuMs: number, requests: number): number => (requests > 0 ? (cpuMs / requests) * 1_000 : NaN);
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');

function columns(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((v, i) => (i < 3 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)];
}

/** Runs of a minute or more: the gateway's RSS every 10 s, and whether it grew after warm-up (the mean
 *  of the last third against the mean of the second third, over 10 % is growth). */
function memoryLines(cells: Cell[]): string[] {
  if (SECONDS < 60) return [];
  const out = ['', `Gateway memory over time (RSS MiB every ${RSS_TIMELINE_MS / 1000} s; flat: last third within 10 % of the second third):`];
  for (const c of cells) {
    for (const o of c.ours) {
      const t = o.rssTimeline.map((b) => b / 2 ** 20);
      const third = Math.floor(t.length / 3);
      const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
      const growth = third > 0 ? mean(t.slice(2 * third)) / mean(t.slice(third, 2 * third)) - 1 : NaN;
      const verdict = Number.isFinite(growth) ? `${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)} % -> ${growth <= 0.1 ? 'flat' : 'GROWING'}` : 'too short';
      out.push(`${c.workload} ×${c.connections}, ${o.workers} workers: ${t.map((v) => v.toFixed(0)).join(' ')}  (${verdict})`);
    }
  }
  return out;
}

function table(cells: Cell[], etcdVersion: string): string {
  const rows = cells.flatMap((c) =>
    c.ours.map((o) => [
      c.workload,
      String(c.connections),
      String(o.workers),
      fmtInt(rate(o.run)),
      fmtMs(o.run.hist.percentile(0.5)),
      fmtMs(o.run.hist.percentile(0.99)),
      fmtInt(rate(c.theirs)),
      fmtMs(c.theirs.hist.percentile(0.5)),
      fmtMs(c.theirs.hist.percentile(0.99)),
      ratio(rate(o.run), rate(c.theirs)),
      ratio(o.run.hist.percentile(0.99), c.theirs.hist.percentile(0.99)),
      fmtMs(o.cpu),
      o.rssMiB.toFixed(0),
    ]),
  );
  const cpuRows = cells.flatMap((c) =>
    c.ours.map((o) => [c.workload, String(c.connections), String(o.workers), fmtMs(o.cpu), fmtMs(o.etcdCpu), fmtMs(o.cpu + o.etcdCpu), fmtMs(c.theirsEtcdCpu)]),
  );
  const ceilingRows = cells.map((c) => {
    const best = Math.max(...c.ours.filter((o) => !o.workers.endsWith(' base')).map((o) => rate(o.run)));
    const ceiling = (r: Run): string => (r.seconds > 0 ? fmtInt(rate(r)) : 'n/a');
    const share = rate(c.etcd3) > 0 ? `${((best / rate(c.etcd3)) * 100).toFixed(0)} %` : 'n/a';
    return [c.workload, String(c.connections), '', ceiling(c.etcd3), ceiling(c.h2), share];
  });
  const cpus = os.cpus();
  const errors = cells.filter((c) => c.ours.some((o) => o.run.bad > 0) || c.theirs.bad + c.etcd3.bad + c.h2.bad > 0);
  return [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM; node ${process.version}, etcd ${etcdVersion}`,
    `run: ${SECONDS} s per cell and target${ROUNDS > 1 ? ` (${ROUNDS} rounds of ${ROUND_SECONDS} s, targets alternated)` : ''} after ${WARMUP_SECONDS} s warm-up per workload and target; load: ${LOADER === 'wrk' ? 'wrk (1 thread)' : 'autocannon'}, pipelining 1; latencies in ms;`,
    '  this gateway with access control (bearer token, key grants), validation and metrics on, LOG_LEVEL=warn',
    '',
    ...columns(
      ['workload', 'conns', 'workers', 'ours req/s', 'p50', 'p99', 'etcd-gw req/s', 'p50', 'p99', 'ours/etcd', 'p99 ours/etcd', 'gw CPU ms/1k', 'gw RSS MiB'],
      rows,
    ),
    '',
    'CPU per 1,000 requests (ms), from /proc (the gateway: all its processes; etcd-gw runs inside etcd):',
    ...columns(['workload', 'conns', 'workers', 'gateway', 'etcd (ours)', 'gateway+etcd', 'etcd with its gateway'], cpuRows),
    '',
    'Ceiling: the same calls made from Node directly, as many concurrent loops as connections:',
    ...columns(['workload', 'conns', '', 'etcd3 client req/s', 'EtcdClient (h2) req/s', 'best ours / etcd3'], ceilingRows),
    '',
    "ours: this gateway (a child process; WORKERS as in 'workers'), etcd-gw: etcd's own gateway (<etcd>/v3/...).",
    "etcd3 client: the etcd3 package's KV service client (grpc-js); EtcdClient (h2): the gateway's own transport.",
    'gw CPU ms/1k: user+system CPU of the gateway processes per 1,000 requests; gw RSS MiB: their peak RSS.',
    'mixed: each connection loops over 7 range1, 2 put, 1 txn (70/20/10 %). txn: compare VALUE of one key, then put it.',
    ...memoryLines(cells),
    ...(errors.length
      ? errors.map(
          (c) =>
            `errors: ${c.workload} ×${c.connections}: ours ${c.ours.map((o) => `${o.run.bad} (${o.workers} workers)`).join(', ')}, etcd-gw ${c.theirs.bad}, etcd3 ${c.etcd3.bad}, h2 ${c.h2.bad}`,
        )
      : ['errors: none (every answer was 2xx)']),
  ].join('\n');
}

// ---- main ----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const bin = findEtcdBinary();
  if (!bin) throw new Error('no etcd binary: set ETCD_BIN or put etcd on PATH');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-bench-kv-'));
  scratchDir = dataDir;
  let etcd: EtcdProcess | undefined;
  const gateways: Gateway[] = [];
  let client: EtcdClient | undefined;
  let etcd3: Etcd3 | undefined;
  const overall = setTimeout(() => {
    log(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s; stopping`);
    for (const g of gateways) g.child.kill('SIGKILL');
    etcd?.kill('SIGKILL');
    process.exit(2);
  }, OVERALL_TIMEOUT_MS);
  overall.unref();
  try {
    log(`starting etcd (${bin}); HTTP load from ${LOADER}`);
    etcd = await startEtcd({ bin, dataDir });
    const etcdPid = etcd.pid;
    if (etcdPid === undefined) throw new Error('etcd has no pid');
    const version = ((await (await fetch(`${etcd.clientUrl}/version`, { signal: AbortSignal.timeout(5_000) })).json()) as { etcdserver: string }).etcdserver;
    client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 10_000 });
    etcd3 = new Etcd3({ hosts: [etcd.clientUrl] });
    const callers: { etcd3: Caller; h2: Caller } = { etcd3: etcd3Caller(etcd3), h2: client };

    log('seeding');
    await client.unary('KV', 'Put', { key: Buffer.from(ONE_KEY), value: Buffer.from(SMALL_VALUE) }, { idempotent: false });
    await client.unary('KV', 'Put', { key: Buffer.from(CAS_KEY), value: Buffer.from(CAS_VALUE) }, { idempotent: false });
    for (let i = 0; i < 100; i++) {
      await client.unary('KV', 'Put', { key: Buffer.from(`${PREFIX}${String(i).padStart(3, '0')}`), value: Buffer.from(SMALL_VALUE) }, { idempotent: false });
    }

    const accessFile = path.join(dataDir, 'access.yaml');
    await writeFile(accessFile, ACCESS_YAML);
    for (const workers of WORKER_COUNTS) {
      log(`starting the gateway (node dist/src/main.js, WORKERS=${workers})`);
      const g = await startGateway(etcd.clientUrl, workers, accessFile);
      gateways.push(g);
      await checkGateway('this gateway', g.url, AUTH);
    }
    if (BASELINE_MAIN) {
      log(`starting the baseline gateway (${BASELINE_MAIN}, WORKERS=${WORKER_COUNTS[0]})`);
      const g = await startGateway(etcd.clientUrl, WORKER_COUNTS[0], accessFile, BASELINE_MAIN);
      gateways.push(g);
      await checkGateway('baseline', g.url, AUTH);
    }
    const etcdGw = etcd.clientUrl;
    await checkGateway('etcd gateway', etcdGw, {});

    const cells: Cell[] = [];
    for (const w of SELECTED) {
      log(`${w}: warm-up (${WARMUP_SECONDS} s per target)`);
      const here = gateways.filter((g) => !(g.baseline && v3Form(w) !== w));
      for (const g of here) await runHttp(g.url, w, 16, WARMUP_SECONDS, AUTH);
      await runHttp(etcdGw, v3Form(w), 16, WARMUP_SECONDS);
      await runGrpc(callers.etcd3, w, 16, WARMUP_SECONDS);
      await runGrpc(callers.h2, w, 16, WARMUP_SECONDS);
      for (const conns of CONNECTIONS) {
        log(
          `${w} ×${conns}: this gateway (${WORKER_COUNTS.join(', ')} workers)${GATEWAY_ONLY ? '' : ', etcd gateway, gRPC'} ` +
            `(${SECONDS} s each${ROUNDS > 1 ? `, in ${ROUNDS} rounds of ${ROUND_SECONDS} s` : ''})`,
        );
        const ours = here.map((g) => ({ g, run: emptyRun(), cpuMs: 0, etcdCpuMs: 0, peakRss: 0, rssTimeline: [] as number[] }));
        const theirs = { run: emptyRun(), etcdCpuMs: 0 };
        const viaEtcd3 = emptyRun();
        const viaH2 = emptyRun();
        const targets: Array<() => Promise<void>> = ours.map((o) => async () => {
          const m = await withProcStats([o.g.pid, etcdPid], () => runHttp(o.g.url, w, conns, ROUND_SECONDS, AUTH));
          addRound(o.run, m.result);
          o.cpuMs += m.cpuMs[0];
          o.etcdCpuMs += m.cpuMs[1];
          o.peakRss = Math.max(o.peakRss, m.peakRss[0]);
          o.rssTimeline.push(...m.rssTimeline);
        });
        if (!GATEWAY_ONLY) {
          targets.push(
            async () => {
              const m = await withProcStats([etcdPid], () => runHttp(etcdGw, v3Form(w), conns, ROUND_SECONDS));
              addRound(theirs.run, m.result);
              theirs.etcdCpuMs += m.cpuMs[0];
            },
            async () => addRound(viaEtcd3, await withTimeout('gRPC', runGrpc(callers.etcd3, w, conns, ROUND_SECONDS), CELL_TIMEOUT_MS)),
            async () => addRound(viaH2, await withTimeout('gRPC', runGrpc(callers.h2, w, conns, ROUND_SECONDS), CELL_TIMEOUT_MS)),
          );
        }
        // Each round starts one target further along: none always runs right after the same one.
        for (let round = 0; round < ROUNDS; round++) {
          for (let k = 0; k < targets.length; k++) await targets[(round + k) % targets.length]();
        }
        const count = (r: Run): number => r.requests + r.bad;
        cells.push({
          workload: w,
          connections: conns,
          ours: ours.map((o) => ({
            workers: o.g.workers,
            run: o.run,
            cpu: perK(o.cpuMs, count(o.run)),
            etcdCpu: perK(o.etcdCpuMs, count(o.run)),
            rssMiB: o.peakRss / 2 ** 20,
            rssTimeline: o.rssTimeline,
          })),
          theirs: theirs.run,
          etcd3: viaEtcd3,
          h2: viaH2,
          theirsEtcdCpu: perK(theirs.etcdCpuMs, count(theirs.run)),
        });
        log(
          `  ours ${ours.map((o) => `${fmtInt(rate(o.run))}/s (${o.g.workers}w)`).join(', ')}, etcd gateway ${fmtInt(rate(theirs.run))}/s, ` +
            `etcd3 ${fmtInt(rate(viaEtcd3))}/s, h2 ${fmtInt(rate(viaH2))}/s`,
        );
      }
    }
    process.stdout.write(`${table(cells, version)}\n`);
  } finally {
    client?.close();
    etcd3?.close();
    for (const g of gateways) await g.stop();
    await etcd?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    clearTimeout(overall);
  }
}

runMain('bench', main);
