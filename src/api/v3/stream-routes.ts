// HTTP routes for the other streaming operations, framed as etcd's gateway frames them (one
// `{"result": ...}` line per message, headers with the first message):
// - lease keepalive: every request in the body renews once, on the shared keepalive stream, and is
//   answered by one line; the answer ends with the body, as etcd's does;
// - server streams (maintenance snapshot, election observe): one request, then every message etcd
//   sends, passed on with back-pressure so a snapshot is never held in memory.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Operation } from '../../core/contract/spec';
import { admit, etcdMetadata, type Guard } from '../../core/context';
import { readJsonSequence, sendError, stampRequestId, type Route } from '../router';
import { streamError, type MessageCodec } from './watch';
import type { KeepAliveHub } from '../../core/keepalive';
import type { EtcdClient, Service } from '../../etcd/client';
import { fromGrpcError, httpStatusFromGrpcCode, invalidArgument } from '../../core/errors';
import type { Admission } from '../../core/admission';

function startStream(res: ServerResponse): void {
  if (res.headersSent) return;
  stampRequestId(res);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
}

export function keepAliveRoute(operation: Operation, keepalive: KeepAliveHub, codec: MessageCodec, maxBodyBytes: number, admission: Admission, guard?: Guard): Route {
  return {
    operation,
    async serve(req: IncomingMessage, res: ServerResponse) {
      let ids: string[];
      let metadata: ReturnType<typeof etcdMetadata>;
      let release: () => void;
      try {
        const values = await readJsonSequence(req, maxBodyBytes);
        const requests = values.map((v, i) => codec.decodeRequest(v, values.length > 1 ? `request ${i + 1}` : ''));
        // Each ID is a renewal, a request of its own: the open paid for the first.
        const limited = requests.length > 1 ? admission.charge(req, requests.length - 1) : undefined;
        if (limited) return sendError(res, limited.error, limited.headers);
        // Every request is checked before any lease is renewed: a refused one refuses the whole body.
        for (const request of requests) await admit(guard, req, operation.operationId, request);
        ids = requests.map((request) => String(request.ID ?? '0'));
        metadata = etcdMetadata(req.headers);
        // Taken last: nothing after it can fail before the close listener gives it back.
        release = admission.keepalivesInFlight(req, ids.length);
      } catch (err) {
        sendError(res, err);
        return;
      }
      let gone = false;
      res.on('close', () => {
        gone = true;
        release();
      });
      for (const id of ids) {
        if (gone) return;
        try {
          const answer = await keepalive.renew(id, metadata);
          startStream(res);
          res.write(`${codec.encodeResult(answer)}\n`);
        } catch (err) {
          if (!res.headersSent) return sendError(res, err);
          res.end(`${streamError(err)}\n`);
          return;
        }
      }
      startStream(res);
      res.end();
    },
  };
}

export function serverStreamRoute(
  operation: Operation,
  etcd: EtcdClient,
  service: Service,
  method: string,
  codec: MessageCodec,
  maxBodyBytes: number,
  guard?: Guard,
): Route {
  return {
    operation,
    async serve(req: IncomingMessage, res: ServerResponse) {
      let request;
      let metadata: ReturnType<typeof etcdMetadata>;
      try {
        const values = await readJsonSequence(req, maxBodyBytes);
        if (values.length > 1) throw invalidArgument(`${operation.path} takes one request, got ${values.length}`);
        request = codec.decodeRequest(values[0] ?? {});
        await admit(guard, req, operation.operationId, request);
        metadata = etcdMetadata(req.headers);
      } catch (err) {
        sendError(res, err);
        return;
      }
      const call = etcd.serverStream(service, method, request, metadata);
      res.on('close', () => call.cancel());
      res.on('drain', () => call.resume());
      call.on('data', (msg: unknown) => {
        startStream(res);
        // Back-pressure: etcd's stream waits while the client is slower than etcd.
        if (!res.write(`${codec.encodeResult(msg as Record<string, unknown>)}\n`)) call.pause();
      });
      call.on('end', () => {
        startStream(res);
        res.end();
      });
      call.on('error', (err) => {
        if (res.writableEnded) return;
        // As etcd's gateway: a stream error, even before the first message, comes in the stream's
        // error envelope, with the HTTP status of its gRPC code.
        if (!res.headersSent) {
          const body = streamError(err);
          stampRequestId(res);
          res.writeHead(httpStatusFromGrpcCode(fromGrpcError(err).code), { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
          res.end(body);
          return;
        }
        res.end(`${streamError(err)}\n`);
      });
    },
  };
}
