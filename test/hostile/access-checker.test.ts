// The authorization checker (test/support/access-checker.ts), a short run: generated access files and
// hostile requests on both faces, judged by etcd's own history, by what came back, and by a model of
// the grants. `npm run check:access` runs it longer.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { runAccessCheck } from '../support/access-checker';

it('no generated request reads, writes or is refused outside what its client\'s grants say', { timeout: 240_000 }, async () => {
  const seed = process.env.ACCESS_SEED ? Number(process.env.ACCESS_SEED) : undefined;
  const report = await runAccessCheck({ seed, files: 2, clientsPerFile: 4, requestsPerClient: 120 });
  console.log(`[access-checker] seed ${report.seed}: ${report.requests} requests (${report.allowed} allowed, ${report.refused} refused) by ${report.clients} clients; ${report.historyEvents} history events; ${report.violations.length} violations`);
  assert.deepEqual(report.violations, [], `seed ${report.seed} (replay with ACCESS_SEED=${report.seed})`);
  assert.ok(report.refused > 0 && report.allowed > 0, 'the run exercised both decisions');
  assert.ok(report.historyEvents > 0, 'etcd\'s history was read');
});
