// KV benchmark: request throughput and latency of unary KV calls through this gateway and through
// etcd's own gateway, side by side, plus the direct gRPC ceiling (the etcd3 client's raw calls).
//
//   npm run bench -- [--seconds 5] [--connections 1,16,64] [--workloads range1,range100,put,txn,mixed]
//
// Processes: etcd (a child), this gateway (another child: `node dist/src/main.js`, so its CPU time and
// memory can be read from /proc and it does not share an event loop with the load generator), and this
// one, which runs autocannon (pipelining 1) and the gRPC loops. Each cell (workload × connections) runs
// against this gateway, then etcd's gateway, then gRPC directly, one after the other; each workload is
// warmed up for 1 s on every target first (unmeasured). Every wait is bounded in time.

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { EtcdClient } from '../src/etcd/client';
import { findEtcdBinary, startEtcd, type EtcdProcess } from '../src/etcd/process';
import { LatencyHistogram } from './histogram';
import { makeLog, procSample, startGatewayProcess, withTimeout, type GatewayProcess } from './setup';

const log = makeLog('bench');

const WORKLOADS = ['range1', 'range100', 'put', 'txn', 'mixed'] as const;
type Workload = (typeof WORKLOADS)[number];

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string' },
    connections: { type: 'string' },
    workloads: { type: 'string' },
  },
});

