// npm run check:access -- [--seed N] [--files 6] [--clients 5] [--requests 600]
//
// The authorization checker (test/support/access-checker.ts) as a longer run than the suite's: every
// generated access file, client and request on a fresh etcd; prints the counts and every violation;
// exits 1 on any. Bounded: files × clients × requests requests, each one after the other.

import { parseArgs } from 'node:util';
import { runAccessCheck } from '../test/support/access-checker';

const { values } = parseArgs({ options: { seed: { type: 'string' }, files: { type: 'string' }, clients: { type: 'string' }, requests: { type: 'string' } } });
const count = (raw: string | undefined, dflt: number, max: number): number => {
  const n = raw === undefined ? dflt : Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`expected a whole number from 1 to ${max}, got ${raw}`);
  return n;
};

async function main(): Promise<void> {
  const started = Date.now();
  const report = await runAccessCheck({
    seed: values.seed === undefined ? undefined : Number(values.seed),
    files: count(values.files, 6, 100),
    clientsPerFile: count(values.clients, 5, 50),
    requestsPerClient: count(values.requests, 600, 100_000),
    log: (line) => console.log(line),
  });
  console.log(`seed ${report.seed}: ${report.requests} requests in ${((Date.now() - started) / 1000).toFixed(1)} s by ${report.clients} clients of ${report.files} access files`);
  console.log(`  allowed ${report.allowed}, refused ${report.refused}, etcd history events checked ${report.historyEvents}`);
  console.log(`  by operation: ${Object.entries(report.byOp).sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`  violations: ${report.violations.length}`);
  for (const v of report.violations) console.log(`    ${v}`);
  process.exitCode = report.violations.length ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 2;
});
