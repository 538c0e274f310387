// The gateway's own GET endpoints: /version and /health shaped as etcd's; /healthz (the process lives)
// and /readyz (etcd answers) for probes; /metrics for Prometheus; /stats.

import type express from 'express';
import { sendError, sendJson } from '../router';
import type { EtcdClient } from '../../etcd/client';
import { fromGrpcError, GatewayError, GrpcCode } from '../../core/errors';
import type { WatchHub } from '../../core/watch/hub';
import type { Metrics } from '../../core/observability/metrics';

export type HttpHandler = (req: express.Request, res: express.Response) => Promise<void>;

const HEALTH_TIMEOUT_MS = 2_000;
const READY_TIMEOUT_MS = 1_000;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const GATEWAY_VERSION: string = require('../../../../package.json').version;

/** etcd's cluster version is only published on its HTTP /version (read with etcd's TLS settings);
 *  derive it from the server version (as etcd does for a cluster of one version) when that fails. */
async function clusterVersion(etcd: EtcdClient, serverVersion: string): Promise<string> {
  try {
    const body = (await etcd.httpJson('/version', HEALTH_TIMEOUT_MS)) as { etcdcluster?: unknown };
    if (typeof body.etcdcluster === 'string') return body.etcdcluster;
  } catch {
    // fall through to the derived version
  }
  return serverVersion.replace(/^(\d+\.\d+)\..*$/, '$1.0');
}

/** A linearizable read needs a leader and a quorum: the same test etcd's own /health makes. */
async function etcdAnswers(etcd: EtcdClient, timeoutMs: number): Promise<string | undefined> {
  try {
    await etcd.unary('KV', 'Range', { key: Buffer.from('health') }, { idempotent: true, deadline: Date.now() + timeoutMs });
    return undefined;
  } catch (err) {
    return fromGrpcError(err).message;
  }
}

export function gatewayHandlers(etcd: EtcdClient, hub: WatchHub, metrics: Metrics): Record<string, HttpHandler> {
  return {
    async Gateway_Healthz(_req, res) {
      sendJson(res, 200, { status: 'ok' });
    },
    async Gateway_Readyz(_req, res) {
      const reason = await etcdAnswers(etcd, READY_TIMEOUT_MS);
      if (reason === undefined) sendJson(res, 200, { ready: true });
      else sendJson(res, 503, { ready: false, reason });
    },
    async Gateway_Metrics(_req, res) {
      let text: string;
      try {
        text = await metrics.text();
      } catch (err) {
        sendError(res, new GatewayError(GrpcCode.UNAVAILABLE, (err as Error).message));
        return;
      }
      res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
      res.end(text);
    },
    async Gateway_Stats(_req, res) {
      sendJson(res, 200, { watch: hub.stats() });
    },
    async Gateway_Version(_req, res) {
      try {
        const status = await etcd.unary<{ version: string }>('Maintenance', 'Status', {}, { idempotent: true });
        const etcdcluster = await clusterVersion(etcd, status.version);
        sendJson(res, 200, { etcdserver: status.version, etcdcluster, gateway: GATEWAY_VERSION });
      } catch (err) {
        const e = fromGrpcError(err);
        sendJson(res, e.httpStatus, e.body());
      }
    },
    async Gateway_Health(_req, res) {
      const reason = await etcdAnswers(etcd, HEALTH_TIMEOUT_MS);
      if (reason === undefined) sendJson(res, 200, { health: 'true' });
      else sendJson(res, 503, { health: 'false', reason });
    },
  };
}