function positiveInt(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name}: expected a positive integer, got "${raw}"`);
  return n;
}
const SECONDS = positiveInt('seconds', args.seconds ?? '5');
const CONNECTIONS = (args.connections ?? '1,16,64').split(',').map((c) => positiveInt('connections', c.trim()));
const SELECTED: Workload[] = (args.workloads ?? WORKLOADS.join(',')).split(',').map((w) => {
  const name = w.trim();
  if (!(WORKLOADS as readonly string[]).includes(name)) throw new Error(`--workloads: unknown "${name}" (known: ${WORKLOADS.join(', ')})`);
  return name as Workload;
});
const WARMUP_SECONDS = 1;
const CELL_TIMEOUT_MS = (SECONDS + 30) * 1_000;
// Cells: per workload a warm-up on 3 targets and 3 measured runs per connection count; plus starts.
const OVERALL_TIMEOUT_MS = SELECTED.length * (3 * (WARMUP_SECONDS + 30) + CONNECTIONS.length * 3 * (SECONDS + 30)) * 1_000 + 120_000;

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

let putCounter = 0;
const nextPutBody = (): string => PUT_BODIES[putCounter++ % PUT_KEYS];

type Req = autocannon.Request;
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

// The same operations as gRPC calls (proto-loader: bytes as Buffers, enums as strings).
type Call = (c: EtcdClient) => Promise<unknown>;
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
  switch (w) {
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

/** Runs `fn`, and reports the CPU time `pids` used meanwhile and their peak RSS (sampled every 100 ms). */
async function withProcStats<T>(pids: number[], fn: () => Promise<T>): Promise<{ result: T; cpuMs: number[]; peakRss: number[] }> {
  const before = await Promise.all(pids.map(procSample));
  const peakRss = before.map((s) => s.rssBytes);
  const timer = setInterval(() => {
    pids.forEach((pid, i) => {
      procSample(pid)
        .then((s) => (peakRss[i] = Math.max(peakRss[i], s.rssBytes)))
        .catch(() => undefined);
    });
  }, 100);
  try {
    const result = await fn();
    const after = await Promise.all(pids.map(procSample));
    after.forEach((s, i) => (peakRss[i] = Math.max(peakRss[i], s.rssBytes)));
    return { result, cpuMs: after.map((s, i) => s.cpuMs - before[i].cpuMs), peakRss };
  } finally {
    clearInterval(timer);
  }
}

async function runHttp(baseUrl: string, w: Workload, connections: number, seconds: number): Promise<Run> {
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
        headers: { 'content-type': 'application/json' },
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

async function runGrpc(client: EtcdClient, w: Workload, concurrency: number, seconds: number): Promise<Run> {
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

/** This gateway as its own process (stderr to ours), listening once it says so. */
function startGateway(etcdUrl: string): Promise<GatewayProcess> {
  return startGatewayProcess({ etcdUrl });
}

/** One request of each kind through a gateway: 200, and the transaction took its success branch. */
async function checkGateway(name: string, url: string): Promise<void> {
  const post = async (p: string, body: string): Promise<Record<string, unknown>> => {
    const r = await fetch(`${url}${p}`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5_000) });
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
}

// ---- report --------------------------------------------------------------------------------------------

interface Cell {
  workload: Workload;
  connections: number;
  ours: Run;
  theirs: Run;
  grpc: Run;
  /** CPU ms per 1,000 requests: our gateway process, etcd during our run, etcd during its gateway's run. */
  oursCpu: number;
  oursEtcdCpu: number;
  theirsEtcdCpu: number;
  oursRssMiB: number;
  theirsRssMiB: number;
}

const rate = (r: Run): number => (r.seconds > 0 ? r.requests / r.seconds : 0);
const fmtInt = (v: number): string => Math.round(v).toLocaleString('en-US');
const fmtMs = (v: number): string => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : 'n/a');
const perK = (cpuMs: number, requests: number): number => (requests > 0 ? (cpuMs / requests) * 1_000 : NaN);

function table(cells: Cell[], etcdVersion: string): string {
  const header = [
    'workload',
    'conns',
    'ours req/s',
    'p50',
    'p99',
    'etcd-gw req/s',
    'p50',
    'p99',
    'ours/etcd',
    'gw CPU ms/1k',
    'gw RSS MiB',
    'gRPC req/s',
    'ours/gRPC',
  ];
  const rows = cells.map((c) => [
    c.workload,
    String(c.connections),
    fmtInt(rate(c.ours)),
    fmtMs(c.ours.hist.percentile(0.5)),
    fmtMs(c.ours.hist.percentile(0.99)),
    fmtInt(rate(c.theirs)),
    fmtMs(c.theirs.hist.percentile(0.5)),
    fmtMs(c.theirs.hist.percentile(0.99)),
    rate(c.theirs) > 0 ? `${(rate(c.ours) / rate(c.theirs)).toFixed(2)}×` : 'n/a',
    fmtMs(c.oursCpu),
    c.oursRssMiB.toFixed(0),
    fmtInt(rate(c.grpc)),
    rate(c.grpc) > 0 ? `${((rate(c.ours) / rate(c.grpc)) * 100).toFixed(0)} %` : 'n/a',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((v, i) => (i < 2 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  const cpus = os.cpus();
  const errors = cells.filter((c) => c.ours.bad + c.theirs.bad + c.grpc.bad > 0);
  const etcdRows = cells.map((c) => [
    c.workload,
    String(c.connections),
    fmtMs(c.oursEtcdCpu),
    fmtMs(c.oursCpu + c.oursEtcdCpu),
    fmtMs(c.theirsEtcdCpu),
    c.theirsRssMiB.toFixed(0),
  ]);
  const etcdHeader = ['workload', 'conns', 'etcd CPU ms/1k (ours)', 'gw+etcd CPU ms/1k (ours)', 'etcd CPU ms/1k (etcd-gw)', 'etcd RSS MiB (etcd-gw)'];
  const ew = etcdHeader.map((h, i) => Math.max(h.length, ...etcdRows.map((r) => r[i].length)));
  const eline = (r: string[]): string => r.map((v, i) => (i < 2 ? v.padEnd(ew[i]) : v.padStart(ew[i]))).join('  ');
  return [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM; node ${process.version}, etcd ${etcdVersion}`,
    `run: ${SECONDS} s per cell after ${WARMUP_SECONDS} s warm-up per workload and target; autocannon pipelining 1; latencies in ms`,
    '',
    line(header),
    ...rows.map(line),
    '',
    'CPU per 1,000 requests (ms), all on the same requests (CPU time from /proc; etcd-gw runs inside etcd):',
    eline(etcdHeader),
    ...etcdRows.map(eline),
    '',
    'ours: this gateway (child process), etcd-gw: etcd\'s own gateway (<etcd>/v3/...), gRPC: the etcd3 client\'s raw calls',
    '  (EtcdClient.unary, in the load process) with as many concurrent loops as connections: the ceiling ours can reach.',
    'gw CPU ms/1k: user+system CPU of the gateway process per 1,000 requests; gw RSS MiB: its peak RSS during the cell.',
    'mixed: each connection loops over 7 range1, 2 put, 1 txn (70/20/10 %). txn: compare VALUE of one key, then put it.',
    ...(errors.length
      ? errors.map((c) => `errors: ${c.workload} ×${c.connections}: ours ${c.ours.bad}, etcd-gw ${c.theirs.bad}, gRPC ${c.grpc.bad} (non-2xx / connection errors)`)
      : ['errors: none (every answer was 2xx)']),
  ].join('\n');
}

