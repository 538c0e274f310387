// The cluster: members with their URLs and roles, the leader, the status of the member that answered
// (version, db size, raft term and index), and alarms; read again every few seconds while shown.

import { useEffect, useState } from 'preact/hooks';
import { v3 } from './api';
import { formatBytes } from './format';
import { messageOf, type Report } from './widgets';

const REFRESH_MS = 5000;

/** etcd's answers as its gateway writes them: 64-bit numbers as strings, zero values left out. */
interface Member {
  ID: string;
  name?: string;
  peerURLs?: string[];
  clientURLs?: string[];
  isLearner?: boolean;
}
interface Status {
  header: { cluster_id: string; member_id: string; revision?: string; raft_term?: string };
  version: string;
  dbSize?: string;
  dbSizeInUse?: string;
  leader?: string;
  raftIndex?: string;
  raftTerm?: string;
  raftAppliedIndex?: string;
  errors?: string[];
}
interface Alarm {
  memberID?: string;
  alarm?: string;
}

interface Snapshot {
  members: Member[];
  status: Status;
  alarms: Alarm[];
  readAt: Date;
}

export function ClusterView(props: { report: Report }) {
  const [snap, setSnap] = useState<Snapshot | undefined>();
  const [failed, setFailed] = useState('');

  useEffect(() => {
    let live = true;
    const read = async (): Promise<void> => {
      try {
        const [list, status, alarm] = await Promise.all([
          v3<{ members?: Member[] }>('cluster/member/list'),
          v3<Status>('maintenance/status'),
          v3<{ alarms?: Alarm[] }>('maintenance/alarm', { action: 'GET' }),
        ]);
        if (!live) return;
        setSnap({ members: list.members ?? [], status, alarms: alarm.alarms ?? [], readAt: new Date() });
        setFailed('');
      } catch (e) {
        if (!live) return;
        setFailed(messageOf(e));
        props.report(e);
      }
    };
    void read();
    const t = setInterval(() => void read(), REFRESH_MS);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, []);

  if (!snap) return failed ? <p class="refused" role="alert">The gateway refused: {failed}</p> : <p>Loading…</p>;
  const { members, status, alarms } = snap;
  const nameOf = (id: string | undefined): string => members.find((m) => m.ID === id)?.name || id || '?';
  return (
    <section class="cluster" aria-labelledby="cluster-title">
      <h2 id="cluster-title">Cluster</h2>
      {failed && <p class="refused" role="alert">Last refresh failed: {failed}</p>}
      <dl class="meta">
        <dt>Cluster ID</dt>
        <dd>{status.header.cluster_id}</dd>
        <dt>Leader</dt>
        <dd class="leader-name">{status.leader ? nameOf(status.leader) : 'none'}</dd>
        <dt>Raft term</dt>
        <dd>{status.raftTerm ?? '0'}</dd>
        <dt>Revision</dt>
        <dd>{status.header.revision ?? '0'}</dd>
        <dt>Alarms</dt>
        <dd class={alarms.length ? 'alarm' : ''}>{alarms.length ? alarms.map((a) => `${a.alarm ?? 'NONE'} on ${nameOf(a.memberID)}`).join(', ') : 'none'}</dd>
        <dt>Read at</dt>
        <dd>{snap.readAt.toLocaleTimeString()}</dd>
      </dl>
      <table class="members">
        <caption>
          {members.length} members. Version, database size and raft index come from the member that answered ({nameOf(status.header.member_id)}).
        </caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">ID</th>
            <th scope="col">Role</th>
            <th scope="col">Peer URLs</th>
            <th scope="col">Client URLs</th>
            <th scope="col">Version</th>
            <th scope="col">DB size (in use)</th>
            <th scope="col">Raft index (applied)</th>
          </tr>
        </thead>
        <tbody>
          {members.map((m) => {
            const self = m.ID === status.header.member_id;
            const role = m.isLearner ? 'learner' : m.ID === status.leader ? 'leader' : 'follower';
            return (
              <tr key={m.ID} class={role}>
                <th scope="row">{m.name || '(not started)'}</th>
                <td>{m.ID}</td>
                <td>
                  <span class={`role ${role}`}>{role}</span>
                </td>
                <td>{(m.peerURLs ?? []).join(', ')}</td>
                <td>{(m.clientURLs ?? []).join(', ')}</td>
                <td>{self ? status.version : '—'}</td>
                <td>{self ? `${formatBytes(Number(status.dbSize ?? 0))} (${formatBytes(Number(status.dbSizeInUse ?? 0))})` : '—'}</td>
                <td>{self ? `${status.raftIndex ?? 0} (${status.raftAppliedIndex ?? 0})` : '—'}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {status.errors?.length ? <p class="refused">Member errors: {status.errors.join('; ')}</p> : null}
    </section>
  );
}
