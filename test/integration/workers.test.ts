// WORKERS=2: the start command forks two gateway processes sharing the port. Both serve, /metrics
// counts the requests of both, a WebSocket watch works through a worker, a worker that dies is
// replaced, SIGHUP reaches the workers without stopping anything, and SIGTERM stops them all.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort } from '../../src/embedded-etcd/process';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { b64, send } from '../support/gateway';
import { alive, waitFor } from '../support/waiting';
import { wsWatch } from '../support/watch-clients';

const ROOT = path.resolve(__dirname, '..', '..', '..');

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A POST on a connection of its own, so the primary hands each to a worker in turn. */
function putOnNewConnection(base: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ key: b64(key), value: b64('v') });
    const req = http.request(`${base}/v3/kv/put`, { method: 'POST', agent: false, headers: { connection: 'close' }, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('put timed out')));
    req.end(body);
  });
}

describe('WORKERS=2', () => {
  let etcd: TestEtcd;
  let child: ChildProcess;
  let base: string;
  let output = '';

  before(async () => {
    etcd = await startTestEtcd();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ['dist/src/main.js'], {
      cwd: ROOT,
      env: { ...process.env, ETCD_ENDPOINTS: etcd.clientUrl, HOST: '127.0.0.1', PORT: String(port), WORKERS: '2', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    await waitFor('the gateway to announce itself', () => output.includes('workers:    2') || child.exitCode !== null, 30_000);
    assert.equal(child.exitCode, null, output);
  });

  after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      for (const pid of children(child.pid!)) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await etcd?.cleanup();
  });

  it('runs two workers that both serve, and /metrics counts the requests of both', async () => {
    assert.equal(children(child.pid!).length, 2, 'two worker processes');
    const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => putOnNewConnection(base, `workers/${i}`)));
    assert.deepEqual(statuses, Array(20).fill(200));
    const metrics = await send(base, '/metrics', undefined, { method: 'GET' });
    assert.equal(metrics.status, 200);
    const line = /^gateway_http_requests_total\{route="KV_Put",method="POST",status="200"\} (\d+)$/m.exec(metrics.text);
    assert.ok(line, metrics.text.slice(0, 500));
    assert.equal(Number(line[1]), 20, 'the count of all workers together');
    // Each worker's own registry holds only its share: both took some.
    const range = await send(base, '/v3/kv/range', { key: b64('workers/'), range_end: b64('workers0'), count_only: true });
    assert.equal(range.body.count, '20');
  });

  it('serves a WebSocket watch through a worker', async () => {
    const ws = await wsWatch(base.replace('http', 'ws'), '/v3/watch', { openTimeoutMs: 10_000 });
    try {
      ws.send({ create_request: { key: b64('workers/w') } });
      const [created] = await ws.take(1, 10_000);
      assert.equal(created.result.created, true);
      assert.equal((await send(base, '/v3/kv/put', { key: b64('workers/w'), value: b64('x') })).status, 200);
      const [, event] = await ws.take(2, 10_000); // take(n): the first n messages
      assert.equal(event.result?.events?.[0]?.kv?.value, b64('x'), JSON.stringify(event));
    } finally {
      ws.close();
    }
  });

  it('replaces a worker that dies, and keeps running on SIGHUP', async () => {
    const [victim] = children(child.pid!);
    process.kill(victim, 'SIGKILL');
    await waitFor('a replacement worker', () => {
      const now = children(child.pid!);
      return now.length === 2 && !now.includes(victim);
    }, 15_000);
    await waitFor('both workers serving', async () => (await putOnNewConnection(base, 'workers/after')) === 200, 10_000);
    child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(child.exitCode, null, 'SIGHUP does not stop the gateway');
    assert.equal(children(child.pid!).length, 2);
    assert.equal(await putOnNewConnection(base, 'workers/after-hup'), 200);
  });

  it('stops every worker on SIGTERM and exits 0', async () => {
    const workers = children(child.pid!);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
    assert.equal(code, 0, output);
    await waitFor('the workers to be gone', () => workers.every((pid) => !alive(pid)), 5_000);
  });
});
