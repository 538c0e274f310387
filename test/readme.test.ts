// The README's examples, run as a reader would paste them: every curl command of "Using it with
// curl" through /bin/sh against this gateway on a fresh etcd, in README order, with its output
// matched against the `# …` comment under it; both Python examples with Debian's /usr/bin/python3;
// the two Quick start commands and .ci/run; and the configuration table against `--help`.
//
// Expected-output comments are patterns: `…` is any text (inside a JSON string: any string
// content), `{…}` is any JSON object; everything else must match exactly. A comment may end with a
// parenthesised remark after two or more spaces; known remarks are checked too (see REMARKS).

import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startGateway, type GatewayFixture } from './helpers/gateway';
import { PYTHON, requireEtcd3gw, runProcess, type RunResult } from './helpers/python';
import { startTestEtcd, type TestEtcd } from './harness/etcd';

const ROOT = path.resolve(__dirname, '../..');
const README = path.join(ROOT, 'README.md');
const CI_RUN = path.join(ROOT, '.ci/run');
const PYTHON_HINT = 'apt-get install python3-requests python3-etcd3gw';
const README_URL = 'http://127.0.0.1:8080';
const README_PORT = '8080';
const COMMAND_TIMEOUT_MS = 20_000;
const PYTHON_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// README parsing

interface Fence {
  lang: string;
  body: string;
  /** 1-based line number of the opening fence in README.md. */
  line: number;
}

/** The text of the `## title` section (up to the next `## ` heading), with its first line number. */
function section(markdown: string, title: string): { text: string; line: number } {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === `## ${title}`);
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`);
  let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  if (end < 0) end = lines.length;
  return { text: lines.slice(start, end).join('\n'), line: start + 1 };
}

function fences(sec: { text: string; line: number }): Fence[] {
  const out: Fence[] = [];
  const lines = sec.text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^```\s*$/.test(lines[j])) body.push(lines[j++]);
    if (j >= lines.length) throw new Error(`unterminated code fence at README.md:${sec.line + i}`);
    out.push({ lang: open[1], body: body.join('\n'), line: sec.line + i });
    i = j;
  }
  return out;
}

interface ShellExample {
  /** The command as written in the README (possibly several lines). */
  command: string;
  /** README.md line of the command's first line. */
  line: number;
  /** The expected-output comment (without `# `), if one follows the command. */
  expected?: string;
}

/** True while a shell quote opened in `text` is still open (single/double quotes, backslashes). */
function quoteOpen(text: string): boolean {
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === '\\') {
      i++;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    }
  }
  return quote !== undefined;
}

