// The lock-safety checker (issue 22 §2), shared by `npm run check:locks` and test/lock-safety.test.ts.
//
// A real etcd and the gateway as its own process; N clients contend for a few locks through /v1/locks
// and /v3/lock/lock with random TTLs (1-10 s), waits (0-30 s) and hold times (some past their TTL),
// some keeping their lease alive and some not, some abandoning a waiting request (the HTTP request
// aborted), some run as `curl` child processes killed with SIGKILL mid-wait; meanwhile the gateway is
// restarted (SIGTERM or SIGKILL) and etcd is killed (SIGKILL) and started again on its data dir.
// Every "you hold it" answer is recorded (key, lease, fencing token, answer revision, wall-clock time)
// and every release. Then etcd's own history is read (a watch on the lock prefix from revision 1) and
// replayed: at each revision the holder of a lock is the existing key with the lowest create revision.
// Proven for every answer: its key existed at its answer revision with that lease (and, on /v1/, the
// fencing token it was told is that key's create revision), and was the holder there; holders' spans
// in etcd's history (answer revision to the key's deletion) never overlap; fencing tokens increase
// with each new holder. Every loop is bounded in count and time; everything listens on 127.0.0.1.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findEtcdBinary, startEtcd, type EtcdProcess } from '../src/embedded-etcd/process';
import { sleep, startGatewayProcess, type GatewayProcess } from './setup';
import { Rng } from '../test/support/fuzz';

export interface CheckOptions {
  seconds: number;
  clients: number;
  locks: number;
  /** Restart the gateway and kill etcd during the run (default true)... */
  chaos?: boolean;
  /** ...one of them every this many seconds, at random between the two (default 15 to 30). */
  chaosEvery?: [number, number];
  log?: (msg: string) => void;
  /** Seed of the random choices, printed so that a failing run can be told apart. */
  seed?: number;
  /** Another build's dist/src/main.js (to show the checker catches an older gateway's bugs). */
  gatewayMain?: string;
}

/** A "you hold it" answer. */
interface Holding {
  api: 'v1' | 'v3';
  name: string;
  key: string;
  lease: string;
  /** The fencing token the answer gave (/v1/), or undefined (/v3/ answers none). */
  token?: number;
  /** The store revision the answer says the lock was held at. */
  revision: number;
  answeredAt: number;
  releasedAt?: number;
  release?: string;
}

export interface CheckReport {
  seed: number;
  attempts: number;
  acquired: number;
  refused: number;
  expiredWhileWaiting: number;
  abandoned: number;
  killed: number;
  released: number;
  releaseFoundGone: number;
  errors: number;
  errorKinds: Record<string, number>;
  gatewayRestarts: number;
  etcdRestarts: number;
  events: number;
  violations: string[];
}


const PREFIX = 'chk/';
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString();
const MAX_ATTEMPTS_PER_CLIENT = 5_000;

