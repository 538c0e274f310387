// Lease service, unary part. Keepalives are streams (streams/keepalive.ts).

import { forward, type UnaryHandler } from '../../core/context';

const timeToLive = forward('Lease', 'LeaseTimeToLive', { idempotent: true });

export const leaseHandlers: Record<string, UnaryHandler> = {
  Lease_LeaseGrant: forward('Lease', 'LeaseGrant', { idempotent: false }),
  Lease_LeaseRevoke: forward('Lease', 'LeaseRevoke', { idempotent: false }),
  // A lease's keys are listed only as far as the caller may read them (access control's rule: a
  // lease ID says nothing about whose keys it holds).
  async Lease_LeaseTimeToLive(request, ctx) {
    const answer = await timeToLive(request, ctx);
    const readable = ctx.readable;
    if (readable && Array.isArray(answer.keys)) answer.keys = (answer.keys as Buffer[]).filter((k) => readable(k));
    return answer;
  },
  Lease_LeaseLeases: forward('Lease', 'LeaseLeases', { idempotent: true }),
};