// ---- main ----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const bin = findEtcdBinary();
  if (!bin) throw new Error('no etcd binary: set ETCD_BIN or put etcd on PATH');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-bench-kv-'));
  let etcd: EtcdProcess | undefined;
  let gateway: GatewayProcess | undefined;
  let client: EtcdClient | undefined;
  const overall = setTimeout(() => {
    log(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s; stopping`);
    gateway?.child.kill('SIGKILL');
    etcd?.kill('SIGKILL');
    process.exit(2);
  }, OVERALL_TIMEOUT_MS);
  overall.unref();
  try {
    log(`starting etcd (${bin})`);
    etcd = await startEtcd({ bin, dataDir });
    const etcdPid = etcd.pid;
    if (etcdPid === undefined) throw new Error('etcd has no pid');
    const version = ((await (await fetch(`${etcd.clientUrl}/version`, { signal: AbortSignal.timeout(5_000) })).json()) as { etcdserver: string }).etcdserver;
    client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 10_000 });

    log('seeding');
    await client.unary('KV', 'Put', { key: Buffer.from(ONE_KEY), value: Buffer.from(SMALL_VALUE) }, { idempotent: false });
    await client.unary('KV', 'Put', { key: Buffer.from(CAS_KEY), value: Buffer.from(CAS_VALUE) }, { idempotent: false });
    for (let i = 0; i < 100; i++) {
      await client.unary('KV', 'Put', { key: Buffer.from(`${PREFIX}${String(i).padStart(3, '0')}`), value: Buffer.from(SMALL_VALUE) }, { idempotent: false });
    }

    log('starting the gateway (node dist/src/main.js)');
    gateway = await startGateway(etcd.clientUrl);
    const gw = gateway;
    const etcdGw = etcd.clientUrl;
    await checkGateway('this gateway', gw.url);
    await checkGateway('etcd gateway', etcdGw);

    const cells: Cell[] = [];
    for (const w of SELECTED) {
      log(`${w}: warm-up (${WARMUP_SECONDS} s per target)`);
      await runHttp(gw.url, w, 16, WARMUP_SECONDS);
      await runHttp(etcdGw, w, 16, WARMUP_SECONDS);
      await runGrpc(client, w, 16, WARMUP_SECONDS);
      for (const conns of CONNECTIONS) {
        const c = client;
        log(`${w} ×${conns}: this gateway, etcd gateway, gRPC (${SECONDS} s each)`);
        const ours = await withProcStats([gw.pid, etcdPid], () => runHttp(gw.url, w, conns, SECONDS));
        const theirs = await withProcStats([etcdPid], () => runHttp(etcdGw, w, conns, SECONDS));
        const grpc = await withTimeout('gRPC', runGrpc(c, w, conns, SECONDS), CELL_TIMEOUT_MS);
        const n = ours.result.requests + ours.result.bad;
        const m = theirs.result.requests + theirs.result.bad;
        cells.push({
          workload: w,
          connections: conns,
          ours: ours.result,
          theirs: theirs.result,
          grpc,
          oursCpu: perK(ours.cpuMs[0], n),
          oursEtcdCpu: perK(ours.cpuMs[1], n),
          theirsEtcdCpu: perK(theirs.cpuMs[0], m),
          oursRssMiB: ours.peakRss[0] / 2 ** 20,
          theirsRssMiB: theirs.peakRss[0] / 2 ** 20,
        });
        log(`  ours ${fmtInt(rate(ours.result))}/s, etcd gateway ${fmtInt(rate(theirs.result))}/s, gRPC ${fmtInt(rate(grpc))}/s`);
      }
    }
    process.stdout.write(`${table(cells, version)}\n`);
  } finally {
    client?.close();
    await gateway?.stop();
    await etcd?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    clearTimeout(overall);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
