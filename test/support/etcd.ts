// Real etcd for tests: free loopback ports, throwaway data dirs. A missing binary is a hard
// failure with the install hint; tests never install anything themselves.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EtcdMissingError, findEtcdBinary, startEtcd, startEtcdCluster, type EtcdProcess } from '../../src/embedded-etcd/process';

export type TestEtcd = EtcdProcess & { cleanup(): Promise<void> };

export interface TestEtcdCluster {
  members: EtcdProcess[];
  /** Client URLs of all members, in member order. */
  endpoints: string[];
  baseDir: string;
  cleanup(): Promise<void>;
}

function requireEtcdBinary(): string {
  const bin = findEtcdBinary();
  if (!bin) throw new EtcdMissingError('The test suite needs a real etcd, and none was found.');
  return bin;
}

function removeDir(dir: string): Promise<void> {
  // Retries cover etcd still closing files for a moment after it was killed.
  return rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

export async function startTestEtcd(opts?: { extraArgs?: string[] }): Promise<TestEtcd> {
  const bin = requireEtcdBinary();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-test-'));
  let etcd: EtcdProcess;
  try {
    etcd = await startEtcd({ bin, dataDir, extraArgs: opts?.extraArgs });
  } catch (err) {
    await removeDir(dataDir);
    throw err;
  }
  // Assign onto the instance instead of spreading, which would freeze the live `pid` getter.
  return Object.assign(etcd, {
    async cleanup(): Promise<void> {
      try {
        await etcd.stop();
      } finally {
        await removeDir(dataDir);
      }
    },
  });
}

export async function startTestEtcdCluster(size: number): Promise<TestEtcdCluster> {
  const bin = requireEtcdBinary();
  const baseDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-test-cluster-'));
  let members: EtcdProcess[];
  try {
    members = await startEtcdCluster({ bin, baseDir, size });
  } catch (err) {
    await removeDir(baseDir);
    throw err;
  }
  return {
    members,
    endpoints: members.map((m) => m.clientUrl),
    baseDir,
    async cleanup(): Promise<void> {
      try {
        // SIGTERM to all members at once makes the leader hand leadership to a peer that is itself
        // shutting down and then wait ~5 s for it; the data is thrown away, so skip the courtesy.
        await Promise.all(
          members.map((m) => {
            m.kill('SIGKILL');
            return m.stop();
          }),
        );
      } finally {
        await removeDir(baseDir);
      }
    },
  };
}
