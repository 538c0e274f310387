// etcd's lock and election services. A lock or a campaign waits until it succeeds, at most the longest
// wait configured; if the client goes away first the call is canceled, and etcd removes the waiting key.

import { forward, type UnaryHandler } from '../context';

export function lockHandlers(maxWaitMs: number): Record<string, UnaryHandler> {
  return {
    Lock_Lock: forward('Lock', 'Lock', { idempotent: false, maxWaitMs }),
    Lock_Unlock: forward('Lock', 'Unlock', { idempotent: false }),
    Election_Campaign: forward('Election', 'Campaign', { idempotent: false, maxWaitMs }),
    Election_Proclaim: forward('Election', 'Proclaim', { idempotent: false }),
    Election_Leader: forward('Election', 'Leader', { idempotent: true }),
    Election_Resign: forward('Election', 'Resign', { idempotent: false }),
  };
}
