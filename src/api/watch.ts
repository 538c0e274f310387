// Watch over HTTP: the body is a sequence of WatchRequests, the answer a stream of
// `{"result": WatchResponse}` lines, one chunk each, open until the client leaves. The same message
// codec serves the WebSocket transport (streams/websocket.ts).

import type express from 'express';
import type { ApiSpec, Operation } from './openapi';
import type { GrpcMessage } from './context';
import { decode, encode, normalizeNames } from '../codec/codec';
import type { ObjectShape } from '../codec/shape';
import { parseJsonSequence, JsonSyntaxError } from '../json/parse';
import { GatewayError, GrpcCode, httpStatusFromGrpcCode, invalidArgument, fromGrpcError } from '../errors';
import { readBody, rawBodyReader, sendError, type Route } from './router';
import type { WatchHub, WatchConnection } from '../streams/watch-hub';
import { STATUS_CODES } from 'node:http';

export interface StreamLimits {
  maxConnections: number;
  /** Bytes a connection may have waiting to be sent before it is cut off as too slow. */
  sendBufferBytes: number;
}

/** Decodes client WatchRequests and encodes WatchResponses, with the schemas of openapi.yaml. */
export class WatchCodec {
  private readonly request: ObjectShape;
  private readonly response: ObjectShape;

  constructor(private readonly spec: ApiSpec) {
    this.request = spec.requestShape('WatchRequest');
    this.response = spec.shapes.objectComponent('WatchResponse');
  }

  /** One parsed JSON value → a gRPC WatchRequest; throws a 400 naming the field. */
  decodeRequest(value: unknown, where = ''): GrpcMessage {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw invalidArgument(`${where || 'request'}: a watch request must be a JSON object`);
    }
    const body = value as Record<string, unknown>;
    try {
      normalizeNames(this.request, body);
      this.spec.check('WatchRequest', body);
    } catch (e) {
      if (e instanceof GatewayError && where) throw new GatewayError(e.code, `${where}: ${e.message}`);
      throw e;
    }
    return decode(this.request, body);
  }

  encodeResult(response: GrpcMessage): string {
    return JSON.stringify({ result: encode(this.response, response) });
  }
}

/** etcd's gateway shape for an error inside a stream. */
export function streamError(err: unknown): string {
  const e = fromGrpcError(err);
  const http = httpStatusFromGrpcCode(e.code);
  return JSON.stringify({ error: { grpc_code: e.code, http_code: http, message: e.message, http_status: STATUS_CODES[http] ?? '' } });
}

export function tooManyConnections(limit: number): GatewayError {
  return new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: too many watch connections (limit ${limit})`);
}

export function slowConsumer(limit: number): GatewayError {
  return new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: watch consumer too slow: more than ${limit} bytes waiting to be sent`);
}

export function watchRoute(operation: Operation, hub: WatchHub, codec: WatchCodec, limits: StreamLimits, maxBodyBytes: number): Route {
  const reader = rawBodyReader(maxBodyBytes);
  return {
    operation,
    async serve(req: express.Request, res: express.Response) {
      let requests: GrpcMessage[];
      try {
        const raw = await readBody(reader, req, res);
        const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : '';
        let values: unknown[];
        try {
          values = parseJsonSequence(text);
        } catch (e) {
          if (e instanceof JsonSyntaxError) throw invalidArgument(`request body is not valid JSON: ${e.message}`);
          throw e;
        }
        // Every request is checked before any reaches etcd: a bad one refuses the whole body.
        requests = values.map((v, i) => codec.decodeRequest(v, values.length > 1 ? `request ${i + 1}` : ''));
        if (hub.stats().connections >= limits.maxConnections) throw tooManyConnections(limits.maxConnections);
      } catch (err) {
        sendError(res, err);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' });
      res.flushHeaders();
      req.socket.setNoDelay(true);
      let cutOff = false;
      const connection: WatchConnection = hub.connect({
        deliver(response) {
          if (cutOff) return;
          // One message per write: each becomes its own HTTP chunk, as etcd3gw expects.
          res.write(`${codec.encodeResult(response)}\n`);
          if (res.writableLength > limits.sendBufferBytes) {
            cutOff = true;
            res.end(`${streamError(slowConsumer(limits.sendBufferBytes))}\n`);
            connection.close();
            setTimeout(() => res.destroy(), 10_000).unref();
          }
        },
      });
      res.on('close', () => connection.close());
      for (const r of requests) connection.request(r);
    },
  };
}
