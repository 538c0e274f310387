// What the README says that is not an example run against the gateway: the two Quick start
// commands and .ci/run, the configuration table against `--help`, and the expected-output matcher
// every README test uses (test/support/readme.ts). The examples themselves, every ```sh and
// ```python fence that talks to the gateway, are run in README order against one gateway and one
// fresh etcd by test/readme-in-order.test.ts.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { runProcess, type RunResult } from '../support/python';
import { README, ROOT, compilePattern, escapeRegex, fences, mismatch, section } from '../support/readme';

const CI_RUN = path.join(ROOT, '.ci/run');

/** Runs a command in the repository's root. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return runProcess(cmd, args, timeoutMs, {}, ROOT);
}

function transcript(res: RunResult): string {
  return `--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
}

const readme = readFileSync(README, 'utf8');

describe('the expected-output matcher', () => {
  const matches = (comment: string, output: string): boolean => mismatch(compilePattern(comment), output) === undefined;

  it('accepts what the patterns stand for', () => {
    assert.ok(matches('{"header":{…},"count":"2"}', '{"header":{"cluster_id":"1","revision":"9"},"count":"2"}'));
    assert.ok(matches('{"header":{…},"count":"2"}', '{"header":{},"count":"2"}\n'));
    assert.ok(matches('{"a":{…}}', '{"a":{"b":{"c":[1,{"d":"}"}]}}}'));
    assert.ok(matches('{"id":"…"}', '{"id":"12345"}'));
    assert.ok(matches('{"kvs":[{"key":"Zm9v",…,"value":"YmFy"}]}', '{"kvs":[{"key":"Zm9v","version":"1","value":"YmFy"}]}'));
    assert.ok(matches('{"r":[…]}', '{"r":[{"x":1},{"y":2}]}'));
    const remarked = compilePattern('{"a":true}   (a second call has no "a")');
    assert.equal(remarked.remark, 'a second call has no "a"');
    assert.ok(mismatch(remarked, '{"a":true}') === undefined);
  });

  it('is strict everywhere else', () => {
    assert.ok(!matches('{"header":{…},"count":"2"}', '{"header":{},"count":"3"}'));
    assert.ok(!matches('{"header":{…},"count":"2"}', '{"header":"x","count":"2"}'));
    assert.ok(!matches('{"header":{…},"count":"2"}', '{"header":{"a":1}, "count":"2"}'));
    assert.ok(!matches('{"header":{…},"count":"2"}', '{"header":{"a":1},"count":"2"} trailing'));
    assert.ok(!matches('{"header":{…}}', '{"header":{"a":1},"kvs":{}}'));
    assert.ok(!matches('{"id":"…"}', '{"id":"1","other":"2"}'));
    assert.ok(!matches('{"a":1}', '{"a":1,"b":2}'));
    assert.ok(!matches('{"a":1}', ' {"a":1}'));
    assert.ok(!matches('{"a":true}   (a second call has no "a")', '{"a":true}   (a second call has no "a")x'));
  });
});

describe('README Quick start and configuration', () => {
  it('Quick start has exactly `npm ci && npm start` and `npm ci && npm test`', () => {
    const blocks = fences(section(readme, 'Quick start')).filter((f) => f.lang === 'sh');
    assert.deepEqual(
      blocks.map((b) => b.body.trim()),
      ['npm ci && npm start', 'npm ci && npm test'],
      'the ```sh blocks of "Quick start"',
    );
  });

  it(".ci/run ends with the README's test command", () => {
    const blocks = fences(section(readme, 'Quick start')).filter((f) => f.lang === 'sh');
    const testCommand = blocks[1]?.body.trim();
    assert.equal(testCommand, 'npm ci && npm test');
    const lines = readFileSync(CI_RUN, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(lines[lines.length - 1], testCommand, `the last command of .ci/run`);
  });

  it('every variable of the configuration table (and its flag) is in `node dist/src/main.js --help`', async () => {
    const rows = section(readme, 'Configuration')
      .text.split('\n')
      .filter((l) => /^\|\s*`[A-Z_]+`\s*\|/.test(l))
      .map((l) => {
        const cells = l.split('|').map((c) => c.trim());
        return { variable: cells[1].replace(/`/g, ''), flag: cells[2].replace(/`/g, '') };
      });
    assert.ok(rows.length >= 8, `expected the configuration table's rows, found ${rows.length}`);

    const res = await run(process.execPath, ['dist/src/main.js', '--help'], 20_000);
    assert.equal(res.code, 0, `node dist/src/main.js --help failed (exit ${res.code ?? res.signal})\n${transcript(res)}`);
    const help = res.stdout;
    const helpLines = help.split('\n');
    const word = (s: string): RegExp => new RegExp(`(?<![\\w-])${escapeRegex(s)}(?![\\w-])`);
    for (const { variable, flag } of rows) {
      assert.match(help, word(variable), `${variable} (README configuration table) is not in --help:\n${help}`);
      if (flag) {
        assert.ok(
          helpLines.some((l) => word(variable).test(l) && word(flag).test(l)),
          `--help has no line with both ${flag} and ${variable}, as the README's table pairs them:\n${help}`,
        );
      }
    }
  });
});
