// Maintenance service, unary part. Snapshot is a stream (api/server-streams.ts). Status, hash and
// defragment act on the member that answers, like etcd's gateway on that member.

import { forward, type UnaryHandler } from '../../core/context';

export const maintenanceHandlers: Record<string, UnaryHandler> = {
  Maintenance_Alarm: forward('Maintenance', 'Alarm', { idempotent: false }),
  Maintenance_Status: forward('Maintenance', 'Status', { idempotent: true }),
  Maintenance_Defragment: forward('Maintenance', 'Defragment', { idempotent: false }),
  Maintenance_Hash: forward('Maintenance', 'Hash', { idempotent: true }),
  Maintenance_MoveLeader: forward('Maintenance', 'MoveLeader', { idempotent: false }),
};
