// Every /v1/ example in openapi.yaml, executed as Swagger UI's "Try it out" would send it: the
// examples of one name (path parameter, query parameters, headers, body) make one request; path
// parameters are percent-encoded as Swagger UI encodes them. Writes run before reads, so each read
// finds what the examples wrote. Every answer must be a documented success and match its schema.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spec, startGateway, type GatewayFixture } from './helpers/gateway';
import { v1Request } from './helpers/v1';

type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const METHOD_ORDER = ['put', 'post', 'get', 'delete'];

interface ExampleRequest {
  name: string;
  method: string;
  target: string;
  headers: Record<string, string>;
  body?: string;
}

/** The requests the /v1/ examples of openapi.yaml describe, writes first. */
function exampleRequests(): ExampleRequest[] {
  const out: ExampleRequest[] = [];
  const paths = spec().doc.paths as Record<string, Schema>;
  for (const method of METHOD_ORDER) {
    for (const [path, item] of Object.entries(paths)) {
      const op = item[method];
      if (!path.startsWith('/v1/') || !op) continue;
      const params: Schema[] = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      const bodyExamples: Record<string, { value: unknown }> = Object.values((op.requestBody?.content ?? {}) as Record<string, Schema>)[0]?.examples ?? {};
      const names = new Set<string>(Object.keys(bodyExamples));
      for (const p of params) for (const n of Object.keys(p.examples ?? {})) if (p.in !== 'path') names.add(n);
      for (const name of names) {
        let target = path;
        const query: string[] = [];
        const headers: Record<string, string> = {};
        for (const p of params) {
          const examples = p.examples ?? {};
          const example = examples[name] ?? (p.in === 'path' ? Object.values(examples)[0] : undefined);
          if (!example) continue;
          const value = String((example as { value: unknown }).value);
          if (p.in === 'path') target = target.replace(`{${p.name}}`, encodeURIComponent(value));
          else if (p.in === 'query') query.push(value === '' ? p.name : `${p.name}=${encodeURIComponent(value)}`);
          else if (p.in === 'header') headers[p.name] = value;
        }
        assert.ok(!/\{/.test(target), `${method.toUpperCase()} ${path} example ${name}: no value for a path parameter`);
        const body = bodyExamples[name]?.value;
        out.push({
          name,
          method: method.toUpperCase(),
          target: query.length ? `${target}?${query.join('&')}` : target,
          headers,
          body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
        });
      }
    }
  }
  return out;
}

describe('openapi.yaml /v1/ examples', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('every example works when sent, and its answer matches the contract', async (t) => {
    const requests = exampleRequests();
    const operations = new Set<string>();
    for (const r of requests) {
      const answer = await v1Request(gw.url, r.method, r.target, { headers: r.headers, body: r.body });
      t.diagnostic(`${r.name}: ${r.method} ${r.target} → ${answer.status}`);
      assert.ok(answer.status >= 200 && answer.status < 300, `${r.method} ${r.target} (example ${r.name}): ${answer.status} ${answer.text}`);
      operations.add(`${r.method} ${r.target.split('?')[0]}`);
    }
    assert.ok(requests.length >= 8, `only ${requests.length} examples`);
    for (const op of ['PUT', 'GET', 'DELETE', 'POST']) assert.ok([...operations].some((o) => o.startsWith(op)), `no example for ${op}`);
  });
});
