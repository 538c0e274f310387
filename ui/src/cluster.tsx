// The cluster: members with their URLs and roles, the leader, each member's own status (version,
// database size, raft term and index, from GET /v1/cluster, which asks every member), and alarms; read
// again every few seconds while shown.

import { useEffect, useState } from 'preact/hooks';
import { getCluster, type Cluster } from './api';
import { formatBytes } from './format';
import { messageOf, type Report } from './widgets';

const REFRESH_MS = 5000;

interface Snapshot {
  cluster: Cluster;
  readAt: Date;
}

export function ClusterView(props: { report: Report }) {
  const [snap, setSnap] = useState<Snapshot | undefined>();
  const [failed, setFailed] = useState('');

  useEffect(() => {
    let live = true;
    const read = async (): Promise<void> => {
      try {
        const cluster = await getCluster();
        if (!live) return;
        setSnap({ cluster, readAt: new Date() });
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
  const { members, alarms, leader } = snap.cluster;
  const nameOf = (id: string | null | undefined): string => members.find((m) => m.id === id)?.name || id || '?';
  const term = Math.max(0, ...members.map((m) => m.status?.raft_term ?? 0));
  const errors = members.flatMap((m) => (m.status?.errors ?? []).map((e) => `${nameOf(m.id)}: ${e}`));
  return (
    <section class="cluster" aria-labelledby="cluster-title">
      <h2 id="cluster-title">Cluster</h2>
      {failed && <p class="refused" role="alert">Last refresh failed: {failed}</p>}
      <dl class="meta">
        <dt>Cluster ID</dt>
        <dd>{snap.cluster.cluster_id}</dd>
        <dt>Leader</dt>
        <dd class="leader-name">{leader ? nameOf(leader) : 'none'}</dd>
        <dt>Raft term</dt>
        <dd>{term}</dd>
        <dt>Revision</dt>
        <dd>{snap.cluster.revision}</dd>
        <dt>Alarms</dt>
        {alarms ? (
          <dd class={alarms.length ? 'alarm' : ''}>{alarms.length ? alarms.map((a) => `${a.alarm} on ${nameOf(a.member_id)}`).join(', ') : 'none'}</dd>
        ) : (
          <dd class="alarm">unknown: {snap.cluster.alarms_error}</dd>
        )}
        <dt>Read at</dt>
        <dd>{snap.readAt.toLocaleTimeString()}</dd>
      </dl>
      <table class="members">
        <caption>{members.length} members, each with the status it gives of itself.</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">ID</th>
            <th scope="col">Role</th>
            <th scope="col">Peer URLs</th>
            <th scope="col">Client URLs</th>
            <th scope="col">Version</th>
            <th scope="col">DB size (in use)</th>
            <th scope="col">Raft term</th>
            <th scope="col">Raft index (applied)</th>
          </tr>
        </thead>
        <tbody>
          {members.map((m) => {
            const role = m.learner ? 'learner' : m.leader ? 'leader' : 'follower';
            const s = m.status;
            return (
              <tr key={m.id} class={role}>
                <th scope="row">{m.name || '(not started)'}</th>
                <td>{m.id}</td>
                <td>
                  <span class={`role ${role}`}>{role}</span>
                </td>
                <td>{m.peer_urls.join(', ')}</td>
                <td>{m.client_urls.join(', ')}</td>
                {s ? (
                  <>
                    <td>{s.version}</td>
                    <td>{`${formatBytes(s.db_size)} (${formatBytes(s.db_size_in_use)})`}</td>
                    <td>{s.raft_term}</td>
                    <td>{`${s.raft_index} (${s.raft_applied_index})`}</td>
                  </>
                ) : (
                  <td colSpan={4} class="refused">
                    no status: {m.status_error}
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
      {errors.length ? <p class="refused">Member errors: {errors.join('; ')}</p> : null}
    </section>
  );
}
