// wrk as the benchmark's load generator, where it is installed (Debian: apt-get install wrk). It is C
// with an event loop per thread: at the same rate it takes a fraction of the CPU autocannon (Node) does,
// and on a 2-core machine that CPU comes out of what etcd and the gateway get. One thread, a Lua script
// that loops over the workload's requests (each formatted once), and one JSON line of results from the
// script's `done` hook: completed requests, non-2xx answers, socket errors, and the latency distribution
// as 1,000 quantiles (wrk's Lua API gives percentiles, not its histogram's counts), so that the runs of
// several rounds can be merged into one histogram.

import { spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface WrkRequest {
  method: string;
  path: string;
  body: string;
}

export interface WrkResult {
  /** 2xx answers. */
  ok: number;
  /** Non-2xx answers, and connect/read/write errors and timeouts. */
  bad: number;
  /** Requests answered (2xx or not): the ones the latencies describe. */
  answered: number;
  seconds: number;
  /** The latency at the middle of each 0.1 % of the answered requests, fastest first (QUANTILES of them). */
  quantilesMs: number[];
}

/** Quantiles reported per run: each stands for 0.1 % of its requests. */
export const QUANTILES = 1_000;

/** True when a `wrk` binary answers on PATH. */
export function wrkInstalled(): boolean {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8', timeout: 5_000 });
  return !r.error && /wrk/i.test(`${r.stdout}${r.stderr}`);
}

/** A Lua string literal for `s`: printable ASCII as is, everything else as decimal escapes. */
function lua(s: string): string {
  let out = '"';
  for (const byte of Buffer.from(s, 'utf8')) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\${byte}`;
  }
  return `${out}"`;
}

const MARK = 'WRK_RESULT ';

function script(requests: WrkRequest[], headers: Record<string, string>): string {
  const headerTable = Object.entries(headers)
    .map(([k, v]) => `[${lua(k)}] = ${lua(v)}`)
    .join(', ');
  return [
    `local headers = { ${headerTable} }`,
    'local list = {',
    ...requests.map((r) => `  { ${lua(r.method)}, ${lua(r.path)}, ${lua(r.body)} },`),
    '}',
    'local formatted = {}',
    'local i = 0',
    'init = function(args)',
    '  for n, r in ipairs(list) do formatted[n] = wrk.format(r[1], r[2], headers, r[3]) end',
    'end',
    'request = function()',
    '  i = i % #formatted + 1',
    '  return formatted[i]',
    'end',
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  local q = {}',
    `  for k = 0, ${QUANTILES - 1} do q[k + 1] = string.format('%d', latency:percentile((k + 0.5) * ${100 / QUANTILES})) end`,
    `  io.write(string.format('${MARK}{"requests":%d,"duration_us":%d,"status":%d,"socket":%d,"quantiles_us":[%s]}\\n',`,
    '    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, table.concat(q, ",")))',
    'end',
    '',
  ].join('\n');
}

/** One run of wrk against `baseUrl`; bounded by `timeoutMs` (killed past it). */
export async function runWrk(
  opts: { baseUrl: string; connections: number; seconds: number; requests: WrkRequest[]; headers: Record<string, string>; dir: string; timeoutMs: number },
): Promise<WrkResult> {
  const file = path.join(opts.dir, `wrk-${process.pid}-${Date.now()}.lua`);
  await writeFile(file, script(opts.requests, opts.headers));
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--timeout', '10s', '-s', file, opts.baseUrl];
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  }).finally(() => clearTimeout(timer));
  const line = out.split('\n').find((l) => l.startsWith(MARK));
  if (code !== 0 || !line) throw new Error(`wrk ${args.join(' ')} exited with ${code}: ${err.trim() || out.trim()}`);
  const r = JSON.parse(line.slice(MARK.length)) as { requests: number; duration_us: number; status: number; socket: number; quantiles_us: number[] };
  return {
    ok: r.requests - r.status,
    bad: r.status + r.socket,
    answered: r.requests,
    seconds: r.duration_us / 1e6,
    quantilesMs: r.requests > 0 ? r.quantiles_us.map((us) => us / 1000) : [],
  };
}
