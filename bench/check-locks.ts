// The lock-safety checker as a command (issue 22 §2): N clients contend for a few locks through the
// gateway while it and etcd are restarted, and etcd's own history proves that no lock ever had two
// holders (see bench/lock-checker.ts for what is run and what is proven).
//
//   npm run check:locks -- [--seconds 180] [--clients 16] [--locks 3] [--seed N] [--no-chaos]
//                          [--gateway-main <another build's dist/src/main.js>]
//
// Prints the counts; exit code 1 on any violation (or when nothing was acquired), 2 when the run
// itself did not end in time.

import { parseArgs } from 'node:util';
import { checkLocks, formatReport } from './lock-checker';
import { makeLog, positiveInt, runMain, withTimeout } from './setup';

runMain('check:locks', async () => {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      clients: { type: 'string' },
      locks: { type: 'string' },
      seed: { type: 'string' },
      'no-chaos': { type: 'boolean' },
      'gateway-main': { type: 'string' },
    },
  });
  const seconds = positiveInt('seconds', values.seconds, 180);
  const clients = positiveInt('clients', values.clients, 16);
  const locks = positiveInt('locks', values.locks, 3);
  const seed = values.seed === undefined ? undefined : positiveInt('seed', values.seed);
  if (seconds > 24 * 3600 || clients > 256 || locks > 64) throw new Error('--seconds at most 86400, --clients at most 256, --locks at most 64');
  const log = makeLog('check:locks');
  log(`${clients} clients, ${locks} locks, ${seconds} s${values['no-chaos'] ? ', no restarts' : ', gateway and etcd restarted'}`);
  let report;
  try {
    // The clients stop starting attempts at the end; the longest one still running ends within ~90 s.
    report = await withTimeout('the lock checker', checkLocks({ seconds, clients, locks, seed, chaos: !values['no-chaos'], log, gatewayMain: values['gateway-main'] }), seconds * 1000 + 240_000);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  process.stdout.write(`${formatReport(report)}\n`);
  return report.violations.length > 0 || report.acquired === 0 ? 1 : 0;
});
