// Soak test: the gateway (its own process, `node dist/src/main.js`) on a fresh etcd under steady mixed
// traffic for a long time, to find what short tests cannot: leaks, lost or repeated watch events,
// keepalives that stop, errors that only come with time.
//
//   npm run soak -- [--minutes 10] [--seconds S] [--rate 200] [--interval 10]
//                   [--ws-watchers 8] [--http-watchers 4] [--leases 6]
//
// Traffic, at a fixed moderate rate (not the maximum): puts, ranges, txns (two puts in one revision) and
// deletes over HTTP keep-alive, on four watched prefixes; WebSocket and HTTP-stream watchers on those
// prefixes, each of which must receive every acknowledged write exactly once, in revision order; leases
// granted through the gateway, half of them kept alive (over HTTP and over a WebSocket) and checked to
// stay alive, half left to expire and checked to be gone with their keys.
//
// Every --interval seconds one line: elapsed time, requests ok and failed by kind, latency p50/p99 of
// that interval, watch events received, the gateway's RSS (/proc/<pid>/status) and V8 heap after a full
// GC (the gateway runs with --expose-gc and bench/heap-probe.js, which collects and reports on SIGUSR2).
// At the end a summary and a verdict on memory, from those per-interval samples: the first third of the
// run is warm-up; the mean of the last third must not exceed the mean of the second third by more than
// max(10 %, 8 MiB) for the heap after GC, and max(10 %, 24 MiB) for RSS (which also holds freed pages
// the allocator keeps). Exit code 1 when a request failed, an event was lost, repeated or out of order,
// a lease misbehaved, the gateway exited, or memory grew past that; 2 when the run itself timed out.

import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { findEtcdBinary, startEtcd, type EtcdProcess } from '../src/embedded-etcd/process';
import { LatencyHistogram } from './histogram';
import { heapAfterGc, makeLog, procSample, runMain, sleep, startGatewayProcess, withTimeout, type GatewayProcess } from './setup';

const log = makeLog('soak');

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    rate: { type: 'string' },
    interval: { type: 'string' },
    'ws-watchers': { type: 'string' },
    'http-watchers': { type: 'string' },
    leases: { type: 'string' },
  },
});

