// Leases: each with its TTL counting down and the keys it holds; keep one alive once, or revoke it.

import { useEffect, useState } from 'preact/hooks';
import { getLease, keepLeaseAlive, listLeases, revokeLease, type Lease } from './api';
import { secondsLeft, useNow, type Report } from './widgets';

const REFRESH_MS = 10_000;
/** Leases read in detail per refresh (one request each); the rest are counted, not shown. */
const SHOWN = 100;

interface Shown extends Lease {
  readAt: number;
}

export function LeasesView(props: { report: Report }) {
  const { report } = props;
  const now = useNow();
  const [leases, setLeases] = useState<Shown[] | undefined>();
  const [refused, setRefused] = useState('');
  const [total, setTotal] = useState(0);

  const refresh = async (): Promise<void> => {
    try {
      const ids = await listLeases();
      setTotal(ids.length);
      const read = await Promise.all(ids.slice(0, SHOWN).map(async (id) => ({ lease: await getLease(id), readAt: Date.now() })));
      setLeases(read.flatMap(({ lease, readAt }) => (lease && lease.ttl > 0 ? [{ ...lease, readAt }] : [])));
      setRefused('');
    } catch (e) {
      setRefused(e instanceof Error ? e.message : String(e));
      report(e);
    }
  };

  useEffect(() => {
    void refresh();
    const t = setInterval(() => void refresh(), REFRESH_MS);
    return () => clearInterval(t);
  }, []);

  // A lease whose countdown reached 0 is read again: renewed elsewhere, or gone.
  const due = leases?.filter((l) => secondsLeft(l.ttl, l.readAt, now) === 0).map((l) => l.lease).join(',');
  useEffect(() => {
    if (due) void refresh();
  }, [due]);

  const keepAlive = async (id: string): Promise<void> => {
    try {
      const renewed = await keepLeaseAlive(id);
      setLeases((ls) => ls?.map((l) => (l.lease === id ? { ...l, ttl: renewed.ttl, readAt: Date.now() } : l)));
      report(`Lease ${id} renewed: ${renewed.ttl} s.`, 'info');
    } catch (e) {
      report(e);
    }
  };
  const revoke = async (id: string): Promise<void> => {
    try {
      await revokeLease(id);
      report(`Lease ${id} revoked; its keys are deleted.`, 'info');
      await refresh();
    } catch (e) {
      report(e);
    }
  };

  return (
    <section class="leases" aria-labelledby="leases-title">
      <h2 id="leases-title">Leases</h2>
      {refused && <p class="refused" role="alert">The gateway refused: {refused}</p>}
      {leases === undefined ? (
        !refused && <p>Loading…</p>
      ) : leases.length === 0 ? (
        <p class="empty">No leases.</p>
      ) : (
        <table>
          <caption class="visually-hidden">Leases with their time to live</caption>
          <thead>
            <tr>
              <th scope="col">ID</th>
              <th scope="col">TTL left</th>
              <th scope="col">Granted</th>
              <th scope="col">Keys</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {leases.map((l) => (
              <tr key={l.lease} data-lease={l.lease}>
                <td>
                  {l.lease} <span class="hint">(0x{BigInt(l.lease).toString(16)})</span>
                </td>
                <td class="ttl">{secondsLeft(l.ttl, l.readAt, now)} s</td>
                <td>{l.granted_ttl ?? '?'} s</td>
                <td>
                  {l.keys?.length ? (
                    <ul class="plain">
                      {l.keys.map((k) => (
                        <li key={k} class="key-name">
                          {k}
                        </li>
                      ))}
                    </ul>
                  ) : (
                    'none'
                  )}
                </td>
                <td class="actions">
                  <button type="button" onClick={() => void keepAlive(l.lease)}>
                    Keep alive <span class="visually-hidden">lease {l.lease}</span>
                  </button>
                  <button type="button" class="danger" onClick={() => void revoke(l.lease)}>
                    Revoke <span class="visually-hidden">lease {l.lease}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {total > SHOWN && <p class="hint">The first {SHOWN} of {total.toLocaleString()} leases are shown.</p>}
      <button type="button" onClick={() => void refresh()}>
        Refresh
      </button>
    </section>
  );
}
