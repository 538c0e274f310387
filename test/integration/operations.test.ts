// Running the gateway as a service: liveness and readiness, Prometheus metrics that follow the traffic,
// one JSON log line per request without secrets, and a graceful stop that closes WebSockets with 1001
// and loses no acknowledged write.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { wsWatch } from '../support/watch-clients';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { freePort } from '../../src/embedded-etcd/process';

const ROOT = path.resolve(__dirname, '..', '..', '..');

function metricValue(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('probes and metrics', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('answers /healthz always and /readyz when etcd answers', async () => {
    assert.deepEqual((await send(gw.url, '/healthz', undefined, { method: 'GET' })).body, { status: 'ok' });
    const ready = await send(gw.url, '/readyz', undefined, { method: 'GET' });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { ready: true });
  });

  it('reports not ready, quickly, when etcd does not answer', async () => {
    const port = await freePort();
    const down = await startGateway({ etcd: { clientUrl: `http://127.0.0.1:${port}`, cleanup: async () => undefined } as unknown as TestEtcd });
    try {
      const started = Date.now();
      const ready = await send(down.url, '/readyz', undefined, { method: 'GET' });
      assert.equal(ready.status, 503);
      assert.equal(ready.body.ready, false);
      assert.match(ready.body.reason, /etcd unavailable/);
      assert.ok(Date.now() - started < 1500);
      assert.equal((await send(down.url, '/healthz', undefined, { method: 'GET' })).status, 200);
    } finally {
      await down.close();
    }
  });

  it('every answer carries an X-Request-Id: the client\'s, or a new one; unary, errors, streams, probes', async () => {
    const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    const post = (p: string, body: string, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(`${gw.url}${p}`, { method: 'POST', body, headers, signal: AbortSignal.timeout(5_000) });
    const answers: Array<[string, Response]> = [
      ['unary 200', await post('/v3/kv/put', JSON.stringify({ key: b64('rid/a'), value: b64('v') }))],
      ['unary 400', await post('/v3/kv/put', '{"key": 1}')],
      ['etcd error 404', await post('/v3/kv/put', JSON.stringify({ key: b64('rid/b'), value: b64('v'), lease: '987654321' }))],
      ['no such route', await post('/v3/nope', '{}')],
      ['method not allowed', await fetch(`${gw.url}/v3/kv/range`, { signal: AbortSignal.timeout(5_000) })],
      ['keepalive stream', await post('/v3/lease/keepalive', JSON.stringify({ ID: '1' }))],
      ['probe', await fetch(`${gw.url}/health`, { signal: AbortSignal.timeout(5_000) })],
    ];
    for (const [what, answer] of answers) {
      await answer.arrayBuffer();
      assert.match(answer.headers.get('x-request-id') ?? '', UUID, what);
    }
    const watch = new AbortController();
    const stream = await fetch(`${gw.url}/v3/watch`, { method: 'POST', body: JSON.stringify({ create_request: { key: b64('rid/') } }), signal: watch.signal });
    assert.match(stream.headers.get('x-request-id') ?? '', UUID, 'watch stream');
    watch.abort();
    await stream.arrayBuffer().catch(() => undefined);
    const given = await post('/v3/kv/range', JSON.stringify({ key: b64('rid/a') }), { 'X-Request-Id': 'mine-1' });
    assert.equal(given.headers.get('x-request-id'), 'mine-1');
    assert.equal(((await given.json()) as { count: string }).count, '1');
    const ids = answers.map(([, a]) => a.headers.get('x-request-id'));
    assert.equal(new Set(ids).size, ids.length, 'each request its own id');
  });

  it('counts requests by operation and status, etcd calls, connections, watches, events and keepalives', async () => {
    const scrape = async (): Promise<string> => (await fetch(`${gw.url}/metrics`)).text();
    const before = await scrape();
    const puts = metricValue(before, 'gateway_http_requests_total', 'route="KV_Put",method="POST",status="200"') ?? 0;
    for (let i = 0; i < 3; i++) await gw.post('/v3/kv/put', { key: b64(`m/${i}`), value: b64('v') });
    await gw.post('/v3/kv/put', { key: 'bad base64!' });
    // A put that etcd refuses (no such lease: gRPC code 5) is an etcd call that failed.
    const leaseErrors = metricValue(before, 'gateway_etcd_errors_total', 'service="KV",method="Put",code="5"') ?? 0;
    assert.equal((await gw.post('/v3/kv/put', { key: b64('m/leased'), value: b64('v'), lease: '987654321' })).status, 404);
    await gw.post('/v3/lease/grant', { TTL: 30, ID: 4242 });
    await gw.post('/v3/lease/keepalive', { ID: 4242 });
    const w = await wsWatch(gw.wsUrl);
    try {
      w.send({ create_request: { key: b64('m/'), range_end: b64('m0') } });
      await w.take(1);
      await gw.post('/v3/kv/put', { key: b64('m/x'), value: b64('v') });
      await w.take(2);
      const text = await scrape();
      assert.equal(metricValue(text, 'gateway_http_requests_total', 'route="KV_Put",method="POST",status="200"'), puts + 4);
      assert.ok((metricValue(text, 'gateway_http_requests_total', 'route="KV_Put",method="POST",status="400"') ?? 0) >= 1);
      assert.ok((metricValue(text, 'gateway_http_request_duration_seconds_count', 'route="KV_Put"') ?? 0) >= puts + 5);
      assert.ok((metricValue(text, 'gateway_etcd_request_duration_seconds_count', 'service="KV",method="Put",code="0"') ?? 0) >= 4);
      assert.equal(metricValue(text, 'gateway_etcd_errors_total', 'service="KV",method="Put",code="5"'), leaseErrors + 1);
      assert.ok((metricValue(text, 'gateway_etcd_request_duration_seconds_count', 'service="KV",method="Put",code="5"') ?? 0) >= 1);
      assert.equal(metricValue(text, 'gateway_etcd_errors_total', 'service="KV",method="Put",code="0"'), undefined, 'successes are not errors');
      assert.equal(metricValue(text, 'gateway_watches'), 1);
      assert.equal(metricValue(text, 'gateway_websocket_connections'), 1);
      assert.ok((metricValue(text, 'gateway_watch_events_delivered_total') ?? 0) >= 1);
      assert.ok((metricValue(text, 'gateway_lease_keepalives_total') ?? 0) >= 1);
      assert.ok((metricValue(text, 'gateway_open_connections') ?? 0) >= 1);
      assert.ok(metricValue(text, 'process_cpu_user_seconds_total') !== undefined);
    } finally {
      w.close();
    }
    const unknown = await gw.post('/v3/nope/' + 'x'.repeat(50), {});
    assert.equal(unknown.status, 404);
    assert.ok(!(await scrape()).includes('xxxxx'), 'raw paths never become labels');
  });
});

