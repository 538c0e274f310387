// Headless Chromium's own EventSource (Debian's chromium, driven by playwright-core) on a page from
// another origin (CORS), watching through a front proxy that stands for a load balancer. The gateway
// behind it is stopped (SIGTERM: its streams end) while writes go on, and a second gateway process on
// another port takes its place; later that one stops and the first is started again. The browser
// reconnects by itself each time and ends with exactly etcd's history: every event once, in order.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { b64, send } from '../support/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { startGatewayProcess, type GatewayProcess } from '../../bench/setup';
import { etcdHistory, fmt, waitForAsync } from '../support/watch-history';

const CHROMIUM = '/usr/bin/chromium';

interface Seen {
  type: string;
  id: string;
  key?: string;
  mod_revision?: number;
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>watch</title><script>
  window.seen = []; window.opens = 0;
  const source = new EventSource(new URLSearchParams(location.search).get('watch'));
  source.onopen = () => window.opens++;
  for (const type of ['put', 'delete', 'progress']) {
    source.addEventListener(type, (e) => window.seen.push({ type, id: e.lastEventId, ...JSON.parse(e.data) }));
  }
</script>`;

describe('Chromium EventSource across gateway restarts and replicas', { timeout: 180_000 }, () => {
  let etcd: TestEtcd;
  let front: TcpProxy;
  let pageServer: http.Server;
  let pageOrigin: string;
  let browser: Browser;
  let page: Page;
  const gateways: GatewayProcess[] = [];

  const startGateway = async (): Promise<GatewayProcess> => {
    const gw = await startGatewayProcess({ etcdUrl: etcd.clientUrl, env: { CORS_ORIGINS: pageOrigin, SHUTDOWN_GRACE_MS: '2000' } });
    gateways.push(gw);
    return gw;
  };
  const portOf = (gw: GatewayProcess): { host: string; port: number } => ({ host: '127.0.0.1', port: Number(new URL(gw.url).port) });
  const put = async (gw: GatewayProcess, key: string, value: string): Promise<number> => {
    const answer = await send(gw.url, '/v3/kv/put', { key: b64(key), value: b64(value) });
    assert.equal(answer.status, 200, answer.text);
    return Number(answer.body.header.revision);
  };
  const txn = async (gw: GatewayProcess, keys: string[]): Promise<number> => {
    const answer = await send(gw.url, '/v3/kv/txn', { success: keys.map((k) => ({ request_put: { key: b64(k), value: b64('t') } })) });
    assert.equal(answer.status, 200, answer.text);
    return Number(answer.body.header.revision);
  };
  /** What the page has seen, as of the last look (for failure messages). */
  let lastLook: Seen[] = [];
  const seen = async (): Promise<Seen[]> => (lastLook = await page.evaluate<Seen[]>('window.seen'));
  const opens = (): Promise<number> => page.evaluate<number>('window.opens');
  const putsSeen = async (): Promise<Seen[]> => (await seen()).filter((s) => s.type === 'put' || s.type === 'delete');

  before(async () => {
    etcd = await startTestEtcd();
    pageServer = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    });
    await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking'] });
  });

  after(async () => {
    await browser?.close();
    for (const gw of gateways) await gw.stop();
    await front?.close();
    await new Promise<void>((resolve) => pageServer.close(() => resolve()));
    await etcd.cleanup();
  });

  it('reconnects by itself and gets exactly the missed events, once, in order', async () => {
    const a = await startGateway();
    front = await startTcpProxy(portOf(a));
    page = await browser.newPage();
    await page.goto(`${pageOrigin}/?watch=${encodeURIComponent(`${front.url}/v1/watch/web/?prefix`)}`);
    await waitForAsync(async () => (await seen()).length >= 1, 20_000, () => 'the first progress in the browser');
    const created = (await seen())[0];
    assert.equal(created.type, 'progress');

    await put(a, 'web/1', 'a');
    await txn(a, ['web/2', 'web/3']);
    await waitForAsync(async () => (await putsSeen()).length >= 3, 20_000, () => 'three events in the browser');

    // Replica A goes away (its SSE streams end) and B, on another port, takes the traffic; writes
    // happen while the browser is between the two.
    front.pause();
    await a.stop();
    const b = await startGateway();
    await put(b, 'web/4', 'b');
    await txn(b, ['web/5', 'web/6', 'web/7']);
    front.retarget(portOf(b));
    front.resume();
    await put(b, 'web/8', 'b');
    await waitForAsync(async () => (await putsSeen()).length >= 8, 30_000, () => `the missed events (${JSON.stringify(lastLook)})`);

    // B is restarted as a new process on yet another port: the same again.
    front.pause();
    await b.stop();
    const c = await startGateway();
    const last = await txn(c, ['web/9', 'web/10']);
    front.retarget(portOf(c));
    front.resume();
    await waitForAsync(async () => (await putsSeen()).length >= 10, 30_000, () => `the events after the restart (${JSON.stringify(lastLook)})`);
    assert.ok((await opens()) >= 3, 'the browser opened the stream three times');

    const truth = await etcdHistory(etcd, 'web/', Number(created.id) + 1, last);
    const got = await putsSeen();
    assert.deepEqual(
      got.map((s) => fmt({ key: s.key ?? '', rev: Number(s.mod_revision), type: s.type === 'put' ? 'PUT' : 'DELETE' })),
      truth.map(fmt),
      'the browser saw exactly etcd history',
    );
    assert.equal(new Set(got.map((s) => s.id)).size, got.length, 'every id once');
  });
});
