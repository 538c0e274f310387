// A TLS etcd that is stopping answers the calls in flight with `:status 200` and nothing else (its
// HTTP server, with its gRPC server already stopped), then GOAWAY. In a 3-member TLS cluster, reads
// must move to a healthy member meanwhile, and anything that fails must fail as the README promises for
// etcd faults: 503 or 504, never 500.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EtcdClient } from '../../src/etcd/client';
import { findEtcdBinary, freePort, startEtcd, type EtcdProcess } from '../../src/embedded-etcd/process';
import type { GatewayError } from '../../src/core/errors';
import { makeCerts, type CertFiles } from '../support/certs';
import { waitFor } from '../support/waiting';

const MEMBERS = 3;
/** Reads in flight: the more there are when the member stops, the more of them get its empty answer. */
const READERS = 24;

/** The /health of one member over HTTPS: true once it has a leader. */
function healthy(url: string, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/health`, { ca, agent: false, timeout: 2000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && text.includes('"health":"true"')));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

async function distinctPorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

describe('a 3-member TLS cluster while a member stops', () => {
  let certs: CertFiles;
  let baseDir: string;
  let members: EtcdProcess[] = [];
  let urls: string[];
  before(async () => {
    certs = await makeCerts();
    const bin = findEtcdBinary();
    if (!bin) throw new Error('this test needs a real etcd, and none was found');
    baseDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-tls-cluster-'));
    const ports = await distinctPorts(2 * MEMBERS);
    const names = Array.from({ length: MEMBERS }, (_, i) => `t${i + 1}`);
    urls = names.map((_, i) => `https://127.0.0.1:${ports[2 * i]}`);
    const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i + 1]}`).join(',');
    members = await Promise.all(
      names.map((name, i) =>
        startEtcd({
          bin,
          name,
          dataDir: path.join(baseDir, name),
          clientPort: ports[2 * i],
          peerPort: ports[2 * i + 1],
          initialCluster,
          waitHealthy: false,
          // Later flags win: the client URLs become https://; peers stay plain.
          extraArgs: ['--listen-client-urls', urls[i], '--advertise-client-urls', urls[i], '--cert-file', certs.serverCert, '--key-file', certs.serverKey],
        }),
      ),
    );
    await waitFor('the TLS cluster to be healthy', async () => (await Promise.all(urls.map((u) => healthy(u, certs.pem.ca)))).every(Boolean), 30_000, 200);
  });
  after(async () => {
    await Promise.all(
      members.map((m) => {
        m.kill('SIGKILL');
        return m.stop();
      }),
    );
    if (baseDir) await rm(baseDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    await certs?.cleanup();
  });

  it('reads fail over to a healthy member, and what fails is a 503 or 504, never a 500', async () => {
    const client = new EtcdClient({ endpoints: urls, requestTimeoutMs: 5000, tls: { ca: certs.pem.ca } });
    try {
      await client.unary('KV', 'Put', { key: Buffer.from('stop/a'), value: Buffer.from('1') }, { idempotent: false });
      const reads: string[] = [];
      const writes: string[] = [];
      let running = true;
      const failure = (e: GatewayError) => `${e.httpStatus} ${e.message}`;
      const reader = async () => {
        for (let i = 0; running && i < 100_000; i++) {
          reads.push(await client.unary('KV', 'Range', { key: Buffer.from('stop/a') }, { idempotent: true }).then(() => 'ok', failure));
        }
      };
      const writer = async () => {
        for (let i = 0; running && i < 100_000; i++) {
          writes.push(await client.unary('KV', 'Put', { key: Buffer.from('stop/w'), value: Buffer.from(String(i)) }, { idempotent: false }).then(() => 'ok', failure));
        }
      };
      const load = Promise.all([...Array.from({ length: READERS }, reader), writer()]);
      await waitFor('reads to flow', () => reads.length >= 200, 10_000);
      const stopping = urls.indexOf(client.currentEndpoint);
      await members[stopping].stop();
      const readsAtStop = reads.length;
      await waitFor('reads after the stop', () => reads.length >= readsAtStop + 200, 15_000);
      running = false;
      await load;
      const failedReads = reads.filter((r) => r !== 'ok');
      assert.deepEqual([...new Set(failedReads)], [], `${failedReads.length} of ${reads.length} reads failed`);
      const badWrites = writes.filter((w) => w !== 'ok' && !/^50[34] /.test(w));
      assert.deepEqual([...new Set(badWrites)], [], 'writes fail only as 503 or 504');
      assert.notEqual(client.currentEndpoint, urls[stopping], 'requests moved to another member');
    } finally {
      client.close();
    }
  });
});
