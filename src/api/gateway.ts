// The gateway's own GET endpoints: /version and /health shaped as etcd's, and /stats.

import type express from 'express';
import { sendJson } from './router';
import type { EtcdClient } from '../etcd/client';
import { fromGrpcError } from '../errors';
import type { WatchHub } from '../streams/watch-hub';

export type HttpHandler = (req: express.Request, res: express.Response) => Promise<void>;

const HEALTH_TIMEOUT_MS = 2_000;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const GATEWAY_VERSION: string = require('../../../package.json').version;

/** etcd's cluster version is only published on its HTTP /version; derive it from the server version
 *  (as etcd does for a cluster of one version) when that cannot be read. */
async function clusterVersion(endpoint: string, serverVersion: string): Promise<string> {
  try {
    const res = await fetch(new URL('/version', endpoint), { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    const body = (await res.json()) as { etcdcluster?: unknown };
    if (typeof body.etcdcluster === 'string') return body.etcdcluster;
  } catch {
    // fall through to the derived version
  }
  return serverVersion.replace(/^(\d+\.\d+)\..*$/, '$1.0');
}

export function gatewayHandlers(etcd: EtcdClient, hub: WatchHub): Record<string, HttpHandler> {
  return {
    async Gateway_Stats(_req, res) {
      sendJson(res, 200, { watch: hub.stats() });
    },
    async Gateway_Version(_req, res) {
      try {
        const status = await etcd.unary<{ version: string }>('Maintenance', 'Status', {}, { idempotent: true });
        const etcdcluster = await clusterVersion(etcd.currentEndpoint, status.version);
        sendJson(res, 200, { etcdserver: status.version, etcdcluster, gateway: GATEWAY_VERSION });
      } catch (err) {
        const e = fromGrpcError(err);
        sendJson(res, e.httpStatus, e.body());
      }
    },
    async Gateway_Health(_req, res) {
      try {
        // A linearizable read needs a leader and a quorum: the same test etcd's own /health makes.
        await etcd.unary('KV', 'Range', { key: Buffer.from('health') }, {
          idempotent: true,
          deadline: Date.now() + HEALTH_TIMEOUT_MS,
        });
        sendJson(res, 200, { health: 'true' });
      } catch (err) {
        sendJson(res, 503, { health: 'false', reason: fromGrpcError(err).message });
      }
    },
  };
}
