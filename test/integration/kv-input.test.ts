// Input handling: what the gateway accepts like etcd's gateway, and what it refuses where etcd's
// gateway is silently wrong, crashes or hangs. Every refusal is a 400 / code 3 naming the field.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';

function invalid(message: string): { error: string; message: string; code: number } {
  return { error: message, message, code: 3 };
}

describe('KV input', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  async function refused(path: string, body: string | object, message: string, status = 400): Promise<void> {
    const answer = await gw.post(path, body);
    assert.equal(answer.status, status, answer.text);
    assert.deepEqual(answer.body, invalid(message));
  }

  describe('accepted as etcd accepts it', () => {
    it('keeps 64-bit integers exact, whether sent as numbers or strings', async () => {
      // A lease ID above 2^53 would be rounded by JSON.parse; etcd must see the exact value.
      for (const lease of ['7587822556486125057', 7587822556486125057n]) {
        const text = `{"key":"${b64('in/lease')}","value":"eA==","lease":${String(lease) === lease ? `"${lease}"` : lease.toString()}}`;
        const answer = await gw.post('/v3/kv/put', text);
        assert.equal(answer.status, 404, answer.text);
        assert.equal(answer.body.message, 'etcdserver: requested lease not found');
      }
      const grant = await gw.post('/v3/kv/range', `{"key":"${b64('in/x')}","max_mod_revision":9223372036854775807}`);
      assert.equal(grant.status, 200, grant.text);
    });

    it('ignores the Content-Type: curl -d sends form encoding', async () => {
      for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'application/grpc', '']) {
        const headers = type ? { 'Content-Type': type } : undefined;
        const answer = await gw.post('/v3/kv/put', { key: b64('in/ct'), value: b64(type || 'none') }, { headers });
        assert.equal(answer.status, 200, `${type}: ${answer.text}`);
        assert.equal(answer.headers.get('content-type'), 'application/json');
      }
    });

    it('treats an empty body, whitespace and null as the empty message', async () => {
      for (const body of ['', '  \n', 'null']) {
        const answer = await gw.post('/v3/kv/range', body);
        assert.deepEqual(answer.body, { error: 'etcdserver: key is not provided', message: 'etcdserver: key is not provided', code: 3 });
      }
      const txn = await gw.post('/v3/kv/txn', '');
      assert.equal(txn.status, 200);
      assert.equal(txn.body.succeeded, true);
    });

    it('accepts lowerCamelCase names and treats null fields as absent', async () => {
      await gw.post('/v3/kv/put', { key: b64('in/c1'), value: b64('1') });
      await gw.post('/v3/kv/put', { key: b64('in/c2'), value: b64('2') });
      const camel = await gw.post('/v3/kv/range', { key: b64('in/'), rangeEnd: b64('in0'), keysOnly: true, sortOrder: 'DESCEND' });
      const proto = await gw.post('/v3/kv/range', { key: b64('in/'), range_end: b64('in0'), keys_only: true, sort_order: 'DESCEND', limit: null });
      assert.equal(camel.status, 200);
      assert.deepEqual(camel.body.kvs, proto.body.kvs);
      assert.equal(camel.body.kvs[0].value, undefined);
    });

    it('accepts base64 with line breaks and enum numbers, like etcd', async () => {
      const answer = await gw.post('/v3/kv/range', { key: `${b64('in/c1')}\r\n`, sort_order: 2, sort_target: 4 });
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body.kvs[0].value, b64('1'));
    });
  });

  describe('refused where etcd is wrong, crashes or hangs', () => {
    it('refuses a sort_target out of range (it crashes etcd 3.4)', () =>
      refused('/v3/kv/range', { key: b64('a'), sort_target: 9 }, '/sort_target: must be one of KEY, VERSION, CREATE, MOD, VALUE, 0, 1, 2, 3, 4'));

    it('refuses null elements in txn lists (they make etcd 3.4 drop the connection)', async () => {
      await refused('/v3/kv/txn', { compare: [null] }, '/compare/0: must be object, got null');
      await refused('/v3/kv/txn', { success: [null] }, '/success/0: must be object, got null');
      await refused('/v3/kv/txn', { failure: [{ request_txn: { success: [null] } }] }, '/failure/0/request_txn/success/0: must be object, got null');
    });

    it('refuses unknown fields, naming them (etcd ignores them, turning typos into wrong answers)', async () => {
      await refused('/v3/kv/range', { key: b64('a'), range_ned: b64('b') }, '/range_ned: unknown field');
      await refused('/v3/kv/put', { key: b64('a'), ttl: 5 }, '/ttl: unknown field');
      await refused('/v3/kv/txn', { success: [{ request_put: { key: b64('a'), vlaue: b64('b') } }] }, '/success/0/request_put/vlaue: unknown field (checked as a put)');
    });

    it('refuses a compare whose operand does not match its target (etcd compares against zero)', async () => {
      await refused('/v3/kv/txn', { compare: [{ key: b64('a'), target: 'VERSION', value: b64('3') }] }, '/compare/0/value: unknown field (checked as a VERSION compare)');
      await refused('/v3/kv/txn', { compare: [{ key: b64('a'), target: 'VALUE', version: '3' }] }, '/compare/0/version: unknown field (checked as a VALUE compare)');
      await refused('/v3/kv/txn', { compare: [{ key: b64('a'), value: b64('3') }] }, '/compare/0/value: unknown field (checked as a VERSION compare)');
      await refused('/v3/kv/txn', { compare: [{ key: b64('a'), target: 'BOGUS' }] }, '/compare/0/target: must be one of VERSION, CREATE, MOD, VALUE, LEASE, 0, 1, 2, 3, 4');
      await refused('/v3/kv/txn', { compare: [{ key: b64('a'), target: 'MOD', result: 'SAME' }] }, '/compare/0/result: must be one of EQUAL, GREATER, LESS, NOT_EQUAL, 0, 1, 2, 3');
    });

    it('refuses a request op with no operation or with two', async () => {
      const forms = '/success/0: must be exactly one of: range; put; delete range; nested txn';
      await refused('/v3/kv/txn', { success: [{}] }, forms);
      await refused('/v3/kv/txn', { success: [{ request_put: { key: b64('a') }, request_range: { key: b64('a') } }] }, forms);
    });

    it('refuses invalid base64 with the offset etcd reports', async () => {
      const hint = (text: string): string => ` (bytes are base64 in /v3/: the text "${text}" is "${b64(text)}"; the /v1/ API takes raw keys and values)`;
      await refused('/v3/kv/range', { key: '!!notbase64' }, `/key: illegal base64 data at input byte 0${hint('!!notbase64')}`);
      await refused('/v3/kv/range', { key: 'Zm8' }, `/key: illegal base64 data at input byte 0${hint('Zm8')}`);
      await refused('/v3/kv/put', { key: 'Zm9v', value: 'Zm9v-_' }, `/value: illegal base64 data at input byte 4${hint('Zm9v-_')}`);
      await refused('/v3/kv/txn', { compare: [{ key: 'Zm9v', target: 'VALUE', value: 'Zg=' }] }, `/compare/0/value: illegal base64 data at input byte 3${hint('Zg=')} (checked as a VALUE compare)`);
      // What a newcomer sends first: the key as text.
      await refused('/v3/kv/put', { key: 'foo', value: 'YmFy' }, `/key: illegal base64 data at input byte 0 (bytes are base64 in /v3/: the text "foo" is "Zm9v"; the /v1/ API takes raw keys and values)`);
    });

    it('refuses wrong types, fractions, exponents and out-of-range integers', async () => {
      await refused('/v3/kv/range', { key: 123 }, '/key: must be string, got number');
      await refused('/v3/kv/range', { key: b64('a'), keys_only: 'true' }, '/keys_only: must be boolean, got string');
      await refused('/v3/kv/range', { key: b64('a'), limit: true }, '/limit: must be string or integer, got boolean');
      await refused('/v3/kv/range', { key: b64('a'), limit: 1.5 }, '/limit: must be string or integer, got number');
      await refused('/v3/kv/range', `{"key":"YQ==","limit":1.0}`, '/limit: must be an integer without fraction or exponent, got 1.0');
      await refused('/v3/kv/range', `{"key":"YQ==","limit":1e2}`, '/limit: must be an integer without fraction or exponent, got 1e2');
      await refused('/v3/kv/range', { key: b64('a'), limit: '0x10' }, '/limit: must be a decimal integer');
      await refused('/v3/kv/range', { key: b64('a'), limit: '007' }, '/limit: must be a decimal integer');
      await refused('/v3/kv/range', `{"key":"YQ==","revision":99999999999999999999}`, '/revision: 99999999999999999999 is out of range for an int64');
      await refused('/v3/kv/range', { key: b64('a'), revision: '-9223372036854775809' }, '/revision: -9223372036854775809 is out of range for an int64');
      await refused('/v3/kv/range', { key: b64('a'), sort_order: 'descend' }, '/sort_order: must be one of NONE, ASCEND, DESCEND, 0, 1, 2');
      await refused('/v3/kv/range', { key: b64('a'), sort_order: 7 }, '/sort_order: must be one of NONE, ASCEND, DESCEND, 0, 1, 2');
    });

    it('refuses a field given twice under its two names', () =>
      refused('/v3/kv/range', { key: b64('a'), range_end: b64('b'), rangeEnd: b64('c') }, '/rangeEnd: both range_end and its alias rangeEnd are given'));

    it('refuses bodies that are not one JSON object', async () => {
      await refused('/v3/kv/range', '[]', 'request body must be a JSON object, got an array');
      await refused('/v3/kv/range', '"abc"', 'request body must be a JSON object, got string');
      await refused('/v3/kv/range', '{"key": "Zm9v"', 'request body is not valid JSON: unexpected end of JSON input');
      await refused('/v3/kv/range', '{"key":"Zm9v"} garbage', 'request body is not valid JSON: unexpected data after the JSON value at offset 15');
      const deep = `${'{"request_txn":{"success":['.repeat(40)}${']}}'.repeat(40)}`;
      const answer = await gw.post('/v3/kv/txn', `{"success":[${deep}]}`);
      assert.equal(answer.status, 400);
      assert.match(answer.body.message, /nested deeper than 64 levels/);
    });

    it('answers 413 for a body over the limit, without reading it all', async () => {
      const big = JSON.stringify({ key: b64('a'), value: Buffer.alloc(3 * 1024 * 1024, 1).toString('base64') });
      const answer = await gw.post('/v3/kv/put', big);
      assert.equal(answer.status, 413);
      assert.deepEqual(answer.body, {
        error: 'request body is larger than the limit of 2097152 bytes',
        message: 'request body is larger than the limit of 2097152 bytes',
        code: 8,
      });
    });

    it('never lets a refused request reach etcd', async () => {
      const before = await gw.post('/v3/kv/range', { key: b64('x') });
      await gw.post('/v3/kv/put', { key: b64('in/refused'), value: 'Zm9v-_' });
      await gw.post('/v3/kv/txn', { success: [{ request_put: { key: b64('in/refused'), value: b64('v') } }, null] });
      const afterwards = await gw.post('/v3/kv/range', { key: b64('in/refused') });
      assert.equal(afterwards.body.kvs, undefined);
      assert.equal(afterwards.body.header.revision, before.body.header.revision);
    });
  });
});
