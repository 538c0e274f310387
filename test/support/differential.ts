// Two fresh etcds, one behind etcd's own gateway and one behind this gateway, driven with the same
// requests: `same` sends a request to both and checks that the answers are the same JSON, field order
// included, once what legitimately differs between two etcds is masked (member identity and URLs
// always; anything else through a per-call normalization). Bodies and headers may differ per side
// (a token, a member ID), given as a function of the side.

import assert from 'node:assert/strict';
import { assertMatchesContract, assertSameAnswer, send, startDifferentialPair, type Answer, type GatewayFixture } from './gateway';
import { replaceStrings } from './masking';
import type { TestEtcd } from './etcd';

export type Side = 'etcd' | 'ours';
export interface SideInfo {
  side: Side;
  /** Base URL of the gateway on this side (etcd's own client URL for the reference). */
  base: string;
  memberId: string;
  clientUrl: string;
  peerUrl: string;
}
type Body = string | object;
export type PerSide<T> = T | ((s: SideInfo) => T);
/** Turns one side's parsed answer into the form that is compared. */
export type Normalize = (value: any, s: SideInfo) => unknown; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface RequestOptions {
  headers?: PerSide<Record<string, string>>;
  normalize?: Normalize;
}

/** The answer lines of a streaming response (`{"result": ...}` each). */
export function lines(answer: Answer): unknown[] {
  return answer.text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
}

const STREAM_PATHS = /\/(keepalive|snapshot|observe|watch)$/;

export class Differential {
  readonly sides = {} as Record<Side, SideInfo>;

  private constructor(
    readonly reference: TestEtcd,
    readonly gw: GatewayFixture,
    private readonly closePair: () => Promise<void>,
    /** Every request must be answered within this (a test's promptness bound). */
    private readonly maxMs: number,
  ) {}

  static async start(opts: { maxMs?: number } = {}): Promise<Differential> {
    const { reference, gw, close } = await startDifferentialPair();
    const d = new Differential(reference, gw, close, opts.maxMs ?? 10_000);
    try {
      for (const [side, base, etcd] of [
        ['etcd', reference.clientUrl, reference],
        ['ours', gw.url, gw.etcd],
      ] as const) {
        const members = await send(base, '/v3/cluster/member/list', {});
        assert.equal(members.status, 200, members.text);
        d.sides[side] = { side, base, memberId: members.body.header.member_id, clientUrl: etcd.clientUrl, peerUrl: etcd.peerUrl };
      }
    } catch (err) {
      await close();
      throw err;
    }
    return d;
  }

  close(): Promise<void> {
    return this.closePair();
  }

  /** What differs between the two etcds by construction. */
  identity(s: SideInfo): Record<string, string> {
    return { [s.memberId]: '<member>', [s.clientUrl]: '<client-url>', [s.peerUrl]: '<peer-url>' };
  }

  /** One request to one side; answers of this gateway are checked against the contract (stream lines
   *  one by one), and must come within the bound. */
  async call(s: SideInfo, path: string, body: PerSide<Body>, headers?: PerSide<Record<string, string>>): Promise<Answer> {
    const b = typeof body === 'function' ? body(s) : body;
    const h = typeof headers === 'function' ? headers(s) : headers;
    const started = Date.now();
    const answer = await send(s.base, path, b, h ? { headers: h } : {});
    const took = Date.now() - started;
    assert.ok(took < this.maxMs, `${s.side}: ${path} took ${took} ms (bound ${this.maxMs} ms)`);
    if (s.side === 'ours') {
      if (answer.status === 200 && STREAM_PATHS.test(path)) {
        for (const line of lines(answer)) assertMatchesContract(path, { ...answer, body: line });
      } else {
        assertMatchesContract(path, answer);
      }
    }
    return answer;
  }

  /** The same request to both (etcd's gateway first); the statuses must be equal. */
  async both(path: string, body: PerSide<Body>, opts: RequestOptions = {}): Promise<{ theirs: Answer; ours: Answer }> {
    const theirs = await this.call(this.sides.etcd, path, body, opts.headers);
    const ours = await this.call(this.sides.ours, path, body, opts.headers);
    assert.equal(
      ours.status,
      theirs.status,
      `${describeRequest(path, body)}: status ${ours.status} (ours) vs ${theirs.status} (etcd): ${ours.text} / ${theirs.text}`,
    );
    return { theirs, ours };
  }

  /** A documented difference: etcd's gateway answers a 500 (code 2) for an ordinary condition, and
   *  this one the code of what it is, with etcd's message. Both must keep their side of it. */
  async differs(path: string, body: PerSide<Body>, expected: { status: number; code: number }): Promise<{ theirs: Answer; ours: Answer }> {
    const theirs = await this.call(this.sides.etcd, path, body);
    const ours = await this.call(this.sides.ours, path, body);
    const what = describeRequest(path, body);
    assert.equal(theirs.status, 500, `${what}: etcd's gateway: ${theirs.text}`);
    assert.equal(theirs.body.code, 2, `${what}: etcd's gateway: ${theirs.text}`);
    assert.equal(ours.status, expected.status, `${what}: ours: ${ours.text}`);
    assert.deepEqual(ours.body, { error: theirs.body.error, message: theirs.body.message, code: expected.code }, `${what}: etcd's message, our code`);
    return { theirs, ours };
  }

  /** The same request to both; the answers must be the same JSON once normalized and identity masked. */
  async same(path: string, body: PerSide<Body>, opts: RequestOptions = {}): Promise<{ theirs: Answer; ours: Answer }> {
    const answers = await this.both(path, body, opts);
    const normalize = opts.normalize ?? ((v: unknown) => v);
    const form = (a: Answer, s: SideInfo): unknown =>
      replaceStrings(normalize(a.body === undefined && a.text !== '' ? lines(a) : a.body, s), this.identity(s));
    assertSameAnswer(form(answers.theirs, this.sides.etcd), form(answers.ours, this.sides.ours), describeRequest(path, body));
    return answers;
  }
}

function describeRequest(path: string, body: PerSide<Body>): string {
  if (typeof body === 'function') return `${path} (per side)`;
  return `${path} ${typeof body === 'string' ? JSON.stringify(body) : JSON.stringify(body).slice(0, 200)}`;
}
