// src/boot/v8-tuning.ts: the gateway's process runs with V8's allocation-site pretenuring off (see the module
// for why). V8 reports its pretenuring decisions under --trace-pretenuring-statistics; the first test
// shows that report appears on this Node for a program that keeps most of what it allocates, so the
// silence in the other two means the setting is in force, not that the report went away.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startGatewayProcess } from '../../bench/setup';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { b64, send } from '../support/gateway';

const TUNING = path.resolve(__dirname, '..', '..', 'src', 'boot', 'v8-tuning.js');
const TRACE = '--trace-pretenuring-statistics';

// Objects that mostly outlive a scavenge: the pattern V8 pretenures.
const KEEPER = `
const keep = [];
for (let round = 0; round < 20; round++) {
  for (let i = 0; i < 50000; i++) keep.push({ a: i, b: [i] });
  if (keep.length > 200000) keep.length = 0;
}
`;

function traced(args: string[]): string {
  const r = spawnSync(process.execPath, [TRACE, ...args], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe('V8 tuning', () => {
  let dir: string;
  let script: string;
  let etcd: TestEtcd;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'v8-tuning-'));
    script = path.join(dir, 'keeper.js');
    await writeFile(script, KEEPER);
    etcd = await startTestEtcd();
  });
  after(async () => {
    await etcd?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('without the module, V8 pretenures the literals of a program that keeps what it allocates', () => {
    assert.match(traced([script]), /pretenuring: AllocationSite/);
  });

  it('with the module loaded first, V8 makes no pretenuring decisions at all', () => {
    assert.doesNotMatch(traced(['-r', TUNING, script]), /pretenuring/);
  });

  it('the gateway process (main.js) serves a load of puts and ranges without a pretenuring decision', async () => {
    const gw = await startGatewayProcess({ etcdUrl: etcd.clientUrl, nodeArgs: [TRACE], stderr: 'pipe' });
    try {
      for (let round = 0; round < 40; round++) {
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            i % 2 === 0
              ? send(gw.url, '/v3/kv/put', { key: b64(`v8/${i}`), value: b64('x'.repeat(100)) })
              : send(gw.url, '/v3/kv/range', { key: b64('v8/'), range_end: b64('v80') }),
          ),
        );
        for (const a of answers) assert.equal(a.status, 200);
      }
      assert.doesNotMatch(gw.output(), /pretenuring/);
    } finally {
      await gw.stop();
    }
  });
});
