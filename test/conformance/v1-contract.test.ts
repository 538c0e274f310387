// Every /v1/ operation of openapi.yaml, sent as Swagger UI's "Try it out" sends it: each parameter
// with its first example (the one Swagger UI pre-fills; the others are picked by hand), the first body
// example; path parameters percent-encoded as Swagger UI encodes them. Then each further body example
// with the same parameters. Writes run before reads, so each read finds what the examples wrote, and
// deletes in the reverse order of the paths (a lock is released before its lease is revoked). Every
// answer must be a documented success and match its schema. test/swagger-ui.test.ts clicks the same
// in the page itself.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spec, startGateway, type GatewayFixture } from '../support/gateway';
import { v1Request } from '../support/v1';
import { EXAMPLE_LEASE } from '../support/try-it-out';

type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const METHOD_ORDER = ['put', 'post', 'get', 'delete'];

interface ExampleRequest {
  name: string;
  method: string;
  target: string;
  headers: Record<string, string>;
  body?: string;
}

const first = (examples: Record<string, { value: unknown }> | undefined): { value: unknown } | undefined => Object.values(examples ?? {})[0];

/** The requests the /v1/ examples of openapi.yaml describe, writes first. */
function exampleRequests(): ExampleRequest[] {
  const out: ExampleRequest[] = [];
  const paths = spec().doc.paths as Record<string, Schema>;
  for (const method of METHOD_ORDER) {
    const entries = Object.entries(paths).filter(([path, item]) => path.startsWith('/v1/') && item[method] && !item[method]['x-stream']);
    if (method === 'delete') entries.reverse();
    for (const [path, item] of entries) {
      const op = item[method];
      const params: Schema[] = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      let target = path;
      const query: string[] = [];
      const headers: Record<string, string> = {};
      for (const p of params) {
        const example = first(p.examples);
        if (!example) continue;
        const value = String(example.value);
        if (p.in === 'path') target = target.replace(`{${p.name}}`, encodeURIComponent(value));
        // Swagger UI leaves an empty value out unless "Send empty value" is ticked by hand.
        else if (p.in === 'query' && value !== '') query.push(`${p.name}=${encodeURIComponent(value)}`);
        else if (p.in === 'header') headers[p.name] = value;
      }
      assert.ok(!/\{/.test(target), `${method.toUpperCase()} ${path}: no example for a path parameter, so Swagger UI cannot send it`);
      const bodies = Object.entries((Object.values((op.requestBody?.content ?? {}) as Record<string, Schema>)[0]?.examples ?? {}) as Record<string, { value: unknown }>);
      for (const [name, body] of bodies.length ? bodies : [['(no body)', { value: undefined }] as const]) {
        out.push({
          name,
          method: method.toUpperCase(),
          target: query.length ? `${target}?${query.join('&')}` : target,
          headers,
          body: body.value === undefined ? undefined : typeof body.value === 'string' ? body.value : JSON.stringify(body.value),
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
    // The lease the examples name, as a reader who ran the /v3/lease/grant example withId has it.
    const grant = await gw.post('/v3/lease/grant', { ID: EXAMPLE_LEASE, TTL: 600 });
    assert.equal(grant.status, 200, grant.text);
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
