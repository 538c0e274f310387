// Every /v1/ handler by operationId, over the shared core: the etcd client, the watch hub, the
// keepalive stream and the body limit. A test checks the table against openapi.yaml's /v1/ operations.

import type { KeepAliveHub } from '../../core/keepalive';
import type { WatchHub } from '../../core/watch/hub';
import { clusterHandlers } from './cluster';
import { kvHandlers } from './kv';
import { leaseHandlers } from './leases';
import { lockHandlers } from './locks';
import type { V1Handler } from './router';
import { watchHandlers } from './watch';
import type { StreamLimits } from '../v3/watch';
import type { Admission } from '../../core/admission';

export interface V1Settings {
  hub: WatchHub;
  keepalive: KeepAliveHub;
  maxBodyBytes: number;
  /** Longest wait of a lock (LOCK_WAIT_MS, as /v3/lock/lock). */
  lockWaitMs: number;
  maxWatchConnections: number;
  /** Watch streams in all, and the bytes one may leave unread (as /v3/watch). */
  limits: StreamLimits;
  /** Interval of the SSE watch's heartbeat comment. */
  watchHeartbeatMs: number;
  /** Per-client caps: a watch stream takes one of its client's watches. */
  admission?: Admission;
}

export function v1Handlers(s: V1Settings): Record<string, V1Handler> {
  return { ...kvHandlers(s), ...leaseHandlers(s), ...lockHandlers(s), ...watchHandlers(s), ...clusterHandlers() };
}