/** Why a request got no answer: the socket error's code (ECONNREFUSED...) or the error's name. */
function why(err: unknown): string {
  if (!(err instanceof Error)) return 'error';
  return (err.cause as { code?: string } | undefined)?.code ?? err.name;
}

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function request(url: string, method: string, body: object | undefined, timeoutMs: number, abort?: AbortSignal): Promise<Answer> {
  const signals = [AbortSignal.timeout(timeoutMs), ...(abort ? [abort] : [])];
  const res = await fetch(url, { method, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.any(signals) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}

export async function checkLocks(opts: CheckOptions): Promise<CheckReport> {
  const log = opts.log ?? (() => undefined);
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const generator = new Rng(seed);
  const random = (): number => generator.next();
  const pick = (lo: number, hi: number): number => lo + random() * (hi - lo);
  const chance = (p: number): boolean => random() < p;
  const report: CheckReport = {
    seed,
    attempts: 0,
    acquired: 0,
    refused: 0,
    expiredWhileWaiting: 0,
    abandoned: 0,
    killed: 0,
    released: 0,
    releaseFoundGone: 0,
    errors: 0,
    errorKinds: {},
    gatewayRestarts: 0,
    etcdRestarts: 0,
    events: 0,
    violations: [],
  };
  const holdings: Holding[] = [];
  /** An attempt that ended in neither an answer about the lock nor an abandonment, by kind. */
  const failed = (kind: string): void => {
    report.errors++;
    report.errorKinds[kind] = (report.errorKinds[kind] ?? 0) + 1;
  };
  const bin = findEtcdBinary();
  if (!bin) throw new Error('the lock checker needs a real etcd (ETCD_BIN or etcd on PATH)');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'check-locks-'));
  let etcd: EtcdProcess | undefined;
  let gw: GatewayProcess | undefined;
  const env = { LOCK_WAIT_MS: '30000' };
  try {
    etcd = await startEtcd({ bin, dataDir });
    gw = await startGatewayProcess({ etcdUrl: etcd.clientUrl, env, main: opts.gatewayMain });
    const etcdUrl = etcd.clientUrl;
    let gatewayUrl: string | undefined = gw.url;
    const endAt = Date.now() + opts.seconds * 1000;
    const names = Array.from({ length: opts.locks }, (_, i) => `${PREFIX}lock-${i}`);

    /** Holds a lock it was told it holds, renewing or not, then releases it. */
    const hold = async (h: Holding, ttl: number, renew: (url: string) => Promise<unknown>, release: (url: string) => Promise<Answer>): Promise<void> => {
      const holdMs = Math.min(pick(0, 1.5 * ttl * 1000), Math.max(0, endAt - Date.now()) + 1000);
      const keeps = chance(0.7);
      const until = Date.now() + holdMs;
      for (let i = 0; i < 1000 && Date.now() < until; i++) {
        await sleep(Math.min(until - Date.now(), (ttl * 1000) / 3));
        if (keeps && gatewayUrl && Date.now() < until) await renew(gatewayUrl).catch(() => undefined);
      }
      for (let i = 0; i < 20; i++) {
        const url = gatewayUrl;
        if (!url) {
          await sleep(250);
          continue;
        }
        try {
          const answer = await release(url);
          h.releasedAt = Date.now();
          h.release = String(answer.status);
          if (answer.status === 204 || answer.status === 200) report.released++;
          else if (answer.status === 404) report.releaseFoundGone++;
          else {
            await sleep(250);
            continue;
          }
          return;
        } catch {
          await sleep(250);
        }
      }
    };

    const v1Attempt = async (url: string, name: string): Promise<void> => {
      const ttl = Math.floor(pick(1, 11));
      const waitS = chance(0.2) ? 0 : Math.floor(pick(0, 31));
      const own = chance(0.3);
      let lease: string | undefined;
      if (own) {
        const granted = await request(`${url}/v1/leases?ttl=${ttl}`, 'POST', undefined, 5000);
        if (granted.status !== 201) return failed(`v1 grant ${granted.status}`);
        lease = granted.body.lease as string;
      }
      const target = `${url}/v1/locks/${name}?wait=${waitS}s&${own ? `lease=${lease}` : `ttl=${ttl}`}`;
      const aborter = new AbortController();
      const abandon = chance(0.1) && waitS > 0;
      const abandonTimer = abandon ? setTimeout(() => aborter.abort(), pick(0, waitS * 1000)) : undefined;
      // A lease of the client's own: it keeps it alive while it waits, or not (then expect 410).
      const keepsWhileWaiting = own && chance(0.6);
      let waiting = true;
      const renewer = keepsWhileWaiting
        ? (async () => {
            for (let i = 0; i < 1000 && waiting; i++) {
              await sleep((ttl * 1000) / 3);
              if (waiting && gatewayUrl) await request(`${gatewayUrl}/v1/leases/${lease}/keepalive`, 'POST', undefined, 5000).catch(() => undefined);
            }
          })()
        : undefined;
      let answer: Answer;
      try {
        answer = await request(target, 'POST', undefined, waitS * 1000 + 15_000, aborter.signal);
      } catch (err) {
        if (aborter.signal.aborted) report.abandoned++;
        else failed(`v1 ${why(err)}`);
        return;
      } finally {
        waiting = false;
        clearTimeout(abandonTimer);
        await renewer;
      }
      await v1Answer(answer, name, ttl);
    };

    /** The store's revision now, for an answer that names none (a gateway older than issue 22). */
    const revisionNow = async (): Promise<number> =>
      Number((await request(`${etcdUrl}/v3/kv/range`, 'POST', { key: b64(PREFIX), count_only: true }, 5000)).body.header.revision);

    const v1Answer = async (answer: Answer, name: string, ttl: number): Promise<void> => {
      if (answer.status === 201) {
        const b = answer.body;
        const revision = b.revision ?? (await revisionNow().catch(() => NaN));
        const h: Holding = { api: 'v1', name, key: b.key, lease: b.lease, token: b.fencing_token, revision, answeredAt: Date.now() };
        holdings.push(h);
        report.acquired++;
        await hold(
          h,
          ttl,
          (u) => request(`${u}/v1/leases/${h.lease}/keepalive`, 'POST', undefined, 5000),
          (u) => request(`${u}/v1/locks/${name}?key=${encodeURIComponent(h.key)}`, 'DELETE', undefined, 5000),
        );
        if (gatewayUrl) await request(`${gatewayUrl}/v1/leases/${h.lease}`, 'DELETE', undefined, 5000).catch(() => undefined);
      } else if (answer.status === 409 || answer.status === 504) report.refused++;
      else if (answer.status === 410) report.expiredWhileWaiting++;
      else failed(`v1 ${answer.status}`);
    };

    /** A /v1/ lock taken by `curl`, a process of its own, killed with SIGKILL mid-wait (or not, if it
     *  was answered first). */
    const curlAttempt = async (url: string, name: string): Promise<void> => {
      const ttl = Math.floor(pick(1, 11));
      const waitS = Math.floor(pick(1, 31));
      const child = spawn('curl', ['-s', '-X', 'POST', '-w', '\n%{http_code}', '--max-time', String(waitS + 15), `${url}/v1/locks/${name}?ttl=${ttl}&wait=${waitS}s`], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
      const killer = setTimeout(() => child.kill('SIGKILL'), pick(0, waitS * 1000));
      const code = await closed;
      clearTimeout(killer);
      if (child.signalCode === 'SIGKILL') {
        report.killed++;
        return;
      }
      const lines = out.trimEnd().split('\n');
      const status = Number(lines.pop());
      if (code !== 0 || !status) {
        failed(`curl exit ${code} status ${status}`);
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(lines.join('\n'));
      } catch {
        body = undefined;
      }
      await v1Answer({ status, body }, name, ttl);
    };

    const v3Attempt = async (url: string, name: string): Promise<void> => {
      const ttl = Math.floor(pick(1, 11));
      const waitMs = Math.floor(pick(0, 30_000));
      const grant = await request(`${url}/v3/lease/grant`, 'POST', { TTL: ttl }, 5000);
      const lease = grant.body.ID as string;
      if (!lease) return failed(`v3 grant ${grant.status}`);
      const keepsWhileWaiting = chance(0.7);
      let waiting = true;
      const renewer = keepsWhileWaiting
        ? (async () => {
            for (let i = 0; i < 1000 && waiting; i++) {
              await sleep((ttl * 1000) / 3);
              if (waiting && gatewayUrl) await request(`${gatewayUrl}/v3/lease/keepalive`, 'POST', { ID: lease }, 5000).catch(() => undefined);
            }
          })()
        : undefined;
      const aborter = new AbortController();
      // /v3/ has no wait parameter: the client gives up on its own (LOCK_WAIT_MS is 30 s).
      const giveUp = setTimeout(() => aborter.abort(), waitMs);
      let answer: Answer;
      try {
        answer = await request(`${url}/v3/lock/lock`, 'POST', { name: b64(name), lease }, 45_000, aborter.signal);
      } catch (err) {
        if (aborter.signal.aborted) report.abandoned++;
        else failed(`v3 ${why(err)}`);
        return;
      } finally {
        waiting = false;
        clearTimeout(giveUp);
        await renewer;
      }
      if (answer.status === 200 && answer.body?.key) {
        const h: Holding = { api: 'v3', name, key: unb64(answer.body.key), lease, revision: Number(answer.body.header?.revision), answeredAt: Date.now() };
        holdings.push(h);
        report.acquired++;
        await hold(
          h,
          ttl,
          (u) => request(`${u}/v3/lease/keepalive`, 'POST', { ID: lease }, 5000),
          async (u) => {
            const a = await request(`${u}/v3/lock/unlock`, 'POST', { key: answer.body.key }, 5000);
            return a;
          },
        );
      } else if (answer.status === 504) report.refused++;
      else if (answer.status === 404 && answer.body?.code === 5) report.expiredWhileWaiting++;
      else failed(`v3 ${answer.status}`);
      if (gatewayUrl) await request(`${gatewayUrl}/v3/lease/revoke`, 'POST', { ID: lease }, 5000).catch(() => undefined);
    };

    const client = async (): Promise<void> => {
      for (let i = 0; i < MAX_ATTEMPTS_PER_CLIENT && Date.now() < endAt; i++) {
        const url = gatewayUrl;
        if (!url) {
          await sleep(200);
          continue;
        }
        const name = names[Math.floor(random() * names.length)];
        report.attempts++;
        try {
          const kind = random();
          if (kind < 0.5) await v1Attempt(url, name);
          else if (kind < 0.6) await curlAttempt(url, name);
          else await v3Attempt(url, name);
        } catch (err) {
          // A lease grant that got no answer (the gateway or etcd restarting).
          failed(`grant ${why(err)}`);
          await sleep(200);
        }
        await sleep(pick(0, 500));
      }
    };

    const chaos = async (): Promise<void> => {
      if (opts.chaos === false) return;
      for (let round = 0; round < 1000; round++) {
        const [lo, hi] = opts.chaosEvery ?? [15, 30];
        const pause = pick(lo * 1000, hi * 1000);
        if (Date.now() + pause > endAt - 5_000) return;
        await sleep(pause);
        if (round % 2 === 0) {
          const hard = chance(0.5);
          log(`chaos: gateway ${hard ? 'SIGKILL' : 'SIGTERM'} and restart`);
          const old = gw!;
          gatewayUrl = undefined;
          if (hard) old.child.kill('SIGKILL');
          await old.stop();
          gw = await startGatewayProcess({ etcdUrl, env, main: opts.gatewayMain });
          gatewayUrl = gw.url;
          report.gatewayRestarts++;
        } else {
          log('chaos: etcd SIGKILL and restart');
          etcd!.kill('SIGKILL');
          await etcd!.waitExit();
          await sleep(pick(500, 3000));
          await etcd!.restart();
          report.etcdRestarts++;
        }
      }
    };

    const progress = setInterval(() => log(`${Math.round((endAt - Date.now()) / 1000)} s left: ${JSON.stringify({ ...report, violations: report.violations.length })}`), 30_000);
    try {
      await Promise.all([...Array.from({ length: opts.clients }, () => client()), chaos()]);
    } finally {
      clearInterval(progress);
    }
    await verify(etcdUrl, holdings, report);
  } finally {
    await gw?.stop();
    await etcd?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
  return report;
}

interface HistoryEvent {
  type: 'PUT' | 'DELETE';
  key: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

/** Every event under the lock prefix from revision 1, read from etcd's own gateway (a watch), up to a
 *  sentinel key written now. */
async function history(etcdUrl: string): Promise<HistoryEvent[]> {
  const sentinel = `${PREFIX}~end`;
  const put = await request(`${etcdUrl}/v3/kv/put`, 'POST', { key: b64(sentinel), value: b64('x') }, 10_000);
  const last = Number(put.body.header.revision);
  const end = Buffer.from(PREFIX);
  end[end.length - 1]++;
  const aborter = new AbortController();
  const timer = setTimeout(() => aborter.abort(), 120_000);
  const events: HistoryEvent[] = [];
  try {
    const res = await fetch(`${etcdUrl}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: b64(PREFIX), range_end: end.toString('base64'), start_revision: 1 } }),
      signal: aborter.signal,
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    for (let reads = 0; reads < 10_000_000; reads++) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let nl: number;
      let finished = false;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line).result ?? {};
        if (msg.canceled) throw new Error(`the history watch was canceled: ${line}`);
        for (const e of msg.events ?? []) {
          const key = unb64(e.kv.key);
          const modRevision = Number(e.kv.mod_revision);
          if (key === sentinel) {
            if (modRevision >= last) finished = true;
            continue;
          }
          events.push({ type: e.type === 'DELETE' ? 'DELETE' : 'PUT', key, createRevision: Number(e.kv.create_revision ?? 0), modRevision, lease: String(e.kv.lease ?? '0') });
        }
      }
      if (finished) break;
    }
  } finally {
    clearTimeout(timer);
    aborter.abort();
  }
  return events;
}

const nameOf = (key: string): string => key.slice(0, key.lastIndexOf('/'));

/** A lock key's life in etcd's history: created at a revision on a lease, deleted at another. */
interface Life {
  key: string;
  createRevision: number;
  lease: string;
  deletedAt: number;
}

async function verify(etcdUrl: string, holdings: Holding[], report: CheckReport): Promise<void> {
  const events = await history(etcdUrl);
  report.events = events.length;
  const violation = (what: string): void => void report.violations.push(what);
  // Every life of every lock key, per lock name.
  const lives = new Map<string, Life[]>();
  const open = new Map<string, Life>();
  for (const e of events) {
    if (e.type === 'PUT') {
      const existing = open.get(e.key);
      if (existing) continue; // a put on an existing key (a re-entrant lock's txn does none, but be lenient)
      const life: Life = { key: e.key, createRevision: e.createRevision, lease: e.lease, deletedAt: Infinity };
      open.set(e.key, life);
      const list = lives.get(nameOf(e.key)) ?? [];
      list.push(life);
      lives.set(nameOf(e.key), list);
    } else {
      const life = open.get(e.key);
      if (life) life.deletedAt = e.modRevision;
      open.delete(e.key);
    }
  }
  /** The holder of `name` at `revision`: the existing key with the lowest create revision. */
  const holderAt = (name: string, revision: number): Life | undefined => {
    let best: Life | undefined;
    for (const l of lives.get(name) ?? []) {
      if (l.createRevision <= revision && revision < l.deletedAt && (!best || l.createRevision < best.createRevision)) best = l;
    }
    return best;
  };
  const spans: Array<{ h: Holding; life: Life }> = [];
  for (const h of holdings) {
    const what = `${h.api} answer for ${h.key} (lease ${h.lease}, token ${h.token ?? '-'}) at revision ${h.revision}`;
    if (!Number.isFinite(h.revision) || h.revision <= 0) {
      violation(`${what}: no answer revision`);
      continue;
    }
    const life = (lives.get(h.name) ?? []).find((l) => l.key === h.key && l.createRevision <= h.revision && h.revision < l.deletedAt);
    if (!life) {
      violation(`${what}: the key did not exist at that revision`);
      continue;
    }
    if (life.lease !== h.lease) violation(`${what}: the key was on lease ${life.lease}`);
    if (h.token !== undefined && h.token !== life.createRevision) violation(`${what}: the key's create revision is ${life.createRevision}`);
    const holder = holderAt(h.name, h.revision);
    if (holder !== life) violation(`${what}: etcd shows ${holder?.key ?? 'nobody'} (create revision ${holder?.createRevision}) holding it then`);
    spans.push({ h, life });
  }
  // Per lock name, in answer order: spans never overlap, fencing tokens grow with each new holder.
  const byName = new Map<string, Array<{ h: Holding; life: Life }>>();
  for (const s of spans) byName.set(s.h.name, [...(byName.get(s.h.name) ?? []), s]);
  for (const [name, list] of byName) {
    list.sort((a, b) => a.h.revision - b.h.revision);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1];
      const next = list[i];
      if (prev.life === next.life) continue; // the same holding answered twice (a re-entrant lock)
      if (prev.life.deletedAt > next.h.revision) {
        violation(`${name}: ${next.h.key} was answered held at revision ${next.h.revision} while ${prev.h.key} (held from ${prev.h.revision}) existed until ${prev.life.deletedAt}`);
      }
      if (next.life.createRevision <= prev.life.createRevision) {
        violation(`${name}: fencing token ${next.life.createRevision} of ${next.h.key} does not exceed ${prev.life.createRevision} of the holder before it`);
      }
    }
  }
}

/** The figures of a run, one line each. */
export function formatReport(r: CheckReport): string {
  const lines = [
    `seed ${r.seed}`,
    `attempts ${r.attempts}`,
    `acquired ${r.acquired}`,
    `refused ${r.refused} (409 / 504: held past the wait)`,
    `expired while waiting ${r.expiredWhileWaiting} (/v1/ 410, /v3/ 404 code 5)`,
    `abandoned ${r.abandoned} (HTTP request aborted mid-wait)`,
    `killed ${r.killed} (curl clients killed with SIGKILL mid-wait)`,
    `released ${r.released}`,
    `release found the lock gone ${r.releaseFoundGone} (the holder's lease ran out first)`,
    `errors ${r.errors} (refused connections and 5xx during gateway and etcd restarts): ${JSON.stringify(r.errorKinds)}`,
    `gateway restarts ${r.gatewayRestarts}, etcd restarts ${r.etcdRestarts}`,
    `history events checked ${r.events}`,
    `violations ${r.violations.length}`,
    ...r.violations.slice(0, 50).map((v) => `  VIOLATION ${v}`),
  ];
  return lines.join('\n');
}
