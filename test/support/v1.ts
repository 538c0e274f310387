// A client for the /v1/ API in tests: raw bytes in and out, and every answer checked against
// openapi.yaml — its status must be one the operation documents, and a JSON or problem+json body
// must match the schema documented for that status.

import assert from 'node:assert/strict';
import http from 'node:http';
import { spec } from './gateway';

type Schema = Record<string, unknown>;

export interface V1Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  raw: Buffer;
  text: string;
  /** The parsed body when it is JSON (or problem+json). */
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface V1Options {
  body?: Buffer | string;
  headers?: Record<string, string>;
  /** Skip the contract check (for requests that test the check itself). */
  unchecked?: boolean;
}

const COMPONENT = '#/components/';

function resolve(ref: string): Schema {
  const [kind, name] = ref.slice(COMPONENT.length).split('/');
  return ((spec().doc.components as Schema)[kind] as Record<string, Schema>)[name];
}

/** The operation of a /v1/ request: the template with the most literal text that matches. */
function operationOf(method: string, path: string): Schema | undefined {
  const paths = spec().doc.paths as Record<string, Record<string, Schema>>;
  const candidates = Object.keys(paths)
    .filter((p) => p.startsWith('/v1/'))
    .sort((a, b) => b.replace(/\{[^}]+\}/g, '').length - a.replace(/\{[^}]+\}/g, '').length);
  for (const p of candidates) {
    const source = p.replace(/[.]/g, '\\.').replace(/\{[^}]+\}$/, '.*').replace(/\{[^}]+\}/g, '[^/]+');
    if (new RegExp(`^${source}$`).test(path)) return paths[p][method.toLowerCase()];
  }
  return undefined;
}

/** Asserts that an answer is one the contract allows for this request. */
export function assertV1Contract(method: string, target: string, answer: V1Answer): void {
  const path = target.split('?')[0];
  const what = `${method} ${target} → ${answer.status} ${answer.text.slice(0, 300)}`;
  const op = operationOf(method === 'HEAD' ? 'GET' : method, path);
  if (!op || answer.status === 405) {
    // No route, or not this method: a 404 or 405 problem, which no operation documents.
    assert.ok(answer.status === 404 || answer.status === 405, `${what}: no operation in openapi.yaml`);
    if (method !== 'HEAD') assert.ok(spec().validator('Problem')(answer.body), `${what}: not a problem`);
    return;
  }
  let response = (op.responses as Record<string, Schema>)[String(answer.status)];
  assert.ok(response, `${what}: status ${answer.status} is not documented`);
  if (typeof response.$ref === 'string') response = resolve(response.$ref);
  const content = response.content as Record<string, { schema: Schema }> | undefined;
  if (!content) {
    assert.equal(answer.raw.length, 0, `${what}: a ${answer.status} has no body`);
    return;
  }
  const type = String(answer.headers['content-type'] ?? '').split(';')[0];
  assert.ok(content[type], `${what}: content type ${type} is not documented for ${answer.status}`);
  const ref = content[type].schema.$ref;
  // A HEAD answer has the headers of a GET and no body to check.
  if (typeof ref !== 'string' || method === 'HEAD') return;
  const validate = spec().validator(ref.slice(`${COMPONENT}schemas/`.length));
  assert.ok(validate(answer.body), `${what}: does not match ${ref}: ${JSON.stringify(validate.errors)}`);
}

/** One request to a gateway; answers are checked against the contract unless `unchecked`. */
export function v1Request(base: string, method: string, target: string, opts: V1Options = {}): Promise<V1Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method, path: target, headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const text = raw.toString('utf8');
          let body: unknown;
          if (/json/.test(String(res.headers['content-type']))) {
            try {
              body = JSON.parse(text);
            } catch {
              body = undefined;
            }
          }
          const answer: V1Answer = { status: res.statusCode ?? 0, headers: res.headers, raw, text, body };
          try {
            if (!opts.unchecked) assertV1Contract(method, target, answer);
            resolve(answer);
          } catch (e) {
            reject(e as Error);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A /v1/ client bound to one gateway. */
export function v1Client(base: string): {
  get(target: string, opts?: V1Options): Promise<V1Answer>;
  put(target: string, body?: Buffer | string, opts?: V1Options): Promise<V1Answer>;
  del(target: string, opts?: V1Options): Promise<V1Answer>;
  post(target: string, body?: Buffer | string, opts?: V1Options): Promise<V1Answer>;
  send(method: string, target: string, opts?: V1Options): Promise<V1Answer>;
} {
  return {
    get: (target, opts) => v1Request(base, 'GET', target, opts),
    put: (target, body, opts) => v1Request(base, 'PUT', target, { ...opts, body }),
    del: (target, opts) => v1Request(base, 'DELETE', target, opts),
    post: (target, body, opts) => v1Request(base, 'POST', target, { ...opts, body }),
    send: (method, target, opts) => v1Request(base, method, target, opts),
  };
}

/** Percent-encodes every byte of a key, so any bytes reach the gateway as they are. */
export function keyPath(key: Buffer | string): string {
  const bytes = typeof key === 'string' ? Buffer.from(key) : key;
  return [...bytes].map((b) => (/[A-Za-z0-9_.~/-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('');
}

/** Asserts an answer is a problem with this status whose detail matches `detail`. */
export function assertProblem(answer: V1Answer, status: number, detail: RegExp): void {
  assert.equal(answer.status, status, answer.text);
  assert.equal(answer.headers['content-type'], 'application/problem+json', answer.text);
  assert.equal(answer.body.status, status);
  assert.match(answer.body.detail, detail);
}
