// Lease service, unary part. Keepalives are streams (streams/keepalive.ts).

import { forward, type UnaryHandler } from '../context';

export const leaseHandlers: Record<string, UnaryHandler> = {
  Lease_LeaseGrant: forward('Lease', 'LeaseGrant', { idempotent: false }),
  Lease_LeaseRevoke: forward('Lease', 'LeaseRevoke', { idempotent: false }),
  Lease_LeaseTimeToLive: forward('Lease', 'LeaseTimeToLive', { idempotent: true }),
  Lease_LeaseLeases: forward('Lease', 'LeaseLeases', { idempotent: true }),
};
