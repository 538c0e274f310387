// Limits on what a client may send or hold open, each answered with a clear JSON error.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { rawAnswer } from '../support/raw-http';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';

const raw = (port: number, request: string): Promise<string> => rawAnswer(port, request, { timeoutMs: 5000, strict: true });

describe('connection and header limits', () => {
  let gw: GatewayFixture;
  let port: number;
  before(async () => {
    gw = await startGateway({ maxConnections: 3, maxHeaderBytes: 4096 });
    port = Number(new URL(gw.url).port);
  });
  after(() => gw.close());

  it('answers a request head over the limit with 431 in JSON', async () => {
    const answer = await raw(port, `POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(8000)}\r\nContent-Length: 2\r\n\r\n{}`);
    assert.match(answer, /^HTTP\/1\.1 431 Request Header Fields Too Large/);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(body, {
      error: 'request head (request line and headers) is larger than MAX_HEADER_BYTES',
      message: 'request head (request line and headers) is larger than MAX_HEADER_BYTES',
      code: 3,
    });
  });

  it('answers a request the HTTP parser cannot read with 400 in JSON', async () => {
    const answer = await raw(port, 'NOT A REQUEST\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request/);
    assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).code, 3);
  });

  it('refuses connections over the limit with 503 in JSON, and serves again when some close', async () => {
    const idle = await Promise.all([1, 2, 3].map(() => new Promise<net.Socket>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
    })));
    try {
      await new Promise((r) => setTimeout(r, 100));
      const answer = await raw(port, 'POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}');
      assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable/);
      assert.match(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).message, /too many connections \(limit 3\)/);
    } finally {
      for (const s of idle) s.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    const ok = await gw.post('/v3/kv/range', { key: b64('x') });
    assert.equal(ok.status, 200);
  });
});
