import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  EtcdMissingError,
  ensureEtcdBinary,
  findEtcdBinary,
  freePort,
  startEmbeddedEtcd,
  type EtcdProcess,
} from '../../src/embedded-etcd/process';
import { startTestEtcd, startTestEtcdCluster } from '../support/etcd';

const TEST_TIMEOUT = 60_000;

async function postJson(url: string, body: unknown, timeoutMs = 5_000): Promise<Record<string, unknown>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  assert.equal(res.status, 200, `POST ${url} → ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}

async function health(etcd: EtcdProcess, timeoutMs = 5_000): Promise<unknown> {
  const res = await fetch(`${etcd.clientUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
  return res.json();
}

// base64("foo") / base64("bar"), as etcd's JSON gateway encodes bytes.
const FOO = 'Zm9v';
const BAR = 'YmFy';

async function putFoo(etcd: EtcdProcess): Promise<void> {
  await postJson(`${etcd.clientUrl}/v3/kv/put`, { key: FOO, value: BAR });
}

async function readFoo(etcd: EtcdProcess): Promise<unknown> {
  const res = (await postJson(`${etcd.clientUrl}/v3/kv/range`, { key: FOO })) as { kvs?: { value?: string }[] };
  return res.kvs?.[0]?.value;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

describe('etcd process', () => {
  test('start, write, restart keeps data, stop removes the process', { timeout: TEST_TIMEOUT }, async () => {
    const t0 = Date.now();
    const etcd = await startTestEtcd();
    try {
      const startMs = Date.now() - t0;
      assert.ok(startMs < 20_000);
      assert.deepEqual(await health(etcd), { health: 'true' });
      assert.match(etcd.clientUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(etcd.peerUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      await putFoo(etcd);

      const firstPid = etcd.pid;
      const ports = [etcd.clientPort, etcd.peerPort];
      await etcd.restart();
      assert.notEqual(etcd.pid, firstPid);
      assert.deepEqual([etcd.clientPort, etcd.peerPort], ports);
      assert.deepEqual(await health(etcd), { health: 'true' });
      assert.equal(await readFoo(etcd), BAR);

      const pid = etcd.pid;
      assert.ok(pid !== undefined && pidAlive(pid));
      await etcd.stop();
      assert.equal(pidAlive(pid), false);
      assert.equal(etcd.pid, undefined);
      assert.ok(etcd.logs().includes('"level"'), 'zap log lines are captured');
      assert.ok(etcd.logs().split('\n').length <= 200);
    } finally {
      await etcd.cleanup();
    }
  });

  test('a SIGKILLed member comes back with restart()', { timeout: TEST_TIMEOUT }, async () => {
    const etcd = await startTestEtcd();
    try {
      await putFoo(etcd);
      etcd.kill();
      assert.equal(await etcd.waitExit(), null);
      await etcd.restart();
      assert.equal(await readFoo(etcd), BAR);
    } finally {
      await etcd.cleanup();
    }
  });

  test('pause() freezes etcd, resume() brings it back', { timeout: TEST_TIMEOUT }, async () => {
    const etcd = await startTestEtcd();
    try {
      etcd.pause();
      await assert.rejects(health(etcd, 300), (err: Error) => err.name === 'TimeoutError');
      etcd.resume();
      assert.deepEqual(await health(etcd), { health: 'true' });
      etcd.pause();
      // stop() has to cope with a paused process without waiting for the SIGKILL fallback.
      const t0 = Date.now();
      await etcd.stop();
      assert.ok(Date.now() - t0 < 4_000, `stop of a paused etcd took ${Date.now() - t0} ms`);
    } finally {
      await etcd.cleanup();
    }
  });

  test('embedded etcd: data survives restarts, also on different ports', { timeout: TEST_TIMEOUT }, async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'etcd-embedded-'));
    const dataDir = path.join(base, 'data', 'etcd');
    const bin = findEtcdBinary();
    if (!bin) throw new EtcdMissingError();
    const messages: string[] = [];
    const log = (msg: string): void => void messages.push(msg);
    let etcd: EtcdProcess | undefined;
    let blocker: net.Server | undefined;
    try {
      etcd = await startEmbeddedEtcd({ bin, dataDir, log });
      assert.equal(etcd.name, 'default');
      await putFoo(etcd);
      const firstPorts = { clientPort: etcd.clientPort, peerPort: etcd.peerPort };
      await etcd.stop();
      assert.deepEqual(JSON.parse(await readFile(`${dataDir}.ports.json`, 'utf8')), firstPorts);

      etcd = await startEmbeddedEtcd({ bin, dataDir, log });
      assert.deepEqual({ clientPort: etcd.clientPort, peerPort: etcd.peerPort }, firstPorts);
      assert.equal(await readFoo(etcd), BAR);
      await etcd.stop();

      // Occupy the remembered client port so the next start must move to new ports.
      blocker = net.createServer();
      const b = blocker;
      await new Promise<void>((resolve, reject) => {
        b.once('error', reject);
        b.listen(firstPorts.clientPort, '127.0.0.1', resolve);
      });
      etcd = await startEmbeddedEtcd({ bin, dataDir, log });
      assert.notEqual(etcd.clientPort, firstPorts.clientPort);
      assert.equal(await readFoo(etcd), BAR);
      assert.ok(messages.some((m) => m.includes('busy')), messages.join('\n'));
    } finally {
      await etcd?.stop();
      const b = blocker;
      if (b) await new Promise<void>((resolve) => b.close(() => resolve()));
      await rm(base, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    }
  });

  test('a bad ETCD_BIN fails with the install hint', async () => {
    assert.throws(
      () => findEtcdBinary({ ETCD_BIN: '/nonexistent', PATH: process.env.PATH }),
      (err: Error) =>
        err instanceof EtcdMissingError &&
        err.message.includes('apt-get install etcd-server') &&
        err.message.includes('ETCD_BIN') &&
        err.message.includes('/nonexistent'),
    );
  });

  test('binary lookup: PATH search and no install when not asked to', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'etcd-bin-'));
    try {
      const fake = path.join(dir, 'etcd');
      await writeFile(fake, '#!/bin/sh\nexit 0\n');
      await chmod(fake, 0o644);
      assert.equal(findEtcdBinary({ PATH: dir }), undefined, 'non-executable files are skipped');
      await chmod(fake, 0o755);
      assert.equal(findEtcdBinary({ PATH: `/nonexistent${path.delimiter}${dir}` }), fake);
      assert.equal(findEtcdBinary({ PATH: dir, ETCD_BIN: fake }), fake);

      await assert.rejects(
        ensureEtcdBinary({ install: false, log: () => undefined, env: { PATH: '/nonexistent' } }),
        (err: Error) => err instanceof EtcdMissingError && err.message.includes('apt-get install etcd-server'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('ensureEtcdBinary installs through apt-get only when root', { timeout: TEST_TIMEOUT }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'etcd-apt-'));
    try {
      // A stand-in apt-get that "installs" etcd into the only PATH entry, so no network or
      // real package manager is touched.
      const aptGet = path.join(dir, 'apt-get');
      await writeFile(
        aptGet,
        [
          '#!/bin/sh',
          'export PATH=/usr/bin:/bin',
          `echo "$DEBIAN_FRONTEND $*" >> "${dir}/calls"`,
          `if [ "$1" = install ]; then printf '#!/bin/sh\\n' > "${dir}/etcd"; chmod 755 "${dir}/etcd"; fi`,
          '',
        ].join('\n'),
      );
      await chmod(aptGet, 0o755);
      const messages: string[] = [];
      const run = ensureEtcdBinary({ install: true, log: (m) => void messages.push(m), env: { PATH: dir } });
      if (process.getuid?.() === 0) {
        assert.equal(await run, path.join(dir, 'etcd'));
        assert.equal(
          await readFile(path.join(dir, 'calls'), 'utf8'),
          'noninteractive update\nnoninteractive install -y etcd-server\n',
        );
        assert.ok(messages.some((m) => m.includes('apt-get install -y etcd-server')), messages.join('\n'));
      } else {
        await assert.rejects(run, (err: Error) => err instanceof EtcdMissingError && /root/.test(err.message));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', resolve);
    });
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });

  test('a 3-member cluster starts and every member is healthy', { timeout: TEST_TIMEOUT }, async () => {
    const cluster = await startTestEtcdCluster(3);
    try {
      assert.equal(cluster.members.length, 3);
      for (const m of cluster.members) assert.deepEqual(await health(m), { health: 'true' });
      const list = (await postJson(`${cluster.endpoints[0]}/v3/cluster/member/list`, {})) as {
        members: { name: string; clientURLs: string[] }[];
      };
      assert.deepEqual(list.members.map((m) => m.name).sort(), ['n1', 'n2', 'n3']);
      // A write through one member is visible on another.
      await putFoo(cluster.members[0]);
      assert.equal(await readFoo(cluster.members[2]), BAR);

      // One at a time, every leader still has a live peer to hand leadership to, so stops are quick.
      for (const m of cluster.members) {
        const pid = m.pid;
        assert.ok(pid !== undefined);
        const t0 = Date.now();
        await m.stop();
        assert.ok(Date.now() - t0 < 4_000, `graceful stop of ${m.name} took ${Date.now() - t0} ms`);
        assert.equal(pidAlive(pid), false);
      }
    } finally {
      await cluster.cleanup();
    }
    for (const m of cluster.members) assert.equal(m.pid, undefined);
  });

  test('etcd exiting during start rejects with its log output', { timeout: TEST_TIMEOUT }, async () => {
    const t0 = Date.now();
    await assert.rejects(startTestEtcd({ extraArgs: ['--no-such-flag'] }), (err: Error) => {
      assert.match(err.message, /exited during start/);
      assert.match(err.message, /flag provided but not defined: -no-such-flag/);
      return true;
    });
    assert.ok(Date.now() - t0 < 10_000, 'fails fast instead of waiting for the health timeout');
  });
});
