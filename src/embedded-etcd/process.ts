// Runs etcd as a child process: the gateway's embedded default and the test harness both use this.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

const INSTALL_HINT =
  'Set ETCD_BIN to the path of an etcd binary, or put `etcd` on PATH ' +
  '(e.g. on Debian/Ubuntu: `apt-get install etcd-server`).';

export class EtcdMissingError extends Error {
  constructor(detail = 'etcd binary not found.') {
    super(`${detail} ${INSTALL_HINT}`);
    this.name = 'EtcdMissingError';
  }
}

/** Thrown when etcd exits or never turns healthy during start; carries its log tail for diagnosis. */
export class EtcdStartError extends Error {
  constructor(
    message: string,
    readonly logTail: string,
    readonly addressInUse: boolean,
  ) {
    super(`${message}\n--- last etcd log lines ---\n${logTail || '(no output)'}`);
    this.name = 'EtcdStartError';
  }
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function searchPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    // An empty PATH entry means "current directory"; never pick up a binary from wherever we happen to run.
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export function findEtcdBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.ETCD_BIN;
  if (explicit) {
    const resolved = path.resolve(explicit);
    // An explicit choice that is wrong must not silently fall back to some other etcd on PATH.
    if (!isExecutableFile(resolved)) {
      throw new EtcdMissingError(`ETCD_BIN is set to ${explicit}, which is not an executable file.`);
    }
    return resolved;
  }
  return searchPath('etcd', env);
}

const INSTALL_TIMEOUT_MS = 5 * 60_000;

function runLogged(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // Our stdout may carry structured output (JSON logs), so apt's chatter goes to stderr.
    const child = spawn(cmd, args, { stdio: ['ignore', 2, 2], env });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit code ${code}`})`));
    });
  });
}

export async function ensureEtcdBinary(opts: {
  install: boolean;
  log: (msg: string) => void;
  env?: NodeJS.ProcessEnv;
}): Promise<string> {
  const env = opts.env ?? process.env;
  const found = findEtcdBinary(env);
  if (found) return found;

  const aptGet = searchPath('apt-get', env);
  const isRoot = process.getuid?.() === 0;
  if (!opts.install || !isRoot || !aptGet) {
    const why = !opts.install
      ? ''
      : !isRoot
        ? ' (automatic install needs root)'
        : ' (automatic install needs apt-get)';
    throw new EtcdMissingError(`etcd binary not found${why}.`);
  }

  const aptEnv = { ...env, DEBIAN_FRONTEND: 'noninteractive' };
  // One deadline for both steps so the whole install is bounded, not each step separately.
  const deadline = Date.now() + INSTALL_TIMEOUT_MS;
  opts.log('etcd not found; installing it with `apt-get update && apt-get install -y etcd-server`');
  try {
    await runLogged(aptGet, ['update'], aptEnv, deadline - Date.now());
    await runLogged(aptGet, ['install', '-y', 'etcd-server'], aptEnv, Math.max(1, deadline - Date.now()));
  } catch (err) {
    throw new EtcdMissingError(`Installing etcd-server failed: ${(err as Error).message}.`);
  }
  const installed = findEtcdBinary(env);
  if (!installed) throw new EtcdMissingError('etcd-server was installed but no etcd binary appeared on PATH.');
  opts.log(`installed etcd at ${installed}`);
  return installed;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Distinct free ports; the OS may hand back a just-released port twice, so de-duplicate. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let attempts = 0; ports.size < count; attempts++) {
    if (attempts > count * 20) throw new Error(`could not find ${count} distinct free ports`);
    ports.add(await freePort());
  }
  return [...ports];
}

export interface EtcdProcess {
  name: string;
  clientUrl: string;
  peerUrl: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  pid: number | undefined;
  /** Last ~200 lines of etcd's stdout+stderr. */
  logs(): string;
  /** SIGTERM, SIGKILL after 5 s; resolves once the process has exited. */
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  /** Start again with the same ports and data dir; waits until healthy. */
  restart(): Promise<void>;
  /** SIGSTOP */
  pause(): void;
  /** SIGCONT */
  resume(): void;
  waitExit(): Promise<number | null>;
}

