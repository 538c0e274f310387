// Cluster service: membership.

import { forward, type UnaryHandler } from '../../core/context';

export const clusterHandlers: Record<string, UnaryHandler> = {
  Cluster_MemberAdd: forward('Cluster', 'MemberAdd', { idempotent: false }),
  Cluster_MemberRemove: forward('Cluster', 'MemberRemove', { idempotent: false }),
  Cluster_MemberUpdate: forward('Cluster', 'MemberUpdate', { idempotent: false }),
  Cluster_MemberList: forward('Cluster', 'MemberList', { idempotent: true }),
  Cluster_MemberPromote: forward('Cluster', 'MemberPromote', { idempotent: false }),
};