/** The curl commands of one ```sh block, each with the `# ` comment lines that follow it. */
function shellExamples(fence: Fence): ShellExample[] {
  const out: ShellExample[] = [];
  const lines = fence.body.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const where = `README.md:${fence.line + 1 + i}`;
    if (line.trim() === '') continue;
    if (line.startsWith('# ')) {
      const last = out[out.length - 1];
      if (!last) throw new Error(`${where}: expected-output comment before any command: ${line}`);
      last.expected = last.expected === undefined ? line.slice(2) : `${last.expected}\n${line.slice(2)}`;
      continue;
    }
    if (!/^curl\s/.test(line)) throw new Error(`${where}: a line that is neither a curl command nor a "# " comment: ${line}`);
    const first = i;
    let command = line;
    while (quoteOpen(command) || /\\$/.test(command)) {
      if (++i >= lines.length) throw new Error(`${where}: command not terminated inside its block: ${command}`);
      command += `\n${lines[i]}`;
    }
    out.push({ command, line: fence.line + 1 + first });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Expected-output patterns

const JSON_STRING = String.raw`"(?:[^"\\]|\\.)*"`;

/** A regex source for JSON object text nested up to `depth` levels of objects/arrays. */
function jsonObjectSource(depth: number): string {
  const inner = (d: number): string =>
    d === 0
      ? `(?:[^{}\\[\\]"]|${JSON_STRING})`
      : `(?:[^{}\\[\\]"]|${JSON_STRING}|\\{${inner(d - 1)}*\\}|\\[${inner(d - 1)}*\\])`;
  return `\\{${inner(depth)}*\\}`;
}
const JSON_OBJECT = jsonObjectSource(5);

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

interface Pattern {
  source: string;
  regex: RegExp;
  /** A parenthesised remark after the pattern, e.g. `a second call has no "succeeded"`. */
  remark?: string;
}

/** Index just past the first balanced JSON value in `text` (strings honoured), or -1. */
function endOfFirstValue(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{' || c === '[') {
      depth++;
    } else if (c === '}' || c === ']') {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/** Turns an expected-output comment into an anchored regex; `{…}` groups are captured. */
function compilePattern(comment: string): Pattern {
  let source = comment;
  let remark: string | undefined;
  const end = endOfFirstValue(comment);
  if (end > 0 && end < comment.length) {
    const rest = /^\s{2,}\((.+)\)\s*$/.exec(comment.slice(end));
    if (rest) {
      source = comment.slice(0, end);
      remark = rest[1];
    }
  }
  let re = '';
  let inString = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (!inString && source.startsWith('{…}', i)) {
      re += `(${JSON_OBJECT})`;
      i += 2;
    } else if (c === '…') {
      re += inString ? String.raw`(?:[^"\\]|\\.)*` : String.raw`[\s\S]*?`;
    } else {
      if (c === '"') inString = !inString;
      else if (c === '\\' && inString) {
        re += escapeRegex(source.slice(i, i + 2));
        i++;
        continue;
      }
      re += escapeRegex(c);
    }
  }
  return { source, regex: new RegExp(`^${re}\\n?$`), remark };
}

/** Why `output` does not match `pattern`, or undefined when it does. */
function mismatch(pattern: Pattern, output: string): string | undefined {
  const m = pattern.regex.exec(output);
  if (!m) return `output does not match the pattern`;
  for (const group of m.slice(1)) {
    let value: unknown;
    try {
      value = JSON.parse(group);
    } catch {
      return `the text standing for {…} is not JSON: ${group}`;
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) return `the text standing for {…} is not a JSON object: ${group}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Running things

/** Runs a command in the repository's root (README commands are written to run from there). */
function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return runProcess(cmd, args, timeoutMs, {}, ROOT);
}

function transcript(res: RunResult): string {
  return `--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
}

/** Runs a README shell command and returns its output parsed as JSON; fails with the details. */
async function runJsonCommand(what: string, command: string): Promise<{ res: RunResult; json: unknown }> {
  const res = await run('/bin/sh', ['-c', command], COMMAND_TIMEOUT_MS);
  const details = `${what}\n--- command ---\n${command}\n${transcript(res)}`;
  assert.ok(!res.timedOut, `command did not finish within ${COMMAND_TIMEOUT_MS} ms: ${details}`);
  assert.equal(res.code, 0, `command failed (exit ${res.code ?? res.signal}): ${details}`);
  let json: unknown;
  try {
    json = JSON.parse(res.stdout);
  } catch (err) {
    assert.fail(`output is not JSON (${(err as Error).message}): ${details}`);
  }
  return { res, json };
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Remarks after an expected output that the test knows how to check. */
const REMARKS: { pattern: RegExp; check(t: TestContext, example: ShellExample, command: string, m: RegExpExecArray): Promise<void> }[] = [
  {
    // `(a second call has no "succeeded")`: run the same command again; the field must be absent.
    pattern: /^a second call has no "([a-z_]+)"$/,
    async check(_t, example, command, m) {
      const what = `README.md:${example.line}, run a second time for the remark "(${m[0]})"`;
      const { res, json } = await runJsonCommand(what, command);
      assert.ok(isObject(json) && !('error' in json), `second call answered an error: ${what}\n${transcript(res)}`);
      assert.ok(!(m[1] in json), `second call still has "${m[1]}": ${what}\n${transcript(res)}`);
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Python

/**
 * Runs a Python snippet with print() recording each call's arguments as [type name, str()] pairs
 * (one JSON line per call), so "a string" claims can be checked as well as the text. The snippet's
 * own code is otherwise untouched.
 */
const PRINT_RECORDER = [
  'import builtins, json, sys',
  'source = sys.argv[1]',
  'def recording_print(*args, **kwargs):',
  '    sys.stdout.write(json.dumps([[type(a).__name__, str(a)] for a in args]) + "\\n")',
  'scope = {"__name__": "__main__", "__builtins__": builtins, "print": recording_print}',
  'exec(compile(source, "<README>", "exec"), scope)',
].join('\n');

interface PrintExpectation {
  line: number;
  statement: string;
  comment: string;
}

/** Every `print(...)  # comment` line of a snippet; a print without a comment is an error. */
function printExpectations(fence: Fence): PrintExpectation[] {
  const out: PrintExpectation[] = [];
  fence.body.split('\n').forEach((l, i) => {
    if (!/^\s*print\(/.test(l)) return;
    const m = /^(.*\S)\s+#\s?(.*)$/.exec(l);
    if (!m) throw new Error(`README.md:${fence.line + 1 + i}: print() without an expected-output comment: ${l}`);
    out.push({ line: fence.line + 1 + i, statement: m[1], comment: m[2].trim() });
  });
  return out;
}

/** Fails (never skips) when Debian's Python cannot import requests and etcd3gw. */
async function requirePythonModules(): Promise<void> {
  await requireEtcd3gw({ modules: ['requests'], hint: PYTHON_HINT });
}

/** Runs the snippet plainly and with the print recorder, and checks every print against its comment. */
async function checkPythonSnippet(fence: Fence, code: string): Promise<void> {
  const expectations = printExpectations(fence);
  assert.ok(expectations.length > 0, `README.md:${fence.line}: the Python example prints nothing to check`);

  const plain = await run(PYTHON, ['-c', code], PYTHON_TIMEOUT_MS);
  const details = (res: RunResult): string => `README.md:${fence.line}\n--- code ---\n${code}\n${transcript(res)}`;
  assert.ok(!plain.timedOut, `the Python example did not finish within ${PYTHON_TIMEOUT_MS} ms: ${details(plain)}`);
  if (plain.code !== 0 && /ModuleNotFoundError|ImportError/.test(plain.stderr)) assert.fail(`missing Python module; run: ${PYTHON_HINT}\n${details(plain)}`);
  assert.equal(plain.code, 0, `the Python example failed (exit ${plain.code ?? plain.signal}): ${details(plain)}`);
  const lines = plain.stdout.replace(/\n$/, '').split('\n');
  assert.equal(lines.length, expectations.length, `expected ${expectations.length} printed lines: ${details(plain)}`);

  const recorded = await run(PYTHON, ['-c', PRINT_RECORDER, code], PYTHON_TIMEOUT_MS);
  assert.equal(recorded.code, 0, `the Python example failed when run with print() recorded: ${details(recorded)}`);
  const calls = recorded.stdout
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => JSON.parse(l) as [string, string][]);
  assert.equal(calls.length, expectations.length, `expected ${expectations.length} print() calls: ${details(recorded)}`);

  expectations.forEach((exp, i) => {
    const where = `README.md:${exp.line}: ${exp.statement}  # ${exp.comment}`;
    const call = calls[i];
    assert.equal(call.length, 1, `${where}: print() got ${call.length} arguments`);
    const [type, recordedText] = call[0];
    // Both runs must print what the comment says (values such as revisions differ between them).
    for (const [text, res] of [
      [lines[i], plain],
      [recordedText, recorded],
    ] as const) {
      if (/^a string\b/.test(exp.comment)) {
        // The revision: a decimal string, never a (possibly rounded) number.
        assert.match(text, /^\d+$/, `${where}: printed ${JSON.stringify(text)}, expected a revision of digits\n${details(res)}`);
      } else {
        assert.equal(text, exp.comment, `${where}: printed ${JSON.stringify(text)}, expected ${JSON.stringify(exp.comment)}\n${details(res)}`);
      }
    }
    if (/^a string\b/.test(exp.comment)) {
      assert.equal(type, 'str', `${where}: printed a ${type} (${recordedText}), the comment says a string\n${details(recorded)}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The tests

const readme = readFileSync(README, 'utf8');

/** Parses lazily so that a README that no longer parses fails one test instead of the whole file. */
function parsed<T>(make: () => T): { value?: T; error?: Error } {
  try {
    return { value: make() };
  } catch (err) {
    return { error: err as Error };
  }
}

const curlExamples = parsed(() => {
  const blocks = fences(section(readme, 'Using it with curl')).filter((f) => f.lang === 'sh');
  if (blocks.length === 0) throw new Error('"Using it with curl" has no ```sh block');
  const examples = blocks.flatMap(shellExamples);
  for (const ex of examples) {
    if (!ex.command.includes(README_URL)) throw new Error(`README.md:${ex.line}: command does not use ${README_URL}: ${ex.command}`);
    if (ex.expected !== undefined) compilePattern(ex.expected); // a broken pattern fails here, by line
  }
  return examples;
});

const pythonBlocks = parsed(() => {
  const blocks = fences(section(readme, 'Using it from Python')).filter((f) => f.lang === 'python');
  if (blocks.length < 2) throw new Error(`"Using it from Python" has ${blocks.length} python blocks, expected 2 (requests, etcd3gw)`);
  return blocks;
});

describe('README examples against a real etcd and this gateway', { timeout: 300_000 }, () => {
  let etcd: TestEtcd | undefined;
  let fixture: GatewayFixture;

  before(async () => {
    // etcd is started here, not by startGateway(), so that it is stopped even if building the
    // gateway throws (a leaked etcd child would keep this test process alive).
    etcd = await startTestEtcd();
    fixture = await startGateway({ etcd });
  });

  after(async () => {
    try {
      await fixture?.close();
    } finally {
      await etcd?.cleanup();
    }
  });

  describe('Using it with curl (in README order, on a fresh etcd)', () => {
    if (curlExamples.error) {
      it('parses', () => assert.fail(curlExamples.error));
      return;
    }
    for (const example of curlExamples.value ?? []) {
      const title = `README.md:${example.line}: ${example.command.split('\n')[0]}${example.command.includes('\n') ? ' …' : ''}`;
      it(title, async (t) => {
        const command = example.command.split(README_URL).join(fixture.url);
        const what = `README.md:${example.line}`;
        const { res, json } = await runJsonCommand(what, command);
        if (example.expected === undefined) {
          assert.ok(!(isObject(json) && 'error' in json), `answered an error where the README shows none: ${what}\n--- command ---\n${command}\n${transcript(res)}`);
          return;
        }
        const pattern = compilePattern(example.expected);
        const why = mismatch(pattern, res.stdout);
        if (why) {
          assert.fail(
            `${why}: ${what}\n--- command ---\n${command}\n--- expected (pattern) ---\n${pattern.source}\n--- actual ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`,
          );
        }
        if (pattern.remark !== undefined) {
          const known = REMARKS.map((r) => ({ r, m: r.pattern.exec(pattern.remark ?? '') })).find((x) => x.m);
          assert.ok(known?.m, `${what}: the remark "(${pattern.remark})" is not one this test knows how to check; add it to REMARKS`);
          await known.r.check(t, example, command, known.m);
        }
      });
    }
  });

  describe('Using it from Python (Debian /usr/bin/python3)', () => {
    if (pythonBlocks.error) {
      it('parses', () => assert.fail(pythonBlocks.error));
      return;
    }
    const [requestsBlock, etcd3gwBlock] = pythonBlocks.value ?? [];

    it(`README.md:${requestsBlock.line}: the requests example prints what its comments say`, async () => {
      await requirePythonModules();
      assert.ok(requestsBlock.body.includes(`"${README_URL}"`), `README.md:${requestsBlock.line}: the example does not use "${README_URL}"`);
      await checkPythonSnippet(requestsBlock, requestsBlock.body.split(README_URL).join(fixture.url));
    });

    it(`README.md:${etcd3gwBlock.line}: the etcd3gw example prints what its comments say`, async () => {
      await requirePythonModules();
      const portArg = `port=${README_PORT}`;
      assert.ok(etcd3gwBlock.body.includes('host="127.0.0.1"'), `README.md:${etcd3gwBlock.line}: the example does not use host="127.0.0.1"`);
      assert.ok(etcd3gwBlock.body.includes(portArg), `README.md:${etcd3gwBlock.line}: the example does not use ${portArg}`);
      const port = new URL(fixture.url).port;
      const expectations = printExpectations(etcd3gwBlock);
      assert.deepEqual(
        expectations.map((e) => e.comment),
        ["[b'bar']"],
        `README.md:${etcd3gwBlock.line}: expected the example to print [b'bar']`,
      );
      await checkPythonSnippet(etcd3gwBlock, etcd3gwBlock.body.split(portArg).join(`port=${port}`));
    });
  });
});

const watchExamples = parsed(() => {
  const blocks = fences(section(readme, 'Watching with Server-Sent Events and NDJSON')).filter((f) => f.lang === 'sh');
  const examples = blocks.flatMap(shellExamples);
  if (examples.length === 0) throw new Error('"Watching with Server-Sent Events and NDJSON" has no curl example');
  for (const ex of examples) {
    if (!/^curl -s?N\s/.test(ex.command)) throw new Error(`README.md:${ex.line}: a watch example runs curl -N: ${ex.command}`);
    if (ex.expected === undefined) throw new Error(`README.md:${ex.line}: a watch example shows what it prints`);
    for (const line of ex.expected.split('\n')) compilePattern(line);
  }
  return examples;
});

/** Runs a streaming command until it has printed `lines` lines (then stops it); bounded in time. */
function firstLines(command: string, lines: number): Promise<{ lines: string[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', `exec ${command}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    const done = (): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ lines: out.split('\n').slice(0, lines), stderr });
    };
    const timer = setTimeout(done, COMMAND_TIMEOUT_MS);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.split('\n').length > lines) done();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', done);
  });
}

describe('README watch examples (curl -N on /v1/watch, against a real etcd)', { timeout: 120_000 }, () => {
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGateway();
    // What the example's output shows: config/db written, then deleted.
    const key = Buffer.from('config/db').toString('base64');
    assert.equal((await fixture.post('/v3/kv/put', { key, value: Buffer.from('on').toString('base64') })).status, 200);
    assert.equal((await fixture.post('/v3/kv/deleterange', { key })).status, 200);
  });
  after(() => fixture?.close());

  if (watchExamples.error) {
    it('parses', () => assert.fail(watchExamples.error));
    return;
  }
  for (const example of watchExamples.value ?? []) {
    it(`README.md:${example.line}: ${example.command}`, async () => {
      const expected = (example.expected ?? '').split('\n');
      const command = example.command.split(README_URL).join(fixture.url);
      const got = await firstLines(command, expected.length);
      expected.forEach((line, i) => {
        const why = mismatch(compilePattern(line), got.lines[i] ?? '');
        assert.equal(why, undefined, `README.md:${example.line}, line ${i + 1}: ${why}\n--- expected ---\n${line}\n--- actual ---\n${got.lines.join('\n')}\n--- stderr ---\n${got.stderr}`);
      });
    });
  }
});

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