export interface StartEtcdOptions {
  bin: string;
  dataDir: string;
  name?: string;
  clientPort?: number;
  peerPort?: number;
  /** "n1=http://127.0.0.1:p1,n2=..." for multi-member clusters; default: just this member. */
  initialCluster?: string;
  initialClusterState?: 'new' | 'existing';
  extraArgs?: string[];
  /** Default true. */
  waitHealthy?: boolean;
  /** Default 20000. */
  healthTimeoutMs?: number;
}

const LOG_LINES = 200;
const ERROR_LOG_LINES = 30;
// zap lines are ~1-2 KB; the cap only guards memory against a pathological line without newlines.
const MAX_LINE_CHARS = 16_384;
const STOP_GRACE_MS = 5_000;
const KILL_WAIT_MS = 5_000;
const HEALTH_POLL_MS = 50;

class LogRing {
  private lines: string[] = [];
  private partial = new Map<NodeJS.ReadableStream, string>();

  attach(stream: NodeJS.ReadableStream | null): void {
    if (!stream) return;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => this.write(stream, chunk));
    stream.on('end', () => this.flush(stream));
  }

  push(line: string): void {
    this.lines.push(line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line);
    if (this.lines.length > LOG_LINES) this.lines.splice(0, this.lines.length - LOG_LINES);
  }

  tail(n = LOG_LINES): string {
    const pending = [...this.partial.values()].filter((p) => p.length > 0);
    return [...this.lines, ...pending].slice(-n).join('\n');
  }

  private write(stream: NodeJS.ReadableStream, chunk: string): void {
    const parts = ((this.partial.get(stream) ?? '') + chunk).split('\n');
    const rest = parts.pop() ?? '';
    for (const line of parts) this.push(line);
    this.partial.set(stream, rest.length > MAX_LINE_CHARS ? rest.slice(-MAX_LINE_CHARS) : rest);
  }

  private flush(stream: NodeJS.ReadableStream): void {
    const rest = this.partial.get(stream);
    if (rest) this.push(rest);
    this.partial.delete(stream);
  }
}

// One process-wide 'exit' listener for all children rather than one per child, which would trip
// the MaxListeners warning with bigger clusters. 'exit' handlers must be synchronous: SIGKILL is.
const liveChildren = new Set<ChildProcess>();
function killLiveChildren(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone; nothing left to clean up.
    }
  }
}
function track(child: ChildProcess): void {
  if (liveChildren.size === 0) process.on('exit', killLiveChildren);
  liveChildren.add(child);
}
function untrack(child: ChildProcess): void {
  if (!liveChildren.delete(child)) return;
  if (liveChildren.size === 0) process.removeListener('exit', killLiveChildren);
}

// The child must be configured only by our flags: inherited ETCD_* variables (e.g. from a
// container image) would otherwise add listeners or TLS settings behind our back, and ETCD_BIN
// itself makes etcd warn about an unknown variable.
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD_')) env[k] = v;
  return env;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Running {
  child: ChildProcess;
  exited: Promise<number | null>;
  hasExited: boolean;
  paused: boolean;
}

class EtcdChild implements EtcdProcess {
  readonly clientUrl: string;
  readonly peerUrl: string;
  private readonly ring = new LogRing();
  private current: Running | undefined;

  constructor(
    readonly name: string,
    readonly bin: string,
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly args: string[],
    private readonly healthTimeoutMs: number,
  ) {
    this.clientUrl = `http://127.0.0.1:${clientPort}`;
    this.peerUrl = `http://127.0.0.1:${peerPort}`;
  }

  get pid(): number | undefined {
    return this.current && !this.current.hasExited ? this.current.child.pid : undefined;
  }

  logs(): string {
    return this.ring.tail();
  }