describe('the gateway process', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(() => etcd.cleanup());

  async function startMain(port: number, env: Record<string, string> = {}): Promise<{ child: ChildProcess; output: () => string }> {
    const child = spawn(process.execPath, ['dist/src/main.js'], {
      cwd: ROOT,
      env: { ...process.env, ETCD_ENDPOINTS: etcd.clientUrl, PORT: String(port), LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const deadline = Date.now() + 20_000;
    while (!out.includes('Swagger UI:') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(out.includes('Swagger UI:'), out);
    return { child, output: () => out };
  }

  const exited = (child: ChildProcess): Promise<number | null> =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      const timer = setTimeout(() => reject(new Error('did not exit in time')), 15_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });

  it('logs one JSON line per request, with its id, operation, status and duration, and no secrets', async () => {
    const port = await freePort();
    const { child, output } = await startMain(port);
    try {
      const base = `http://127.0.0.1:${port}`;
      const secretValue = b64('do-not-log-this-value');
      const answer = await send(base, '/v3/kv/put', { key: b64('log/k'), value: secretValue }, { headers: { 'X-Request-Id': 'req-42' } });
      assert.equal(answer.headers.get('x-request-id'), 'req-42');
      await send(base, '/v3/kv/range', { key: b64('log/k') }, { headers: { Authorization: 'secret.token.123' } });
      await new Promise((r) => setTimeout(r, 200));
      const lines = output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      const put = lines.find((l) => l.reqId === 'req-42');
      assert.ok(put, output());
      assert.equal(put.msg, 'request');
      assert.equal(put.route, 'KV_Put');
      assert.equal(put.status, 200);
      assert.equal(typeof put.ms, 'number');
      const range = lines.find((l) => l.route === 'KV_Range');
      assert.equal(range.status, 401);
      assert.match(range.reqId, /^[0-9a-f-]{36}$/);
      assert.ok(!output().includes('secret.token.123'), 'no token in logs');
      assert.ok(!output().includes(secretValue) && !output().includes(b64('log/k')), 'no keys or values in logs');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('stops gracefully: WebSockets closed with 1001, no acknowledged write lost, exit 0', async () => {
    const port = await freePort();
    const { child } = await startMain(port, { SHUTDOWN_GRACE_MS: '5000' });
    const base = `http://127.0.0.1:${port}`;
    const w = await wsWatch(`ws://127.0.0.1:${port}`);
    w.send({ create_request: { key: b64('stop/'), range_end: b64('stop0') } });
    await w.take(1);
    const acked: string[] = [];
    let writing = true;
    const writers = Array.from({ length: 4 }, async (_, n) => {
      for (let i = 0; writing && i < 2000; i++) {
        const key = `stop/${n}/${i}`;
        try {
          const answer = await send(base, '/v3/kv/put', { key: b64(key), value: b64('v') });
          if (answer.status === 200) acked.push(key);
        } catch {
          return; // the gateway stopped accepting: expected
        }
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    const closed = await Promise.race([w.closed, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('socket not closed')), 5000))]);
    assert.equal(closed.code, 1001);
    assert.equal(await exited(child), 0);
    writing = false;
    await Promise.all(writers);
    assert.ok(acked.length > 0, 'some writes were acknowledged');
    for (const key of acked) {
      const found = await send(etcd.clientUrl, '/v3/kv/range', { key: b64(key) });
      assert.equal(found.body.count, '1', `acknowledged write ${key} is in etcd`);
    }
  });
});
