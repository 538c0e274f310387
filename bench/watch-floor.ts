// The floor of a watch fan-out on this machine: a third target for bench/watch.ts (--target floor).
// A server that does only what no WebSocket watch gateway can skip: one etcd watch per distinct
// (key, range_end), each etcd response turned into JSON once and framed once, and the same bytes
// queued for every socket that watches it, written by the gateway's own paced outboxes
// (src/core/watch/outbox.ts). No hub, no resumption, no access control, no limits, no slow-consumer check. The bench's clients, puts and measurement are the same as
// for the gateway, so on one machine the gap between the two columns is what the gateway itself costs,
// and the floor's own figures are what Node, the kernel and the bench's clients cost together.
// Not a product: a client that asks anything but one create per socket is closed.

import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import type { EtcdClient } from '../src/etcd/client';
import { Outbox } from '../src/core/watch/outbox';
import { textFrame } from '../src/api/ws/websocket';

interface Kv {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  value: Buffer;
  lease: string;
}
interface Msg {
  header: Record<string, string> | null;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  events: Array<{ type: string; kv: Kv | null }>;
}

interface Group {
  id: string;
  share: string;
  sockets: Set<Outbox>;
  /** Sockets waiting for etcd's created answer. */
  waiting?: WebSocket[];
}

/** etcd's gateway's JSON for a response (int64 as strings, bytes as base64, defaults left out). */
function json(msg: Msg): string {
  const events = msg.events.map((e) => {
    const kv = e.kv!;
    const out: Record<string, unknown> = {
      key: kv.key.toString('base64'),
      create_revision: kv.create_revision,
      mod_revision: kv.mod_revision,
      version: kv.version,
      value: kv.value.toString('base64'),
    };
    if (kv.lease !== '0') out.lease = kv.lease;
    return e.type === 'PUT' || !e.type ? { kv: out } : { type: e.type, kv: out };
  });
  return JSON.stringify({ result: { header: msg.header, watch_id: '0', ...(msg.created ? { created: true } : {}), ...(events.length ? { events } : {}) } });
}

export interface FloorServer {
  port: number;
  /** No socket and no etcd watch left. */
  idle(): boolean;
  close(): Promise<void>;
}

export async function startFloorServer(etcd: EtcdClient): Promise<FloorServer> {
  const groups = new Map<string, Group>();
  const byId = new Map<string, Group>();
  let nextId = 1;
  let sockets = 0;
  const { call } = etcd.openStream('Watch', 'Watch', new grpc.Metadata());
  call.on('error', () => undefined);
  call.on('data', (msg: Msg) => {
    const group = byId.get(msg.watch_id);
    if (!group) return;
    if (msg.created) {
      const created = json(msg);
      for (const ws of group.waiting ?? []) ws.send(created);
      group.waiting = undefined;
    } else if (msg.events.length) {
      const frame = textFrame(Buffer.from(json(msg)));
      for (const outbox of group.sockets) outbox.push(frame);
    }
  });

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket: Duplex, head) => {
    socket.on('error', () => socket.destroy());
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets++;
      let group: Group | undefined;
      const outbox = new Outbox((data) => ws.readyState === ws.OPEN && socket.write(data));
      ws.once('message', (data) => {
        const create = (JSON.parse(data.toString()) as { create_request?: { key?: string; range_end?: string } }).create_request;
        if (!create) return ws.close(1008, 'the floor server takes one create_request');
        const share = `${create.key ?? ''} ${create.range_end ?? ''}`;
        group = groups.get(share);
        if (!group) {
          group = { id: String(nextId++), share, sockets: new Set(), waiting: [] };
          groups.set(share, group);
          byId.set(group.id, group);
          const request = { key: Buffer.from(create.key ?? '', 'base64'), range_end: Buffer.from(create.range_end ?? '', 'base64'), watch_id: group.id };
          call.write({ create_request: request });
        }
        group.sockets.add(outbox);
        if (group.waiting) group.waiting.push(ws);
        else ws.send(JSON.stringify({ result: { header: {}, watch_id: '0', created: true } }));
      });
      ws.on('close', () => {
        sockets--;
        outbox.close();
        if (!group) return;
        group.sockets.delete(outbox);
        if (group.sockets.size > 0) return;
        groups.delete(group.share);
        byId.delete(group.id);
        call.write({ cancel_request: { watch_id: group.id } });
      });
      ws.on('error', () => ws.terminate());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    idle: () => sockets === 0 && groups.size === 0,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      call.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
