// The benchmark's own parts: latency distributions merged across rounds (wrk reports each round as
// quantiles), and one short run of `npm run bench`'s script end to end, so a change that breaks the
// benchmark is found by the suite and not at the next measurement.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { LatencyHistogram } from '../../bench/histogram';
import { QUANTILES } from '../../bench/wrk';

/** The latency at the middle of each 1/QUANTILES of `samples`, as wrk's script reports them. */
function quantiles(samples: number[]): number[] {
  const sorted = [...samples].sort((a, b) => a - b);
  return Array.from({ length: QUANTILES }, (_, k) => sorted[Math.min(sorted.length - 1, Math.floor(((k + 0.5) / QUANTILES) * sorted.length))]);
}

/** Runs one of the bench scripts to its end (bounded: killed after 150 s); its output, stdout and stderr. */
async function runBench(script: string, args: string[]): Promise<string> {
  const child = spawn(process.execPath, [path.resolve(__dirname, '..', '..', 'bench', script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve)).finally(() => clearTimeout(timer));
  assert.equal(code, 0, out);
  return out;
}

describe('bench', () => {
  it('merges rounds reported as quantiles into the distribution of all their requests', () => {
    // A fast round and a slow one of different sizes: the merged p50 and p99 are those of all samples
    // together, which neither round's own percentiles nor their mean give.
    const fast = Array.from({ length: 30_000 }, (_, i) => 1 + (i % 1000) / 1000); // 1-2 ms
    const slow = Array.from({ length: 10_000 }, (_, i) => 10 + (i % 1000) / 100); // 10-20 ms
    const exact = new LatencyHistogram();
    for (const ms of [...fast, ...slow]) exact.add(ms);
    const merged = new LatencyHistogram();
    for (const round of [fast, slow]) {
      const one = new LatencyHistogram();
      for (const ms of quantiles(round)) one.add(ms, round.length / QUANTILES);
      merged.merge(one.toJSON());
    }
    assert.equal(merged.count, 40_000);
    for (const q of [0.25, 0.5, 0.75, 0.9, 0.99]) {
      const want = exact.percentile(q);
      assert.ok(Math.abs(merged.percentile(q) / want - 1) < 0.02, `p${q * 100}: ${merged.percentile(q)} against ${want}`);
    }
    assert.ok(merged.percentile(0.5) < 2 && merged.percentile(0.9) > 10, 'three quarters of the requests are the fast ones');
  });

  it('runs end to end: every target measured, ratios printed, no failed request', async () => {
    const out = await runBench('kv.js', ['--workloads', 'range1,put', '--connections', '2', '--seconds', '2', '--workers', '1', '--loader', 'autocannon']);
    assert.match(out, /2 rounds of 1 s, targets alternated/);
    for (const w of ['range1', 'put']) {
      // workload, conns, workers, our req/s, p50, p99, etcd-gw req/s, p50, p99, ratio, p99 ratio, CPU, RSS
      const row = new RegExp(`^${w} +2 +1 +([\\d,]+) +([\\d.]+) +([\\d.]+) +([\\d,]+) +([\\d.]+) +([\\d.]+) +([\\d.]+)× +([\\d.]+)× +([\\d.]+) +(\\d+)$`, 'm').exec(out);
      assert.ok(row, `no result row for ${w}:\n${out}`);
      const [ours, theirs] = [Number(row[1].replace(/,/g, '')), Number(row[4].replace(/,/g, ''))];
      assert.ok(ours > 0 && theirs > 0, `${w}: ${ours} and ${theirs} req/s`);
      assert.ok(Math.abs(Number(row[7]) - ours / theirs) < 0.01, `${w}: the ratio ${row[7]} is ${ours}/${theirs}`);
      assert.ok(Number(row[2]) <= Number(row[3]) && Number(row[5]) <= Number(row[6]), `${w}: p50 above p99`);
    }
    assert.match(out, /errors: none \(every answer was 2xx\)/);
  });

  it('bench:watch runs end to end: this gateway, the floor and etcd\'s gateway, every event delivered in order', { timeout: 180_000 }, async () => {
    const run = (extra: string[]): Promise<string> => runBench('watch.js', ['--watchers', '40', '--rates', '20', '--seconds', '1', '--sse', 'off', ...extra]);
    const all = await run(['--target', 'all']);
    assert.match(all, /^ +this gateway +floor +etcd gateway +ratio$/m, all);
    // 20 puts/s for 1 s, each to all 40 watchers, through each of the three.
    assert.match(all, /^events expected \/ delivered +800 \/ 800 +800 \/ 800 +800 \/ 800 +1\.00x$/m, all);
    assert.match(all, /^events out of order +0 +0 +0 *$/m, all);
    assert.match(all, /^error answers \/ server closes +0 \/ 0 +0 \/ 0 +0 \/ 0/m, all);
    assert.match(all, /a minimal WebSocket reader of the bench's own/);
    // The ws package as the client, on keys of their own (no sharing possible).
    const ws = await run(['--target', 'gateway', '--client', 'ws', '--keys', 'distinct']);
    assert.match(ws, /watchers in 1 client process\(es\) \(the ws package\)/);
    assert.match(ws, /^events expected \/ delivered +20 \/ 20 *$/m, ws);
  });
});