function nonNegative(name: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: expected a number ≥ 0, got "${raw}"`);
  return n;
}

const DURATION_S = args.minutes === undefined && args.seconds === undefined ? 600 : nonNegative('minutes', args.minutes, 0) * 60 + nonNegative('seconds', args.seconds, 0);
if (DURATION_S < 10) throw new Error('the run must last at least 10 seconds');
const RATE = nonNegative('rate', args.rate, 200);
const INTERVAL_S = Math.max(1, nonNegative('interval', args.interval, 10));
const WS_WATCHERS = Math.floor(nonNegative('ws-watchers', args['ws-watchers'], 8));
const HTTP_WATCHERS = Math.floor(nonNegative('http-watchers', args['http-watchers'], 4));
const LEASES = Math.max(2, Math.floor(nonNegative('leases', args.leases, 6)));
const PREFIXES = ['soak/w/0/', 'soak/w/1/', 'soak/w/2/', 'soak/w/3/'];
const KEYS_PER_PREFIX = 200;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_IN_FLIGHT = 256;
const LEASE_TTL_S = 6;
const DRAIN_MS = 30_000;
const OVERALL_TIMEOUT_MS = (DURATION_S + 180) * 1_000;

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const prefixEnd = (p: string): string => {
  const b = Buffer.from(p);
  b[b.length - 1]++;
  return b64(b);
};
const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
const clock = (ms: number): string => {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};

// ---- requests -------------------------------------------------------------------------------------------

type Kind = 'put' | 'range' | 'txn' | 'delete' | 'lease-grant' | 'lease-put' | 'keepalive' | 'timetolive' | 'revoke';

class Stats {
  ok = new Map<string, number>();
  errors = new Map<string, number>();
  errorSamples: string[] = [];
  hist = new LatencyHistogram();

  count(kind: string, ok: boolean, ms?: number, why?: string): void {
    const m = ok ? this.ok : this.errors;
    m.set(kind, (m.get(kind) ?? 0) + 1);
    if (ms !== undefined) this.hist.add(ms);
    if (!ok && why && this.errorSamples.length < 20) this.errorSamples.push(`${kind}: ${why}`);
  }

  get errorCount(): number {
    return [...this.errors.values()].reduce((a, b) => a + b, 0);
  }
}

const total = new Stats();
let interval = new Stats();

// Idle sockets are dropped after 4 s, before the gateway's keep-alive timeout (5 s) closes them: else a
// request can be sent on a socket the gateway is closing at that moment (ECONNRESET, the client's race).
const agent = new http.Agent({ keepAlive: true, maxSockets: 16, timeout: 4_000 });

/** POSTs JSON through the gateway; resolves with the answer, or undefined (counted as an error). */
function call(url: string, kind: Kind, route: string, body: unknown): Promise<Record<string, unknown> | undefined> {
  const text = JSON.stringify(body);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const fail = (why: string): void => {
      total.count(kind, false, undefined, why);
      interval.count(kind, false, undefined, why);
      resolve(undefined);
    };
    const req = http.request(
      `${url}${route}`,
      { method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        let out = '';
        res.on('data', (d: Buffer) => (out += d.toString()));
        res.on('end', () => {
          const ms = performance.now() - t0;
          if (res.statusCode !== 200) return fail(`HTTP ${res.statusCode} ${out.slice(0, 200)}`);
          let json: Record<string, unknown>;
          try {
            json = JSON.parse(out.split('\n')[0]) as Record<string, unknown>;
          } catch {
            return fail(`not JSON: ${out.slice(0, 200)}`);
          }
          total.count(kind, true, ms);
          interval.count(kind, true, ms);
          resolve(json);
        });
        res.on('error', (e) => fail(e.message));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (e) => fail(e.message));
    req.end(text);
  });
}

// ---- watchers ---------------------------------------------------------------------------------------------

interface Event {
  rev: number;
  key: string;
  del: boolean;
}

interface Watcher {
  name: string;
  prefix: string;
  events: Event[];
  /** Events out of order or repeated, seen as they arrive. */
  disorder: string[];
  closed: boolean;
  created: Promise<void>;
  close(): void;
}

interface WatchMessage {
  result?: { created?: boolean; canceled?: boolean; events?: Array<{ type?: string; kv: { key: string; mod_revision: string } }> };
  error?: unknown;
}

function makeWatcher(name: string, prefix: string): { w: Watcher; onMessage(m: WatchMessage): void } {
  let created: () => void = () => undefined;
  const w: Watcher = {
    name,
    prefix,
    events: [],
    disorder: [],
    closed: false,
    created: new Promise<void>((r) => (created = r)),
    close: () => undefined,
  };
  let keysAtLast = new Set<string>();
  const onMessage = (m: WatchMessage): void => {
    if (m.error || m.result?.canceled) w.disorder.push(`stream message ${JSON.stringify(m).slice(0, 200)}`);
    if (m.result?.created) created();
    for (const e of m.result?.events ?? []) {
      const ev = { rev: Number(e.kv.mod_revision), key: Buffer.from(e.kv.key, 'base64').toString(), del: e.type === 'DELETE' };
      const last = w.events[w.events.length - 1];
      if (last && ev.rev < last.rev) {
        if (w.disorder.length < 10) w.disorder.push(`${ev.rev} ${ev.key} after ${last.rev} ${last.key}`);
      } else if (last && ev.rev === last.rev && keysAtLast.has(ev.key)) {
        if (w.disorder.length < 10) w.disorder.push(`${ev.rev} ${ev.key} twice`);
      }
      if (!last || ev.rev !== last.rev) keysAtLast = new Set();
      keysAtLast.add(ev.key);
      w.events.push(ev);
    }
  };
  return { w, onMessage };
}

function wsWatcher(wsUrl: string, name: string, prefix: string): Watcher {
  const { w, onMessage } = makeWatcher(name, prefix);
  const ws = new WebSocket(`${wsUrl}/v3/watch`);
  ws.on('open', () => ws.send(JSON.stringify({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix) } })));
  ws.on('message', (data: Buffer) => onMessage(JSON.parse(data.toString()) as WatchMessage));
  ws.on('close', (code) => {
    if (!w.closed) w.disorder.push(`WebSocket closed by the gateway (${code})`);
    w.closed = true;
  });
  ws.on('error', (e) => w.disorder.push(`WebSocket error: ${e.message}`));
  w.close = () => {
    w.closed = true;
    ws.close(1000);
  };
  return w;
}

function httpWatcher(url: string, name: string, prefix: string): Watcher {
  const { w, onMessage } = makeWatcher(name, prefix);
  const req = http.request(`${url}/v3/watch`, { method: 'POST', agent: false }, (res) => {
    let buf = '';
    res.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) onMessage(JSON.parse(l) as WatchMessage);
    });
    res.on('close', () => {
      if (!w.closed) w.disorder.push('HTTP watch stream ended by the gateway');
      w.closed = true;
    });
  });
  req.on('error', (e) => {
    if (!w.closed) w.disorder.push(`HTTP watch error: ${e.message}`);
  });
  req.end(JSON.stringify({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix) } }));
  w.close = () => {
    w.closed = true;
    req.destroy();
  };
  return w;
}

// ---- traffic ----------------------------------------------------------------------------------------------

/** Acknowledged writes on the watched prefixes: what every watcher of the prefix must receive. */
const acknowledged = new Map<string, Event[]>(PREFIXES.map((p) => [p, []]));
/** Writes whose outcome is unknown (an error answer): they may or may not have happened. */
let uncertainWrites = 0;
const prefixOf = (key: string): string => PREFIXES.find((p) => key.startsWith(p))!;
const revisionOf = (answer: Record<string, unknown>): number => Number((answer.header as { revision: string }).revision);

let opCounter = 0;
function pickKey(): string {
  const p = PREFIXES[opCounter % PREFIXES.length];
  return `${p}${Math.floor(Math.random() * KEYS_PER_PREFIX)}`;
}

async function oneOperation(url: string): Promise<void> {
  const n = opCounter++;
  const r = n % 10;
  if (r < 4) {
    const key = pickKey();
    const a = await call(url, 'put', '/v3/kv/put', { key: b64(key), value: b64(`v${n}`) });
    if (a) acknowledged.get(prefixOf(key))!.push({ rev: revisionOf(a), key, del: false });
    else uncertainWrites++;
  } else if (r < 8) {
    const p = PREFIXES[n % PREFIXES.length];
    await call(url, 'range', '/v3/kv/range', r === 7 ? { key: b64(p), range_end: prefixEnd(p), count_only: true } : { key: b64(pickKey()) });
  } else if (r === 8) {
    // Two puts in one transaction: two events with the same revision.
    const p = PREFIXES[n % PREFIXES.length];
    const [k1, k2] = [`${p}txn-a`, `${p}txn-b`];
    const a = await call(url, 'txn', '/v3/kv/txn', {
      compare: [{ key: b64(k1), target: 'MOD', result: 'LESS', mod_revision: '9223372036854775807' }],
      success: [{ request_put: { key: b64(k1), value: b64(`t${n}`) } }, { request_put: { key: b64(k2), value: b64(`t${n}`) } }],
      failure: [{ request_put: { key: b64(k1), value: b64(`t${n}`) } }, { request_put: { key: b64(k2), value: b64(`t${n}`) } }],
    });
    if (a) acknowledged.get(p)!.push({ rev: revisionOf(a), key: k1, del: false }, { rev: revisionOf(a), key: k2, del: false });
    else uncertainWrites++;
  } else {
    const key = pickKey();
    const a = await call(url, 'delete', '/v3/kv/deleterange', { key: b64(key) });
    if (a && Number(a.deleted ?? 0) > 0) acknowledged.get(prefixOf(key))!.push({ rev: revisionOf(a), key, del: true });
    else if (!a) uncertainWrites++;
  }
}

/** Runs `fn` `rate` times a second until `endAt`, never more than MAX_IN_FLIGHT at once (a tick that
 *  finds them all busy is counted as an error: the gateway is not keeping up with a moderate rate). */
async function steady(rate: number, endAt: number, fn: () => Promise<void>): Promise<void> {
  const started = performance.now();
  let issued = 0;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();
  while (Date.now() < endAt) {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (issued < due) {
      issued++;
      if (inFlight >= MAX_IN_FLIGHT) {
        total.count('skipped (overload)', false, undefined, `${MAX_IN_FLIGHT} requests in flight`);
        interval.count('skipped (overload)', false);
        continue;
      }
      inFlight++;
      const p = fn().finally(() => {
        inFlight--;
        pending.delete(p);
      });
      pending.add(p);
    }
    await sleep(10);
  }
  await Promise.all(pending);
}

// ---- leases -------------------------------------------------------------------------------------------------

interface Lease {
  id: string;
  key: string;
  kept: boolean;
  grantedAt: number;
}

const leaseProblems: string[] = [];

/** Grants leases with a key on each; keeps half alive (over HTTP, or over one WebSocket), lets the other
 *  half expire; checks both kinds. */
async function leaseLoop(url: string, wsUrl: string, endAt: number): Promise<{ kept: number; expired: number }> {
  const live: Lease[] = [];
  const expiring: Lease[] = [];
  let kept = 0;
  let expired = 0;
  let n = 0;
  const ws = new WebSocket(`${wsUrl}/v3/lease/keepalive`);
  let wsAnswers = 0;
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString()) as { result?: { TTL?: string }; error?: unknown };
    if (m.error || Number(m.result?.TTL ?? 0) <= 0) leaseProblems.push(`WebSocket keepalive answered ${d.toString().slice(0, 200)}`);
    wsAnswers++;
  });
  ws.on('error', (e) => leaseProblems.push(`keepalive WebSocket: ${e.message}`));
  await new Promise<void>((resolve) => ws.once('open', () => resolve()));
  let wsSent = 0;
  try {
    while (Date.now() < endAt) {
      // Top up the leases; every other one is left to expire.
      while (live.length + expiring.length < LEASES) {
        const keep = live.length < LEASES / 2;
        const g = await call(url, 'lease-grant', '/v3/lease/grant', { TTL: LEASE_TTL_S });
        if (!g) break;
        const key = `soak/lease/${n++}`;
        const lease = { id: String(g.ID), key, kept: keep, grantedAt: Date.now() };
        await call(url, 'lease-put', '/v3/kv/put', { key: b64(key), value: b64('x'), lease: lease.id });
        (keep ? live : expiring).push(lease);
      }
      // Keep the live ones alive: half over HTTP, half over the WebSocket.
      for (const [i, l] of live.entries()) {
        if (i % 2 === 0) {
          const a = await call(url, 'keepalive', '/v3/lease/keepalive', { ID: l.id });
          const ttl = Number((a?.result as { TTL?: string } | undefined)?.TTL ?? 0);
          if (a && ttl <= 0) leaseProblems.push(`lease ${l.id} kept alive over HTTP but gone (TTL ${ttl})`);
        } else if (ws.readyState === ws.OPEN) {
          ws.send(JSON.stringify({ ID: l.id }));
          wsSent++;
        }
      }
      // Check the others: gone, with their key, once their TTL has passed (plus etcd's slack).
      for (const l of [...expiring]) {
        if (Date.now() - l.grantedAt < (LEASE_TTL_S + 3) * 1000) continue;
        const t = await call(url, 'timetolive', '/v3/lease/timetolive', { ID: l.id });
        const r = await call(url, 'range', '/v3/kv/range', { key: b64(l.key) });
        if (t && Number(t.TTL) !== -1) leaseProblems.push(`lease ${l.id} not kept alive but still there (TTL ${String(t.TTL)})`);
        if (r && r.kvs) leaseProblems.push(`key ${l.key} of expired lease ${l.id} still there`);
        expiring.splice(expiring.indexOf(l), 1);
        expired++;
      }
      // Retire a kept lease after a while (revoke), so the set turns over during the run.
      const old = live.find((l) => Date.now() - l.grantedAt > 60_000);
      if (old) {
        const t = await call(url, 'timetolive', '/v3/lease/timetolive', { ID: old.id });
        if (t && Number(t.TTL) <= 0) leaseProblems.push(`kept lease ${old.id} expired (TTL ${String(t.TTL)})`);
        await call(url, 'revoke', '/v3/lease/revoke', { ID: old.id });
        live.splice(live.indexOf(old), 1);
        kept++;
      }
      await sleep(1_000);
    }
  } finally {
    for (const l of live) await call(url, 'revoke', '/v3/lease/revoke', { ID: l.id });
    await sleep(500);
    if (wsAnswers < wsSent) leaseProblems.push(`WebSocket keepalive: ${wsAnswers} answers to ${wsSent} renewals`);
    ws.close(1000);
  }
  return { kept: kept + live.length, expired };
}

// ---- memory -------------------------------------------------------------------------------------------------

interface MemSample {
  t: number;
  rss: number;
  heap: number;
}

async function gatewayMemory(gw: GatewayProcess): Promise<{ rss: number; heap: number }> {
  const { heapUsed } = await heapAfterGc(gw);
  const { rssBytes } = await procSample(gw.pid);
  return { rss: rssBytes, heap: heapUsed };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

function memoryVerdict(samples: MemSample[]): { ok: boolean; lines: string[] } {
  const third = Math.floor(samples.length / 3);
  const second = samples.slice(third, 2 * third);
  const last = samples.slice(2 * third);
  const check = (name: string, pick: (s: MemSample) => number, pct: number, floorMiB: number): { ok: boolean; line: string } => {
    const a = mean(second.map(pick));
    const b = mean(last.map(pick));
    const allowed = Math.max(a * pct, floorMiB * 2 ** 20);
    const ok = second.length > 0 && b - a <= allowed;
    return {
      ok,
      line:
        `${name}: mean ${mib(a)} in the second third, ${mib(b)} in the last (${b >= a ? '+' : ''}${mib(b - a)}; ` +
        `allowed +${mib(allowed)} = max(${pct * 100} %, ${floorMiB} MiB)) → ${ok ? 'flat' : 'GROWING'}`,
    };
  };
  const heap = check('gateway heap after GC', (s) => s.heap, 0.1, 8);
  const rss = check('gateway RSS', (s) => s.rss, 0.1, 24);
  return {
    ok: rss.ok && heap.ok,
    lines: [`memory (first third = warm-up; ${samples.length} samples, one per interval):`, `  ${heap.line}`, `  ${rss.line}`],
  };
}

// ---- main -----------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const bin = findEtcdBinary();
  if (!bin) throw new Error('no etcd binary: set ETCD_BIN or put etcd on PATH');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-soak-'));
  let etcd: EtcdProcess | undefined;
  let gw: GatewayProcess | undefined;
  const watchers: Watcher[] = [];
  const overall = setTimeout(() => {
    log(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s; stopping`);
    gw?.child.kill('SIGKILL');
    etcd?.kill('SIGKILL');
    process.exit(2);
  }, OVERALL_TIMEOUT_MS);
  overall.unref();
  try {
    log(`starting etcd (${bin})`);
    etcd = await startEtcd({ bin, dataDir });
    log('starting the gateway (node dist/src/main.js)');
    gw = await startGatewayProcess({ etcdUrl: etcd.clientUrl, heapProbe: true });
    const { url, wsUrl } = gw;

    for (let i = 0; i < WS_WATCHERS; i++) watchers.push(wsWatcher(wsUrl, `ws${i}`, PREFIXES[i % PREFIXES.length]));
    for (let i = 0; i < HTTP_WATCHERS; i++) watchers.push(httpWatcher(url, `http${i}`, PREFIXES[i % PREFIXES.length]));
    await withTimeout('watchers created', Promise.all(watchers.map((w) => w.created)), 30_000);

    const cpus = os.cpus();
    process.stdout.write(
      `soak: ${clock(DURATION_S * 1000)} at ${RATE} KV req/s (40 % put, 40 % range, 10 % txn, 10 % delete) on ${PREFIXES.length} prefixes, ` +
        `${WS_WATCHERS} WebSocket + ${HTTP_WATCHERS} HTTP watchers, ${LEASES} leases (TTL ${LEASE_TTL_S} s, half kept alive); ` +
        `${cpus.length} × ${cpus[0]?.model ?? 'CPU'}, node ${process.version}\n`,
    );

    const started = Date.now();
    const endAt = started + DURATION_S * 1000;
    const memory: MemSample[] = [];
    let lastEvents = 0;
    const eventsNow = (): number => watchers.reduce((a, w) => a + w.events.length, 0);
    const report = async (): Promise<void> => {
      const s = interval;
      interval = new Stats();
      const events = eventsNow();
      const t = Date.now() - started;
      const m = await gatewayMemory(gw!).catch((e: unknown) => {
        log(`memory sample failed: ${(e as Error).message}`);
        return undefined;
      });
      if (m) memory.push({ t, ...m });
      const kinds = (map: Map<string, number>): string => [...map].sort().map(([k, v]) => `${k} ${v}`).join(', ') || '0';
      process.stdout.write(
        `${clock(t)}  ok: ${kinds(s.ok)} | errors: ${kinds(s.errors)} | ` +
          `p50 ${s.hist.percentile(0.5).toFixed(1)} ms, p99 ${s.hist.percentile(0.99).toFixed(1)} ms | ` +
          `watch events ${(events - lastEvents).toLocaleString('en-US')} | gateway RSS ${m ? mib(m.rss) : '?'}, heap after GC ${m ? mib(m.heap) : '?'}\n`,
      );
      lastEvents = events;
    };
    let reporting = Promise.resolve();
    const reporter = setInterval(() => {
      reporting = reporting.then(report);
    }, INTERVAL_S * 1000);

    let leases: { kept: number; expired: number };
    try {
      [, leases] = await Promise.all([steady(RATE, endAt, () => oneOperation(url)), leaseLoop(url, wsUrl, endAt)]);
    } finally {
      clearInterval(reporter);
      await reporting;
    }

    // Every acknowledged write, once, in order, on every watcher of its prefix.
    const expected = new Map([...acknowledged].map(([p, evs]) => [p, [...evs].sort((a, b) => a.rev - b.rev || a.key.localeCompare(b.key))]));
    const drainUntil = Date.now() + DRAIN_MS;
    while (Date.now() < drainUntil && watchers.some((w) => w.events.length < expected.get(w.prefix)!.length)) await sleep(100);
    const watchProblems: string[] = [];
    for (const w of watchers) {
      const want = expected.get(w.prefix)!;
      const got = [...w.events].sort((a, b) => a.rev - b.rev || a.key.localeCompare(b.key));
      const sameSet = got.length === want.length && got.every((e, i) => e.rev === want[i].rev && e.key === want[i].key && e.del === want[i].del);
      if (!sameSet || w.disorder.length) {
        const wantSet = new Set(want.map((e) => `${e.rev} ${e.key}`));
        const gotSet = new Set(got.map((e) => `${e.rev} ${e.key}`));
        const missing = want.filter((e) => !gotSet.has(`${e.rev} ${e.key}`)).slice(0, 3);
        const extra = got.filter((e) => !wantSet.has(`${e.rev} ${e.key}`)).slice(0, 3);
        watchProblems.push(
          `${w.name} (${w.prefix}): ${got.length} events of ${want.length}; missing ${JSON.stringify(missing)}; unexpected ${JSON.stringify(extra)}; ${w.disorder.slice(0, 3).join('; ')}`,
        );
      }
    }
    for (const w of watchers) w.close();

    const verdict = memoryVerdict(memory);
    const exited = gw.exit();
    const elapsed = Date.now() - started;
    const requests = [...total.ok.values()].reduce((a, b) => a + b, 0);
    const lines = [
      '',
      `summary after ${clock(elapsed)}: ${requests.toLocaleString('en-US')} requests ok (${(requests / (elapsed / 1000)).toFixed(0)}/s), ${total.errorCount} failed; ` +
        `latency p50 ${total.hist.percentile(0.5).toFixed(1)} ms, p99 ${total.hist.percentile(0.99).toFixed(1)} ms, max ${total.hist.maxMs.toFixed(0)} ms`,
      `  ok by kind: ${[...total.ok].sort().map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`).join(', ')}`,
      ...(total.errorCount ? [`  failed by kind: ${[...total.errors].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`, ...total.errorSamples.map((s) => `    ${s}`)] : []),
      `watch: ${watchers.length} watchers received ${eventsNow().toLocaleString('en-US')} events for ${[...acknowledged.values()].reduce((a, e) => a + e.length, 0).toLocaleString('en-US')} acknowledged writes; ` +
        (watchProblems.length ? `${watchProblems.length} watchers WRONG` : 'every watcher got every write of its prefix exactly once, in order'),
      ...watchProblems.map((p) => `  ${p}`),
      ...(uncertainWrites ? [`  ${uncertainWrites} writes failed, so their events could not be checked`] : []),
      `leases: ${leases.kept} kept alive (over HTTP and WebSocket) and revoked, ${leases.expired} left to expire and checked gone; ` +
        (leaseProblems.length ? `${leaseProblems.length} problems` : 'no problem'),
      ...leaseProblems.slice(0, 10).map((p) => `  ${p}`),
      ...verdict.lines,
      ...(exited ? [`the gateway EXITED (${exited.signal ?? exited.code})`] : []),
    ];
    const ok = total.errorCount === 0 && watchProblems.length === 0 && uncertainWrites === 0 && leaseProblems.length === 0 && verdict.ok && !exited;
    lines.push(`verdict: ${ok ? 'PASS' : 'FAIL'}`);
    process.stdout.write(`${lines.join('\n')}\n`);
    return ok ? 0 : 1;
  } finally {
    for (const w of watchers) if (!w.closed) w.close();
    agent.destroy();
    await gw?.stop(15_000);
    await etcd?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    clearTimeout(overall);
  }
}

runMain('soak', main);
