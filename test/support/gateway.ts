// A gateway built in-process (as main.ts builds it) in front of a real etcd from the harness, plus
// helpers to send the same request to etcd's own gateway and to check answers against openapi.yaml.

import http from 'node:http';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { buildGateway, DEFAULT_STREAM_SETTINGS, type Gateway, type StreamSettings } from '../../src/boot/gateway';
import { ApiSpec } from '../../src/core/contract/spec';
import { EtcdClient } from '../../src/etcd/client';
import type { AccessPolicy } from '../../src/core/security/access';
import { startTestEtcd, type TestEtcd } from './etcd';
import type { Logger } from 'pino';

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

let sharedSpec: ApiSpec | undefined;
export function spec(): ApiSpec {
  sharedSpec ??= new ApiSpec();
  return sharedSpec;
}

export async function send(base: string, path: string, body?: string | object, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(new URL(path, base), {
    method: init.method ?? 'POST',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed };
}

/** Asserts that an answer of this gateway matches the response schema its operation declares. */
export function assertMatchesContract(path: string, answer: Answer): void {
  const opPath = path.replace(/^\/v3(beta|alpha)\//, '/v3/');
  const op = spec().operations.find((o) => o.path === opPath);
  const schema = answer.status === 200 ? op?.responseSchema : op?.stream ? 'StreamFailure' : 'Error';
  if (!schema) return;
  const validate = spec().validator(schema);
  assert.ok(validate(answer.body), `${path} answer ${answer.text} does not match ${schema}: ${JSON.stringify(validate.errors)}`);
}

export interface GatewayFixture {
  etcd: TestEtcd;
  client: EtcdClient;
  gateway: Gateway;
  server: http.Server;
  /** ws:// base URL of the same server. */
  wsUrl: string;
  url: string;
  /** POST (or another method) to this gateway; every answer is checked against the contract. */
  post(path: string, body?: string | object, init?: RequestInit): Promise<Answer>;
  /** The same request to etcd's own gateway on the harness's etcd. */
  etcdPost(path: string, body?: string | object, init?: RequestInit): Promise<Answer>;
  close(): Promise<void>;
}

export async function startGateway(
  opts: {
    etcd?: TestEtcd;
    endpoints?: string[];
    /** An etcd client configured by the test (its own identity...); closed with the fixture. */
    client?: EtcdClient;
    requestTimeoutMs?: number;
    maxBodyBytes?: number;
    lockWaitMs?: number;
    corsOrigins?: string[];
    rateLimit?: { rate: number; burst: number };
    access?: AccessPolicy;
    maxConnections?: number;
    maxHeaderBytes?: number;
    streams?: Partial<StreamSettings>;
    ui?: boolean;
    logger?: Logger;
  } = {},
): Promise<GatewayFixture> {
  const etcd = opts.etcd ?? (await startTestEtcd());
  const client = opts.client ?? new EtcdClient({ endpoints: opts.endpoints ?? [etcd.clientUrl], requestTimeoutMs: opts.requestTimeoutMs ?? 5000 });
  const gateway = buildGateway({
    etcd: client,
    maxBodyBytes: opts.maxBodyBytes ?? 2 * 1024 * 1024,
    lockWaitMs: opts.lockWaitMs,
    corsOrigins: opts.corsOrigins,
    rateLimit: opts.rateLimit,
    access: opts.access,
    maxConnections: opts.maxConnections,
    logger: opts.logger,
    streams: { ...DEFAULT_STREAM_SETTINGS, ...opts.streams },
    spec: spec(),
    ui: opts.ui,
  });
  const server = http.createServer({ maxHeaderSize: opts.maxHeaderBytes }, gateway.handler);
  gateway.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    etcd,
    client,
    gateway,
    server,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    async post(path, body, init) {
      const answer = await send(url, path, body, init);
      if (path.startsWith('/v3')) assertMatchesContract(path, answer);
      return answer;
    },
    etcdPost: (path, body, init) => send(etcd.clientUrl, path, body, init),
    async close() {
      gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      client.close();
      if (!opts.etcd) await etcd.cleanup();
    },
  };
}

/** base64 of a UTF-8 string. */
export const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** A response without the header's cluster and member identity, which differ between two etcds. */
export function withoutIdentity(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutIdentity);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'cluster_id' || k === 'member_id') continue;
      out[k] = withoutIdentity(v);
    }
    return out;
  }
  return value;
}

/** Two fresh etcds: `reference` is reached through etcd's own gateway, `gw` is this gateway on the
 *  other. Given the same writes, both stores go through the same revisions. */
export async function startDifferentialPair(): Promise<{ reference: TestEtcd; gw: GatewayFixture; close(): Promise<void> }> {
  const [reference, gw] = await Promise.all([startTestEtcd(), startGateway()]);
  return { reference, gw, close: async () => void (await Promise.all([gw.close(), reference.cleanup()])) };
}

/** The same JSON, field order included (etcd writes fields in proto order), identity aside. */
export function assertSameAnswer(theirs: unknown, ours: unknown, what: string): void {
  assert.deepEqual(withoutIdentity(ours), withoutIdentity(theirs), what);
  assert.equal(JSON.stringify(withoutIdentity(ours)), JSON.stringify(withoutIdentity(theirs)), `${what}: field order`);
}