  spawnChild(): void {
    const child = spawn(this.bin, this.args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
    this.ring.attach(child.stdout);
    this.ring.attach(child.stderr);
    const running: Running = { child, hasExited: false, paused: false, exited: Promise.resolve(null) };
    running.exited = new Promise<number | null>((resolve) => {
      const done = (code: number | null): void => {
        if (running.hasExited) return;
        running.hasExited = true;
        untrack(child);
        resolve(code);
      };
      child.once('exit', (code, signal) => {
        if (signal) this.ring.push(`[etcd-process] ${this.name} killed by ${signal}`);
        done(code);
      });
      // 'error' (ENOENT, EACCES, ...) may arrive without any 'exit'.
      child.once('error', (err) => {
        this.ring.push(`[etcd-process] failed to run ${this.bin}: ${err.message}`);
        done(null);
      });
    });
    this.current = running;
    if (child.pid !== undefined) track(child);
  }

  async waitHealthy(): Promise<void> {
    const running = this.current;
    if (!running) throw new Error('etcd is not running');
    const started = Date.now();
    const deadline = started + this.healthTimeoutMs;
    while (Date.now() < deadline) {
      if (running.hasExited) break;
      if (await this.probeHealth(Math.min(1_000, Math.max(1, deadline - Date.now())))) return;
      // etcd says after 10 s that another process holds its database's file lock, and then waits for
      // ever: that is the cause to report, now.
      if (this.ring.tail(ERROR_LOG_LINES).includes('db file is flocked by another process')) {
        await this.forceKill().catch((err: Error) => this.ring.push(`[etcd-process] ${err.message}`));
        throw new EtcdStartError(
          `etcd ${this.name}: its data dir ${this.dataDir} is locked by another etcd process (its database file is flocked): stop that one (pgrep -af 'data-dir ${this.dataDir}')`,
          this.ring.tail(ERROR_LOG_LINES),
          false,
        );
      }
      // Waking on exit as well keeps a crashing etcd from costing a full poll interval.
      await Promise.race([sleep(HEALTH_POLL_MS), running.exited]);
    }
    const tail = this.ring.tail(ERROR_LOG_LINES);
    const addressInUse = tail.includes('address already in use');
    if (running.hasExited) {
      const code = await running.exited;
      throw new EtcdStartError(
        `etcd ${this.name} exited during start (exit code ${code ?? 'none'}) after ${Date.now() - started} ms`,
        tail,
        addressInUse,
      );
    }
    // The timeout is the error worth reporting; a failed kill is already in the log tail.
    await this.forceKill().catch((err: Error) => this.ring.push(`[etcd-process] ${err.message}`));
    throw new EtcdStartError(
      `etcd ${this.name} did not become healthy at ${this.clientUrl}/health within ${this.healthTimeoutMs} ms`,
      this.ring.tail(ERROR_LOG_LINES),
      addressInUse,
    );
  }

  private async probeHealth(timeoutMs: number): Promise<boolean> {
    try {
      const res = await fetch(`${this.clientUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
      const body = (await res.json()) as { health?: unknown };
      return res.ok && body.health === 'true';
    } catch {
      return false;
    }
  }

  private async waitExitFor(running: Running, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([running.exited.then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async forceKill(): Promise<void> {
    const running = this.current;
    if (!running || running.hasExited) return;
    running.child.kill('SIGKILL');
    if (!(await this.waitExitFor(running, KILL_WAIT_MS))) {
      throw new Error(`etcd ${this.name} (pid ${running.child.pid}) did not exit after SIGKILL`);
    }
  }

  async stop(): Promise<void> {
    const running = this.current;
    if (!running || running.hasExited) return;
    // A stopped process cannot act on SIGTERM, so it would always end up SIGKILLed.
    if (running.paused) this.resume();
    running.child.kill('SIGTERM');
    if (await this.waitExitFor(running, STOP_GRACE_MS)) return;
    this.ring.push(`[etcd-process] ${this.name} ignored SIGTERM for ${STOP_GRACE_MS} ms; sending SIGKILL`);
    await this.forceKill();
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    const running = this.current;
    if (!running || running.hasExited) return;
    running.child.kill(signal);
  }

  async restart(): Promise<void> {
    await this.stop();
    this.ring.push(`[etcd-process] restarting ${this.name}`);
    this.spawnChild();
    await this.waitHealthy();
  }

  pause(): void {
    const running = this.current;
    if (!running || running.hasExited) return;
    running.child.kill('SIGSTOP');
    running.paused = true;
  }

  resume(): void {
    const running = this.current;
    if (!running || running.hasExited) return;
    running.child.kill('SIGCONT');
    running.paused = false;
  }

  waitExit(): Promise<number | null> {
    return this.current ? this.current.exited : Promise.resolve(null);
  }
}

const PORT_ATTEMPTS = 3;

export function startEtcd(opts: StartEtcdOptions): Promise<EtcdProcess> {
  return startEtcdChild(opts);
}

async function startEtcdChild(opts: StartEtcdOptions): Promise<EtcdChild> {
  const autoPorts = opts.clientPort === undefined || opts.peerPort === undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEtcdOnce(opts);
    } catch (err) {
      // A port we picked can be taken by someone else before etcd binds it; that race is
      // ours to absorb, but a caller-chosen port that is busy is the caller's error.
      const retry = autoPorts && err instanceof EtcdStartError && err.addressInUse && attempt < PORT_ATTEMPTS;
      if (!retry) throw err;
    }
  }
}

async function startEtcdOnce(opts: StartEtcdOptions): Promise<EtcdChild> {
  const name = opts.name ?? 'default';
  const [clientPort, peerPort] =
    opts.clientPort !== undefined && opts.peerPort !== undefined
      ? [opts.clientPort, opts.peerPort]
      : await pickPorts(opts.clientPort, opts.peerPort);
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name', name,
    '--data-dir', opts.dataDir,
    '--listen-client-urls', clientUrl,
    '--advertise-client-urls', clientUrl,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', opts.initialCluster ?? `${name}=${peerUrl}`,
    '--initial-cluster-state', opts.initialClusterState ?? 'new',
    '--initial-cluster-token', 'etcd-json-gateway',
    '--logger', 'zap',
    '--log-outputs', 'stderr',
    ...(opts.extraArgs ?? []),
  ];
  const etcd = new EtcdChild(name, opts.bin, opts.dataDir, clientPort, peerPort, args, opts.healthTimeoutMs ?? 20_000);
  etcd.spawnChild();
  if (opts.waitHealthy ?? true) await etcd.waitHealthy();
  return etcd;
}

async function pickPorts(clientPort: number | undefined, peerPort: number | undefined): Promise<[number, number]> {
  const taken = new Set([clientPort, peerPort].filter((p): p is number => p !== undefined));
  const fresh = (await freePorts(2 + taken.size)).filter((p) => !taken.has(p));
  return [clientPort ?? fresh[0], peerPort ?? fresh[1]];
}

export async function startEtcdCluster(opts: {
  bin: string;
  baseDir: string;
  size: number;
  healthTimeoutMs?: number;
}): Promise<EtcdProcess[]> {
  if (!Number.isInteger(opts.size) || opts.size < 1) throw new Error(`invalid cluster size ${opts.size}`);
  // Every member needs the full peer list up front, so all ports are fixed before anything starts.
  const ports = await freePorts(opts.size * 2);
  const members = Array.from({ length: opts.size }, (_, i) => ({
    name: `n${i + 1}`,
    clientPort: ports[2 * i],
    peerPort: ports[2 * i + 1],
  }));
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  // Members are only healthy once a quorum is up, so they must start concurrently and be
  // checked for health afterwards, not one by one.
  const started = await Promise.all(
    members.map((m) =>
      startEtcdChild({
        bin: opts.bin,
        dataDir: path.join(opts.baseDir, m.name),
        name: m.name,
        clientPort: m.clientPort,
        peerPort: m.peerPort,
        initialCluster,
        initialClusterState: 'new',
        waitHealthy: false,
        healthTimeoutMs: opts.healthTimeoutMs ?? 30_000,
      }),
    ),
  );
  const health = await Promise.allSettled(started.map((m) => m.waitHealthy()));
  const failed = health.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    // Not a graceful stop: SIGTERM to all members at once stalls the leader's leadership transfer.
    await Promise.allSettled(
      started.map((m) => {
        m.kill('SIGKILL');
        return m.stop();
      }),
    );
    throw failed.reason;
  }
  return started;
}

interface PersistedPorts {
  clientPort: number;
  peerPort: number;
}

async function readPersistedPorts(file: string): Promise<PersistedPorts | undefined> {
  try {
    const data = JSON.parse(await readFile(file, 'utf8')) as Partial<PersistedPorts>;
    const valid = (p: unknown): p is number => Number.isInteger(p) && (p as number) > 0 && (p as number) < 65536;
    if (valid(data.clientPort) && valid(data.peerPort) && data.clientPort !== data.peerPort) {
      return { clientPort: data.clientPort, peerPort: data.peerPort };
    }
  } catch {
    // Missing or corrupt: the file is only a preference, fresh ports are always acceptable.
  }
  return undefined;
}

/**
 * The gateway's local single-member etcd. etcd 3.4 restarts fine from an existing data dir on
 * different ports, but the member's peer URL recorded in the cluster stays the first one, so the
 * last ports are remembered in `<dataDir>.ports.json` and reused while they are free.
 */
export async function startEmbeddedEtcd(opts: {
  bin: string;
  dataDir: string;
  log: (msg: string) => void;
}): Promise<EtcdProcess> {
  const dataDir = path.resolve(opts.dataDir);
  // etcd warns about data dirs readable by others.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const portsFile = `${dataDir}.ports.json`;
  const previous = await readPersistedPorts(portsFile);
  const lock = await claimDataDir(dataDir, previous);
  const reusable =
    previous && (await portIsFree(previous.clientPort)) && (await portIsFree(previous.peerPort)) ? previous : undefined;
  if (previous && !reusable) opts.log(`embedded etcd: previous ports ${previous.clientPort}/${previous.peerPort} are busy; picking new ones`);

  const begin = Date.now();
  opts.log(`starting embedded etcd (${opts.bin}, data dir ${dataDir})`);
  let etcd: EtcdProcess;
  try {
    try {
      etcd = await startEtcd({ bin: opts.bin, dataDir, name: 'default', ...reusable });
    } catch (err) {
      // The remembered ports can be grabbed between the check and etcd's bind.
      if (!(reusable && err instanceof EtcdStartError && err.addressInUse)) throw err;
      opts.log('embedded etcd: remembered ports were taken meanwhile; retrying on new ones');
      etcd = await startEtcd({ bin: opts.bin, dataDir, name: 'default' });
    }
  } catch (err) {
    await lock.release();
    throw err;
  }

  try {
    const tmp = `${portsFile}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ clientPort: etcd.clientPort, peerPort: etcd.peerPort })}\n`);
    await rename(tmp, portsFile);
  } catch (err) {
    opts.log(`embedded etcd: could not remember ports in ${portsFile}: ${(err as Error).message}`);
  }
  opts.log(`embedded etcd ready at ${etcd.clientUrl} (pid ${etcd.pid}, ${Date.now() - begin} ms)`);
  const stop = etcd.stop.bind(etcd);
  etcd.stop = async () => {
    await stop();
    await lock.release();
  };
  return etcd;
}

/** A data dir that another gateway's embedded etcd holds: said at once, in one line, with what to do,
 *  instead of etcd waiting on its database's file lock until the start times out. */
export class DataDirInUseError extends Error {
  constructor(dataDir: string, pid: number, clientPort: number | undefined) {
    const shared = clientPort ? `, use its etcd with ETCD_ENDPOINTS=http://127.0.0.1:${clientPort}` : '';
    super(`the embedded etcd's data dir ${dataDir} is in use by another gateway (pid ${pid}): stop that one${shared}, or give this one its own DATA_DIR`);
    this.name = 'DataDirInUseError';
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** `<dataDir>.lock`, holding this process's pid while its embedded etcd runs. A lock left by a process
 *  that is gone (killed with SIGKILL) is taken over. Created with `wx`, so two gateways starting at
 *  once cannot both take it. */
async function claimDataDir(dataDir: string, ports: PersistedPorts | undefined): Promise<{ release(): Promise<void> }> {
  const file = `${dataDir}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      return { release: () => rm(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processIsAlive(holder)) {
      throw new DataDirInUseError(dataDir, holder, ports?.clientPort);
    }
    await rm(file, { force: true });
  }
  throw new Error(`could not take ${file}`);
}
