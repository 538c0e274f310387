// Watch over HTTP: the body is a sequence of WatchRequests, the answer a stream of
// `{"result": WatchResponse}` lines, one chunk each, open until the client leaves. The same message
// codec serves the WebSocket transport (streams/websocket.ts).

import type { ApiSpec, Operation } from '../../core/contract/spec';
import { admit, etcdMetadata, type GrpcMessage, type Guard } from '../../core/context';
import { decode, encode, normalizeNames } from '../../core/contract/codec';
import type { ObjectShape } from '../../core/contract/shape';
import { GatewayError, GrpcCode, httpStatusFromGrpcCode, invalidArgument, fromGrpcError } from '../../core/errors';
import { readJsonSequence, sendError, stampRequestId, type Route } from '../router';
import type { WatchHub, WatchConnection } from '../../core/watch/hub';
import { TickCork } from '../../core/watch/tick-cork';
import { StallWatch } from '../../core/watch/stall';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { Admission, type WatchQuota } from '../../core/admission';

export interface StreamLimits {
  maxConnections: number;
  /** Bytes a connection may have waiting to be sent before it is cut off as too slow. */
  sendBufferBytes: number;
}

/** Decodes the request messages of one streaming operation and encodes its answers, with the schemas
 *  of openapi.yaml (the same for HTTP bodies and WebSocket messages). */
export class MessageCodec {
  private readonly request: ObjectShape;
  private readonly response: ObjectShape;

  constructor(
    private readonly spec: ApiSpec,
    private readonly requestName: string,
    responseName: string,
  ) {
    this.request = spec.requestShape(requestName);
    this.response = spec.shapes.objectComponent(responseName);
  }

  /** One parsed JSON value → a gRPC request; throws a 400 naming the field. */
  decodeRequest(value: unknown, where = ''): GrpcMessage {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw invalidArgument(`${where || 'request'}: must be a JSON object`);
    }
    const body = value as Record<string, unknown>;
    try {
      normalizeNames(this.request, body);
      this.spec.check(this.requestName, body);
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

export function watchRoute(operation: Operation, hub: WatchHub, codec: MessageCodec, limits: StreamLimits, maxBodyBytes: number, admission: Admission, guard?: Guard): Route {
  return {
    operation,
    async serve(req: IncomingMessage, res: ServerResponse) {
      let requests: GrpcMessage[];
      let metadata: ReturnType<typeof etcdMetadata>;
      let quota: WatchQuota | undefined;
      try {
        const values = await readJsonSequence(req, maxBodyBytes);
        // Every request is checked before any reaches etcd: a bad one refuses the whole body.
        requests = values.map((v, i) => codec.decodeRequest(v, values.length > 1 ? `request ${i + 1}` : ''));
        for (const r of requests) await admit(guard, req, operation.operationId, r);
        if (hub.stats().connections >= limits.maxConnections) throw tooManyConnections(limits.maxConnections);
        // Each request of the body is one, as on a WebSocket: the open paid for the first.
        const limited = requests.length > 1 ? admission.charge(req, requests.length - 1) : undefined;
        if (limited) return sendError(res, limited.error, limited.headers);
        metadata = etcdMetadata(req.headers);
        quota = admission.watchQuota(req);
        try {
          Admission.checkWatches(quota, requests.filter((r) => r.create_request).length);
        } catch (err) {
          quota?.detach();
          throw err;
        }
      } catch (err) {
        sendError(res, err);
        return;
      }
      stampRequestId(res);
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      req.socket.setNoDelay(true);
      // As etcd's gateway, the headers go out with the first message, so a client whose call returns
      // on the headers (etcd3gw) knows its watch exists. A body that asks for nothing answerable gets
      // them at once instead of leaving the client hanging.
      if (!requests.some((r) => r.create_request || r.progress_request)) res.flushHeaders();
      let cutOff = false;
      let continuing = false;
      const tick = new TickCork(res);
      const tooSlow = (stalled: boolean): void => {
        cutOff = true;
        stall.stop();
        res.end(`${streamError(slowConsumer(limits.sendBufferBytes))}\n`);
        connection.close();
        // A client that reads nothing would not read the end either: let go of what waits now.
        if (stalled) res.destroy();
        else setTimeout(() => res.destroy(), 10_000).unref();
      };
      // A large answer with nothing after it, never read, is cut off too (stall.ts).
      const stall = new StallWatch(() => res.writableLength, limits.sendBufferBytes, () => tooSlow(true));
      res.on('close', () => stall.stop());
      const send = (text: string, fragment: boolean): void => {
        if (cutOff) return;
        // A client is too slow when what was sent before is still waiting; one large answer (a
        // catch-up, a revision's fragments) always goes through, so memory stays within the limit
        // plus one answer.
        if (!continuing && res.writableLength > limits.sendBufferBytes) return tooSlow(false);
        tick.hold();
        // One message per write: each becomes its own HTTP chunk, as etcd3gw expects.
        res.write(`${text}\n`);
        if (stall.armed || res.writableLength > limits.sendBufferBytes) stall.wrote(Buffer.byteLength(text) + 1);
        continuing = fragment;
      };
      const connection: WatchConnection = hub.connect(
        {
          deliver: (response) => send(codec.encodeResult(response), response.fragment === true),
          deliverShared: (response, watchId) => send(response.encodedFor(codec, watchId), response.response.fragment === true),
        },
        metadata,
        quota,
      );
      res.on('close', () => connection.close());
      for (const r of requests) connection.request(r);
    },
  };
}
