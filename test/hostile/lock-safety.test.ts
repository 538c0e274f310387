// The lock-safety checker (bench/lock-checker.ts), a short run: clients contend for three locks through
// /v1/locks, curl processes killed with SIGKILL and /v3/lock/lock, with random TTLs, waits and holds,
// while the gateway (its own process) is restarted and etcd is killed and started again. etcd's own
// history must show every "you hold it" answer held at its revision, no overlap, growing fencing
// tokens. `npm run check:locks` runs the same for minutes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkLocks, formatReport } from '../../bench/lock-checker';

describe('lock safety', () => {
  it('no lock has two holders in etcd\'s history: contention, expiring leases, abandoned and SIGKILLed waiters, gateway and etcd restarts', { timeout: 240_000 }, async () => {
    const report = await checkLocks({ seconds: 60, clients: 8, locks: 3, chaosEvery: [10, 16], log: (m) => process.stderr.write(`[lock-safety] ${m}\n`) });
    const figures = formatReport(report);
    process.stderr.write(`${figures}\n`);
    assert.deepEqual(report.violations, [], figures);
    assert.ok(report.acquired >= 10, `few locks taken: ${figures}`);
    assert.ok(report.gatewayRestarts >= 1 && report.etcdRestarts >= 1, `the run restarted the gateway and etcd: ${figures}`);
  });
});
