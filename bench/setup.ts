// Shared by the bench and soak scripts (and the tests that run the gateway as its own process): the
// gateway as a child process (`node dist/src/main.js`), /proc sampling, bounded waits and logging.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A logger writing `[tag] message` lines to stderr (stdout is for results). */
export function makeLog(tag: string): (msg: string) => void {
  return (msg) => void process.stderr.write(`[${tag}] ${msg}\n`);
}

/** A positive whole number from a command-line option; `dflt` when the option is absent. */
export function positiveInt(name: string, raw: string | undefined, dflt?: number): number {
  if (raw === undefined && dflt !== undefined) return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name}: expected a positive integer, got "${raw}"`);
  return n;
}

/** Runs a script's main: a failure is printed with its stack and exits 1; an exit code it resolves
 *  with is the process's; otherwise the process ends by itself. */
export function runMain(what: string, main: () => Promise<number | void>): void {
  main().then(
    (code) => {
      if (typeof code === 'number') process.exit(code);
    },
    (err: unknown) => {
      process.stderr.write(`${what} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** `p`, or a rejection naming `what` after `ms` (calling `onTimeout` first). */
export function withTimeout<T>(what: string, p: Promise<T>, ms: number, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout?.();
        reject(new Error(`${what}: no result within ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export interface ProcSample {
  /** utime + stime, ms. */
  cpuMs: number;
  rssBytes: number;
}

const CLK_TCK = 100; // Linux USER_HZ: 100 on every mainstream architecture.

/** CPU time and resident memory of a process, from /proc. */
export async function procSample(pid: number): Promise<ProcSample> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name (which may hold spaces): state is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK; // utime, stime: fields 14, 15
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssBytes = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
  return { cpuMs, rssBytes };
}

export interface GatewayProcess {
  child: ChildProcess;
  pid: number;
  /** http://127.0.0.1:<port> */
  url: string;
  /** ws://127.0.0.1:<port> */
  wsUrl: string;
  /** The last 256 KiB of its stdout (and stderr, unless inherited). */
  output(): string;
  /** Calls `listener` with every later line of its stdout; returns the unsubscribe function. */
  onLine(listener: (line: string) => void): () => void;
  /** Exit code or signal once it has exited; undefined while it runs. */
  exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM, then SIGKILL if it has not exited within `killAfterMs` (default 5 s). */
  stop(killAfterMs?: number): Promise<void>;
}

const OUTPUT_KEPT = 256 * 1024;

/**
 * Starts `node [nodeArgs] dist/src/main.js` on a free loopback port with ETCD_ENDPOINTS, HOST=127.0.0.1,
 * PORT=0 and LOG_LEVEL=warn (each overridable by `env`), and waits (at most `startTimeoutMs`) until it
 * prints where it listens.
 */
export async function startGatewayProcess(opts: {
  etcdUrl: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
  /** The gateway's entry point: this build's dist/src/main.js unless another build's is given. */
  main?: string;
  /** Run it with --expose-gc and heap-probe.js, for heapAfterGc(). */
  heapProbe?: boolean;
  startTimeoutMs?: number;
  /** Where its stderr goes: ours (default), or kept with its output. */
  stderr?: 'inherit' | 'pipe';
}): Promise<GatewayProcess> {
  const main = opts.main ?? path.join(__dirname, '..', 'src', 'main.js');
  const probe = opts.heapProbe ? ['--expose-gc', '-r', path.join(__dirname, 'heap-probe.js')] : [];
  const child = spawn(process.execPath, [...probe, ...(opts.nodeArgs ?? []), main], {
    env: { ...process.env, ETCD_ENDPOINTS: opts.etcdUrl, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ...opts.env },
    stdio: ['ignore', 'pipe', opts.stderr ?? 'inherit'],
  });
  let out = '';
  let partial = '';
  const listeners = new Set<(line: string) => void>();
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > OUTPUT_KEPT) out = out.slice(-OUTPUT_KEPT);
  };
  child.stdout!.on('data', (d: Buffer) => {
    keep(d);
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    if (partial.length > OUTPUT_KEPT) partial = '';
    for (const line of lines) for (const l of listeners) l(line);
  });
  child.stderr?.on('data', keep);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve();
    }),
  );
  const stop = async (killAfterMs = 5_000): Promise<void> => {
    if (exitInfo || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    await exited;
    clearTimeout(timer);
  };
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`gateway did not say where it listens within ${startTimeoutMs} ms:\n${out}`)), startTimeoutMs);
    const onLine = (line: string): void => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) done(undefined, Number(m[1]));
    };
    const onExit = (): void => done(new Error(`gateway exited during start (${exitInfo?.signal ?? exitInfo?.code}):\n${out}`));
    function done(err?: Error, value?: number): void {
      clearTimeout(timer);
      listeners.delete(onLine);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(value!);
    }
    listeners.add(onLine);
    child.once('exit', onExit);
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    child,
    pid: child.pid!,
    url,
    wsUrl: `ws://127.0.0.1:${port}`,
    output: () => out,
    onLine(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    exit: () => exitInfo,
    stop,
  };
}

/** heapUsed, RSS and external memory (Buffers: what a socket's unread input is held in) of a gateway
 *  started with `heapProbe`, after two full garbage collections in it. */
export function heapAfterGc(gw: GatewayProcess, timeoutMs = 15_000): Promise<{ heapUsed: number; rss: number; external: number }> {
  let off = (): void => undefined;
  const line = new Promise<{ heapUsed: number; rss: number; external: number; gc: boolean }>((resolve) => {
    off = gw.onLine((l) => {
      if (l.startsWith('HEAP-PROBE ')) resolve(JSON.parse(l.slice('HEAP-PROBE '.length)) as { heapUsed: number; rss: number; external: number; gc: boolean });
    });
  });
  gw.child.kill('SIGUSR2');
  return withTimeout('heap probe of the gateway', line, timeoutMs)
    .then((m) => {
      if (!m.gc) throw new Error('the gateway runs without --expose-gc');
      return { heapUsed: m.heapUsed, rss: m.rss, external: m.external };
    })
    .finally(off);
}
