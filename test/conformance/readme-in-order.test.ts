// The README followed in order, as one reader does in one terminal: every ```sh and ```python
// example that talks to the gateway (http://127.0.0.1:8080), across all sections, in document
// order, against ONE gateway on ONE fresh etcd. Shell commands run one after the other in one
// persistent /bin/sh, so a variable set by one command is seen by the later ones; a streaming
// `curl -N` is read until it has shown the lines under it and then stopped (SIGINT, as Ctrl-C
// does); Python snippets run with Debian's /usr/bin/python3 at their place in the order, a
// watcher loop likewise stopped once it has printed what its comments show. Every command's
// output must match the `# …` lines under it (see test/support/readme.ts for the patterns), and a
// command with none must neither fail nor answer an error. A failure names the README line.
//
// What is not run, and why, is EXCLUDED below; a fence that is neither run nor excluded fails.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { PYTHON, requireEtcd3gw } from '../support/python';
import {
  README,
  README_HOST,
  allFences,
  compilePattern,
  isStreamingCommand,
  linesMismatch,
  mismatch,
  printExpectations,
  printMismatch,
  PRINT_RECORDER,
  shellExamples,
  type Fence,
  type ShellExample,
} from '../support/readme';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

const PYTHON_HINT = 'apt-get install python3-requests python3-etcd3gw python3-websocket';
const COMMAND_TIMEOUT_MS = 20_000;
const PYTHON_TIMEOUT_MS = 60_000;
/** How long a streaming example that shows no output is watched before it is stopped. */
const QUIET_STREAM_MS = 3_000;

/** Fences that are not run, with the reason. Each must still match one fence of the README. */
const EXCLUDED: { what: string; reason: string; matches(f: Fence): boolean }[] = [
  {
    what: 'unlabelled fences (``` without a language)',
    reason:
      'output and illustrations (the startup banner, the architecture diagram, benchmark output), and the two ' +
      'request examples that need what a fresh gateway does not have: etcd auth enabled (etcd authentication) and ' +
      'an ACCESS_FILE with the client "billing" (Gateway access control); those are tested in auth.test.ts and access.test.ts',
    matches: (f) => f.lang === '',
  },
  { what: 'the ```yaml access file', reason: 'a configuration file, not a command', matches: (f) => f.lang === 'yaml' },
  {
    what: 'the ```html EventSource page',
    reason: 'runs in a browser, not a terminal (the same stream is run here with curl -N and Python)',
    matches: (f) => f.lang === 'html',
  },
  {
    what: 'the Quick start ```sh fences (npm ci && npm start, npm ci && npm test)',
    reason: 'they start a gateway on port 8080 and the whole suite; readme.test.ts checks their text and .ci/run',
    matches: (f) => f.lang === 'sh' && f.section === 'Quick start',
  },
  {
    what: 'the Container and Kubernetes ```sh fence',
    reason: 'docker build/run and helm install need a container runtime and a cluster',
    matches: (f) => f.lang === 'sh' && f.section === 'Container and Kubernetes',
  },
];

type Step =
  | { kind: 'sh'; fence: Fence; example: ShellExample }
  | { kind: 'python'; fence: Fence };

const readme = readFileSync(README, 'utf8');

function planSteps(): { steps: Step[]; unclaimed: Fence[]; unusedExclusions: string[] } {
  const steps: Step[] = [];
  const unclaimed: Fence[] = [];
  const used = new Set<string>();
  for (const fence of allFences(readme)) {
    const talksToGateway = fence.body.includes(README_HOST) || (fence.lang === 'python' && /host="127\.0\.0\.1", port=8080/.test(fence.body));
    if ((fence.lang === 'sh' || fence.lang === 'python') && talksToGateway) {
      if (fence.lang === 'sh') for (const example of shellExamples(fence)) steps.push({ kind: 'sh', fence, example });
      else steps.push({ kind: 'python', fence });
      continue;
    }
    const exclusion = EXCLUDED.find((e) => e.matches(fence));
    if (exclusion) used.add(exclusion.what);
    else unclaimed.push(fence);
  }
  return { steps, unclaimed, unusedExclusions: EXCLUDED.map((e) => e.what).filter((w) => !used.has(w)) };
}

// ---------------------------------------------------------------------------------------------
// One persistent shell

interface ShellResult {
  /** What the command printed (stdout and stderr, as a terminal shows them). */
  output: string;
  code: number | undefined;
  /** The command was a stream and was stopped (SIGINT) by the test. */
  stopped: boolean;
  timedOut: boolean;
  /** The shell itself ended (an `exit` in the command). */
  shellGone: boolean;
}

