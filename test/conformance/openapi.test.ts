// The contract and the code cannot drift: every operation has a handler and every handler an
// operation, every schema follows the house rules, and every example in the spec works when sent.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { handlerTable } from '../../src/boot/gateway';
import { EtcdClient } from '../../src/etcd/client';
import { WatchHub } from '../../src/core/watch/hub';
import { KeepAliveHub } from '../../src/core/keepalive';
import { Metrics } from '../../src/core/observability/metrics';
import { spec, startGateway, type GatewayFixture } from '../support/gateway';
import { EXPECTED_FAILURES } from '../support/try-it-out';

type Schema = Record<string, unknown>;

describe('openapi.yaml', () => {
  it('has a handler for every operation, and an operation for every handler', () => {
    const client = new EtcdClient({ endpoints: ['http://127.0.0.1:1'], requestTimeoutMs: 1 });
    const hub = new WatchHub(client, { streams: 1, maxWatchesPerConnection: 1 });
    const keepalive = new KeepAliveHub(client, 1);
    const limits = { maxConnections: 1, sendBufferBytes: 1 };
    const metrics = new Metrics({ hub, keepalive });
    const { unary, stream, http, v1 } = handlerTable(client, { hub, keepalive, spec: spec(), limits, maxBodyBytes: 1, metrics });
    client.close();
    const ops = spec().operations;
    const postOps = ops.filter((o) => o.method === 'post' && !o.stream).map((o) => o.operationId).sort();
    const streamOps = ops.filter((o) => o.stream).map((o) => o.operationId).sort();
    const getOps = ops.filter((o) => o.method === 'get').map((o) => o.operationId).sort();
    assert.deepEqual(Object.keys(unary).sort(), postOps);
    assert.deepEqual(Object.keys(stream).sort(), streamOps);
    assert.deepEqual(Object.keys(http).sort(), getOps);
    assert.deepEqual(Object.keys(v1).sort(), spec().v1Operations.map((o) => o.operationId).sort(), 'the /v1/ operations');
    const all = [...ops, ...spec().v1Operations];
    assert.equal(new Set(all.map((o) => o.operationId)).size, all.length, 'operationIds are unique');
  });

  it('gives every POST operation a request and a response schema, and every API path the /v3/ prefix', () => {
    for (const op of spec().operations.filter((o) => o.method === 'post' && !o.stream)) {
      assert.ok(op.requestSchema, `${op.operationId} request schema`);
      assert.ok(op.responseSchema, `${op.operationId} response schema`);
      assert.match(op.path, /^\/v3\//);
    }
  });

  it('closes every object schema (no silently ignored fields) and describes every request field', () => {
    const schemas = (spec().doc.components as Schema).schemas as Record<string, Schema>;
    const check = (name: string, s: Schema): void => {
      if (s.type === 'object') assert.equal(s.additionalProperties, false, `${name} must set additionalProperties: false`);
      for (const branch of (s.oneOf as Schema[] | undefined) ?? []) check(`${name}/oneOf`, branch);
    };
    for (const [name, s] of Object.entries(schemas)) {
      if (name === 'VersionResponse' || name === 'HealthResponse') continue;
      check(name, s);
    }
    for (const [name, s] of Object.entries(schemas).filter(([n]) => n.endsWith('Request'))) {
      for (const [field, sub] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) {
        const referenced = typeof sub.$ref === 'string' ? schemas[sub.$ref.split('/').pop() as string] : undefined;
        assert.ok(typeof (sub.description ?? referenced?.description) === 'string', `${name}.${field} needs a description`);
      }
    }
  });

  it('has real oneOfs for a compare target and a request op', () => {
    const schemas = (spec().doc.components as Schema).schemas as Record<string, Schema>;
    assert.equal((schemas.Compare.oneOf as unknown[]).length, 5);
    assert.equal((schemas.RequestOp.oneOf as unknown[]).length, 4);
  });

  describe('examples', () => {
    let gw: GatewayFixture;
    before(async () => {
      gw = await startGateway();
    });
    after(() => gw.close());

    it('every request example validates and works when sent, in the order the spec lists them', async () => {
      const paths = spec().doc.paths as Record<string, Record<string, Schema>>;
      let sent = 0;
      for (const [path, item] of Object.entries(paths)) {
        const op = item.post;
        // /v1/ examples are run by test/v1-contract.test.ts.
        if (!op || op['x-stream'] || path.startsWith('/v1/')) continue;
        const content = ((op.requestBody as Schema).content as Record<string, Schema>)['application/json'];
        for (const [name, example] of Object.entries((content.examples ?? {}) as Record<string, { value: unknown }>)) {
          const answer = await gw.post(path, example.value as object);
          const expected = EXPECTED_FAILURES[op.operationId as string];
          if (expected) {
            // One of the few that cannot succeed as written (test/support/try-it-out.ts says why).
            assert.ok(answer.status >= 400 && (expected.status === undefined || answer.status === expected.status), `${path} example ${name}: ${answer.status} ${answer.text}`);
            assert.match(answer.text, expected.message, `${path} example ${name}`);
          } else assert.equal(answer.status, 200, `${path} example ${name}: ${answer.text}`);
          sent++;
        }
      }
      assert.ok(sent >= 10, `only ${sent} examples`);
    });
  });
});
