// GET /v1/cluster: the members, each with the status only it can give (version, database size, raft
// term and index), the leader, and the alarms — what `etcdctl endpoint status --cluster` shows, in one
// answer. etcd's Status is answered by the member asked, so the gateway asks each member on a client
// URL of its own, the way etcdctl's --cluster does; a member that does not answer within
// MEMBER_STATUS_MS is listed with the error instead of holding up the rest, and alarms that cannot be
// read within it (they need a leader) are left out with the reason.

import { fromGrpcError } from '../../core/errors';
import { revisionNumber } from './representation';
import { replyJson, type V1Handler, type V1Request } from './router';
import { admitted } from './etcd';

/** How long one member's Status (or the alarm list) may take before it is reported as not answering. */
export const MEMBER_STATUS_MS = 2_000;

interface Member {
  ID: string;
  name?: string;
  peerURLs?: string[];
  clientURLs?: string[];
  isLearner?: boolean;
}

interface Status {
  header?: { cluster_id?: string; member_id?: string; revision?: string };
  version?: string;
  dbSize?: string;
  dbSizeInUse?: string;
  leader?: string;
  raftIndex?: string;
  raftTerm?: string;
  raftAppliedIndex?: string;
  errors?: string[];
}

/** A member's status in /v1/ form. */
function statusOf(s: Status): Record<string, unknown> {
  return {
    version: s.version ?? '',
    db_size: revisionNumber(s.dbSize),
    db_size_in_use: revisionNumber(s.dbSizeInUse),
    raft_term: revisionNumber(s.raftTerm),
    raft_index: revisionNumber(s.raftIndex),
    raft_applied_index: revisionNumber(s.raftAppliedIndex),
    errors: s.errors ?? [],
  };
}

async function memberStatus(r: V1Request, m: Member): Promise<{ status?: Status; error?: string }> {
  const url = m.clientURLs?.[0];
  if (!url) return { error: 'not started: the member has no client URL yet' };
  try {
    const deadline = Date.now() + MEMBER_STATUS_MS;
    return { status: await r.etcd.unaryAt<Status>(url, 'Maintenance', 'Status', {}, { metadata: r.metadata, signal: r.signal, deadline }) };
  } catch (e) {
    return { error: `${url}: ${fromGrpcError(e).message}` };
  }
}

async function serveCluster(r: V1Request): Promise<void> {
  await admitted(r, 'Maintenance_Status', {});
  const opts = { idempotent: true, metadata: r.metadata, signal: r.signal };
  // The alarms are read through raft: without a leader (a member down, an election) they cannot be, and
  // that is when the rest of this answer matters most, so they are left out with the reason instead of
  // failing it. The member list and each member's status need no leader.
  const [list, alarms] = await Promise.all([
    r.etcd.unary<{ header?: { cluster_id?: string }; members?: Member[] }>('Cluster', 'MemberList', {}, opts),
    r.etcd
      .unary<{ alarms?: Array<{ memberID?: string; alarm?: string }> }>('Maintenance', 'Alarm', { action: 'GET' }, { ...opts, deadline: Date.now() + MEMBER_STATUS_MS })
      .then((a) => ({ list: a.alarms ?? [] }), (e: unknown) => ({ error: fromGrpcError(e).message })),
  ]);
  const members = list.members ?? [];
  const statuses = await Promise.all(members.map((m) => memberStatus(r, m)));
  // The leader as the members that answered see it (the most recent term wins).
  let leader: string | undefined;
  let term = -1;
  // The member list's header carries no revision: the highest any member reported is the store's.
  let revision = 0;
  for (const { status } of statuses) {
    revision = Math.max(revision, revisionNumber(status?.header?.revision));
    const t = revisionNumber(status?.raftTerm);
    if (status?.leader && status.leader !== '0' && t > term) {
      leader = status.leader;
      term = t;
    }
  }
  replyJson(r, 200, {
    cluster_id: list.header?.cluster_id ?? '',
    revision,
    leader: leader ?? null,
    members: members.map((m, i) => {
      const { status, error } = statuses[i];
      return {
        id: m.ID,
        name: m.name ?? '',
        peer_urls: m.peerURLs ?? [],
        client_urls: m.clientURLs ?? [],
        learner: m.isLearner === true,
        leader: m.ID === leader,
        ...(status ? { status: statusOf(status) } : { status_error: error ?? 'no answer' }),
      };
    }),
    ...('list' in alarms
      ? { alarms: alarms.list.map((a) => ({ member_id: a.memberID ?? '0', alarm: a.alarm ?? 'NONE' })) }
      : { alarms: null, alarms_error: alarms.error }),
  });
}

export function clusterHandlers(): Record<string, V1Handler> {
  return { V1_Cluster: (r) => serveCluster(r) };
}