/** The child processes of `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

class ShellSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'readme-sh-'));
  private buffer = '';
  private count = 0;
  private closed = false;
  private onData: (() => void) | undefined;

  constructor() {
    this.child = spawn('/bin/sh', [], { cwd: this.dir, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    const take = (d: string): void => {
      this.buffer += d;
      this.onData?.();
    };
    this.child.stdout.setEncoding('utf8').on('data', take);
    this.child.stderr.setEncoding('utf8').on('data', take);
    this.child.once('close', () => {
      this.closed = true;
      this.onData?.();
    });
    this.child.stdin.on('error', () => undefined);
  }

  /**
   * Runs `command` in the session (sourced from a file, so it runs in this shell and its variables
   * stay); with `streamLines`, stops the command's processes once it has printed that many lines
   * (or after QUIET_STREAM_MS when 0).
   */
  run(command: string, opts: { streamLines?: number } = {}): Promise<ShellResult> {
    const n = ++this.count;
    const file = path.join(this.dir, `step-${n}.sh`);
    writeFileSync(file, `${command}\n`);
    const marker = `__README_STEP_${n}_EXIT_`;
    const end = new RegExp(`\\n${marker}(\\d+)__\\n`);
    this.buffer = '';
    // Ctrl-C stops the foreground command, not the background jobs started before it.
    const background = new Set(childrenOf(this.child.pid ?? -1));
    return new Promise((resolve) => {
      let stopped = false;
      let timedOut = false;
      const stop = (): void => {
        if (stopped) return;
        stopped = true;
        this.killChildren('SIGINT', background);
      };
      const timer = setTimeout(() => {
        timedOut = true;
        stop();
        // A command that ignores SIGINT: end the session's children for good.
        setTimeout(() => this.killChildren('SIGKILL', background), 3_000).unref();
      }, COMMAND_TIMEOUT_MS);
      const quiet = opts.streamLines === 0 ? setTimeout(stop, QUIET_STREAM_MS) : undefined;
      this.onData = () => {
        const m = end.exec(this.buffer);
        if (m || this.closed) {
          clearTimeout(timer);
          clearTimeout(quiet);
          this.onData = undefined;
          const output = m ? this.buffer.slice(0, m.index) : this.buffer;
          this.buffer = m ? this.buffer.slice(m.index + m[0].length) : '';
          resolve({ output, code: m ? Number(m[1]) : undefined, stopped: stopped && !timedOut, timedOut, shellGone: !m });
          return;
        }
        if (opts.streamLines && this.buffer.split('\n').length > opts.streamLines) stop();
      };
      this.child.stdin.write(`{ . '${file}'; } </dev/null 2>&1; printf '\\n${marker}%s__\\n' "$?"\n`);
    });
  }

  /** Signals the processes this session's shell started (a foreground command, a background job). */
  private killChildren(signal: NodeJS.Signals, except: Set<number> = new Set()): void {
    for (const pid of childrenOf(this.child.pid ?? -1)) {
      if (except.has(pid)) continue;
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  }

  async close(): Promise<void> {
    this.killChildren('SIGKILL');
    if (!this.closed) {
      const gone = new Promise<void>((r) => this.child.once('close', () => r()));
      this.child.stdin.end('exit 0\n');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
      await gone;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The lines of an output (no trailing empty line). */
const outputLines = (output: string): string[] => (output === '' ? [] : output.replace(/\n$/, '').split('\n'));

function isJson(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

/** Whether an output line is an error answer: a JSON object with `error`, or a problem+json. */
function errorAnswer(line: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return false;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return 'error' in o || (typeof o.type === 'string' && o.type.startsWith('/docs/problems/')) || o.type === 'error';
}

// ---------------------------------------------------------------------------------------------
// Python

interface PythonResult {
  calls: [[string, string][], string][];
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stopped: boolean;
  timedOut: boolean;
  /** What `probe` answered just before a quiet watcher was stopped. */
  probed?: unknown;
}

/** A snippet that runs until stopped (a watcher loop). */
const isStreamingPython = (body: string): boolean => /\bwhile True:|stream=True/.test(body);

/**
 * Runs a snippet with print() recorded; a streaming one is stopped (SIGINT) after `streamLines`
 * prints, or, with 0, after QUIET_STREAM_MS and a call of `probe` (which sees it still running).
 */
function runPython(code: string, streamLines?: number, probe?: () => Promise<unknown>): Promise<PythonResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', PRINT_RECORDER, code], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONIOENCODING: 'utf-8', PYTHONDONTWRITEBYTECODE: '1' },
    });
    let stdout = '';
    let stderr = '';
    let stopped = false;
    let timedOut = false;
    let probed: unknown;
    const stop = (): void => {
      if (stopped || child.exitCode !== null) return;
      stopped = true;
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
    };
    const timer = setTimeout(
      () => {
        timedOut = true;
        stop();
      },
      streamLines === undefined ? PYTHON_TIMEOUT_MS : COMMAND_TIMEOUT_MS,
    );
    const quiet =
      streamLines === 0
        ? setTimeout(() => {
            void (probe ? probe() : Promise.resolve())
              .then(
                (v) => (probed = v),
                (err: Error) => (probed = err.message),
              )
              .finally(stop);
          }, QUIET_STREAM_MS)
        : undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (streamLines && stdout.split('\n').length > streamLines) stop();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(quiet);
      const calls = outputLines(stdout).map((l) => JSON.parse(l) as [[string, string][], string]);
      resolve({ calls, stderr, code, signal, stopped: stopped && !timedOut, timedOut, probed });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The test

const plan = (() => {
  try {
    return { value: planSteps() };
  } catch (err) {
    return { error: err as Error };
  }
})();

describe('the README followed in order: one terminal, one gateway, one fresh etcd', { timeout: 300_000 }, () => {
  let etcd: TestEtcd | undefined;
  let fixture: GatewayFixture;
  let shell: ShellSession | undefined;
  let host: string;
  /** Set when an example broke the session (the shell exited): the rest cannot run as a reader's would. */
  let broken: string | undefined;

  before(async () => {
    await requireEtcd3gw({ modules: ['requests', 'websocket'], hint: PYTHON_HINT });
    etcd = await startTestEtcd();
    fixture = await startGateway({ etcd });
    host = new URL(fixture.url).host;
    shell = new ShellSession();
  });

  after(async () => {
    try {
      await shell?.close();
      await fixture?.close();
    } finally {
      await etcd?.cleanup();
    }
  });

  if (plan.error) {
    it('parses the README', () => assert.fail(plan.error));
    return;
  }
  const { steps, unclaimed, unusedExclusions } = plan.value;

  it('runs or explicitly excludes every fence of the README', () => {
    assert.deepEqual(
      unclaimed.map((f) => `README.md:${f.line} (\`\`\`${f.lang}, ${f.section})`),
      [],
      'fences neither run (sh/python talking to 127.0.0.1:8080) nor in EXCLUDED',
    );
    assert.deepEqual(unusedExclusions, [], 'EXCLUDED entries that match no fence any more');
    assert.ok(steps.length >= 40, `expected the README's examples, found ${steps.length} steps`);
  });

  for (const step of steps) {
    const line = step.kind === 'sh' ? step.example.line : step.fence.line;
    const first = step.kind === 'sh' ? step.example.command.split('\n')[0] : `python (${step.fence.section})`;
    it(`README.md:${line}: ${first.length > 100 ? `${first.slice(0, 100)}…` : first}`, async () => {
      assert.equal(broken, undefined, `not run: ${broken}`);
      if (step.kind === 'sh') await runShellStep(step.example);
      else await runPythonStep(step.fence);
    });
  }

  async function runShellStep(example: ShellExample): Promise<void> {
    const where = `README.md:${example.line}`;
    const command = example.command.split(README_HOST).join(host);
    const streaming = isStreamingCommand(example.command);
    if (streaming) assert.ok(example.expected, `${where}: a streaming example (curl -N) must show the lines it prints`);
    const res = await shell!.run(command, { streamLines: streaming ? example.expected!.length : undefined });
    const details = `--- command (as run) ---\n${command}\n--- output ---\n${res.output}`;
    if (res.shellGone) {
      broken = `the shell session ended at ${where}`;
      assert.fail(`${where}: the shell session ended (an exit in the example?): ${details}`);
    }
    assert.ok(!res.timedOut, `${where}: did not finish (or show its lines) within ${COMMAND_TIMEOUT_MS} ms: ${details}`);
    if (!res.stopped) assert.equal(res.code, 0, `${where}: exit status ${res.code}: ${details}`);
    const lines = outputLines(res.output);
    if (example.expected === undefined) {
      const bad = lines.find(errorAnswer);
      assert.equal(bad, undefined, `${where}: answered an error where the README shows none: ${details}`);
      // A bare curl shows the gateway's answer: JSON (not, say, an HTML error page).
      if (/^curl\s/.test(example.command)) {
        const notJson = lines.find((l) => !isJson(l));
        assert.equal(notJson, undefined, `${where}: answered something other than JSON where the README shows nothing: ${details}`);
      }
      return;
    }
    const expected = example.expected;
    const shown = streaming ? lines.slice(0, expected.length) : lines;
    const why = linesMismatch(expected, shown);
    assert.equal(why, undefined, `${where}: ${why}\n--- expected (README) ---\n${expected.join('\n')}\n${details}`);
    for (const exp of expected) {
      const remark = compilePattern(exp).remark;
      if (remark !== undefined) await checkRemark(where, command, remark);
    }
  }

  /** Remarks after an expected output that this test knows how to check. */
  async function checkRemark(where: string, command: string, remark: string): Promise<void> {
    const second = /^a second call has no "([a-z_]+)"$/.exec(remark);
    assert.ok(second, `${where}: the remark "(${remark})" is not one this test knows how to check`);
    // Run the same command again, as the reader trying the remark would: no error, no such field.
    const res = await shell!.run(command);
    const what = `${where}, run a second time for the remark "(${remark})"\n--- output ---\n${res.output}`;
    assert.equal(res.code, 0, what);
    let json: unknown;
    assert.doesNotThrow(() => (json = JSON.parse(res.output)), what);
    assert.ok(json && typeof json === 'object' && !('error' in json), `second call answered an error: ${what}`);
    assert.ok(!(second[1] in json), `second call still has "${second[1]}": ${what}`);
  }

  async function runPythonStep(fence: Fence): Promise<void> {
    const where = `README.md:${fence.line}`;
    const streaming = isStreamingPython(fence.body);
    const expectations = printExpectations(fence, { allowBare: streaming });
    if (!streaming) assert.ok(expectations.length > 0, `${where}: the Python example prints nothing to check`);
    if (fence.section === 'The keys API (/v1/)') {
      assert.ok(!/^import (?!requests$)|^from /m.test(fence.body), `${where}: the /v1/ example imports nothing but requests`);
    }
    const port = host.split(':')[1];
    const code = fence.body.split(README_HOST).join(host).split('port=8080').join(`port=${port}`);
    // A watcher that prints nothing until something changes: the gateway's /stats must show the
    // watch it opened (one that cannot connect retries silently, and would pass unseen).
    const watches = async (): Promise<number> => ((await (await fetch(`${fixture.url}/stats`)).json()) as { watch: { watches: number } }).watch.watches;
    const before = streaming && expectations.length === 0 ? await watches() : undefined;
    const res = await runPython(code, streaming ? expectations.length : undefined, before === undefined ? undefined : watches);
    const details = `--- code (as run) ---\n${code}\n--- printed ---\n${res.calls.map((c) => c[1]).join('\n')}\n--- stderr ---\n${res.stderr}`;
    if (/ModuleNotFoundError|ImportError/.test(res.stderr)) assert.fail(`${where}: missing Python module; run: ${PYTHON_HINT}\n${details}`);
    assert.ok(!res.timedOut, `${where}: the Python example did not finish (or print its lines) in time: ${details}`);
    if (streaming) {
      // A watcher runs until the reader stops it: it must still be running when stopped.
      assert.ok(res.stopped, `${where}: the watcher ended by itself (exit ${res.code ?? res.signal}), a reader would stop it: ${details}`);
      const traceback = res.stderr.replace(/Traceback[\s\S]*KeyboardInterrupt\s*$/, '').trim();
      assert.equal(traceback, '', `${where}: the watcher wrote errors before it was stopped: ${details}`);
      if (before !== undefined) {
        assert.ok(
          typeof res.probed === 'number' && res.probed > before,
          `${where}: the watcher printed nothing and opened no watch (/stats watches ${before} before, ${String(res.probed)} while it ran): ${details}`,
        );
      }
    } else {
      assert.equal(res.code, 0, `${where}: the Python example failed (exit ${res.code ?? res.signal}): ${details}`);
      assert.equal(res.calls.length, expectations.length, `${where}: expected ${expectations.length} print() calls: ${details}`);
    }
    expectations.forEach((exp, i) => {
      const call = res.calls[i];
      assert.ok(call, `README.md:${exp.line}: ${exp.statement} printed nothing: ${details}`);
      const why = printMismatch(exp.comment, call);
      assert.equal(why, undefined, `README.md:${exp.line}: ${exp.statement}  # ${exp.comment}: ${why}\n${details}`);
    });
  }
});

// The matcher is shared with readme.test.ts; a quick check that multi-line outputs are per line.
describe('expected-output lines', () => {
  it('match one pattern per output line, and the number of lines', () => {
    assert.equal(linesMismatch(['ETag: "…"', 'X-Etcd-Version: 1'], ['ETag: "2"', 'X-Etcd-Version: 1']), undefined);
    assert.ok(linesMismatch(['204'], ['204', '204']));
    assert.ok(linesMismatch(['{"a":{…}}'], ['{"a":1}']));
    assert.equal(mismatch(compilePattern('{"a":{…}}'), '{"a":{}}'), undefined);
  });
});
