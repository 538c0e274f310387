// The README's keys API section, run as a reader would paste it, on a fresh etcd: each ```sh block
// through /bin/sh, its output matched line by line against the block's `# …` lines; the Python block
// (nothing but `requests`) with Debian's /usr/bin/python3, each print matched against the comment on
// its line. `…` in an expected line stands for any text.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startGateway, type GatewayFixture } from './helpers/gateway';
import { PYTHON, runProcess } from './helpers/python';
import { startTestEtcd, type TestEtcd } from './harness/etcd';

const README = path.resolve(__dirname, '../../README.md');
const README_URL = 'http://127.0.0.1:8080';
const SECTION = 'The keys API (/v1/)';

interface Block {
  lang: string;
  body: string;
  line: number;
}

function blocks(): Block[] {
  const lines = readFileSync(README, 'utf8').split('\n');
  const start = lines.findIndex((l) => l === `## ${SECTION}`);
  assert.ok(start >= 0, `README.md has no "## ${SECTION}" section`);
  const out: Block[] = [];
  for (let i = start + 1; i < lines.length && !lines[i].startsWith('## '); i++) {
    const open = /^```(\S+)$/.exec(lines[i]);
    if (!open) continue;
    const body: string[] = [];
    const line = i + 1;
    while (lines[++i] !== '```') body.push(lines[i]);
    out.push({ lang: open[1], body: body.join('\n'), line });
  }
  return out;
}

function matches(expected: string, actual: string): boolean {
  const source = expected.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*?');
  return new RegExp(`^${source}$`).test(actual);
}

function assertLines(expected: string[], actual: string[], what: string): void {
  const report = `${what}\n--- expected ---\n${expected.join('\n')}\n--- actual ---\n${actual.join('\n')}`;
  assert.equal(actual.length, expected.length, report);
  expected.forEach((e, i) => assert.ok(matches(e, actual[i]), report));
}

describe(`README "${SECTION}" against a real etcd`, { timeout: 120_000 }, () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startGateway({ etcd });
  });
  after(async () => {
    await gw.close();
    await etcd.cleanup();
  });

  const all = blocks();

  it('has shell blocks and one Python block', () => {
    assert.ok(all.filter((b) => b.lang === 'sh').length >= 6);
    assert.equal(all.filter((b) => b.lang === 'python').length, 1);
  });

  it('runs every shell block in order, each printing what its # lines say', async () => {
    for (const block of all.filter((b) => b.lang === 'sh')) {
      const expected = block.body.split('\n').filter((l) => l.startsWith('# ')).map((l) => l.slice(2));
      const commands = block.body.split('\n').filter((l) => !l.startsWith('# ')).join('\n').split(README_URL).join(gw.url);
      const run = await runProcess('/bin/sh', ['-c', commands], 60_000);
      assert.equal(run.code, 0, `README.md:${block.line}: exit ${run.code}\n${run.stderr}`);
      assertLines(expected, run.stdout.split('\n').filter((l, i, a) => i < a.length - 1 || l !== ''), `README.md:${block.line}`);
    }
  });

  it('runs the Python block with only requests, each print matching its comment', async () => {
    const block = all.find((b) => b.lang === 'python')!;
    assert.ok(!/^import (?!requests$)|^from /m.test(block.body), 'the example imports nothing but requests');
    const expected = block.body.split('\n').filter((l) => /^\s*print\(.*#/.test(l)).map((l) => l.slice(l.lastIndexOf('# ') + 2));
    const run = await runProcess(PYTHON, ['-c', block.body.split(README_URL).join(gw.url)], 60_000);
    assert.equal(run.code, 0, `README.md:${block.line}: the Python example failed: ${run.stderr}`);
    assertLines(expected, run.stdout.trimEnd().split('\n'), `README.md:${block.line}`);
  });
});
