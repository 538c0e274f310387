// One key: its value in the view that fits it, its revisions and lease, editing with compare-and-swap
// and the conflict view, deletion, and its history.

import { useEffect, useState } from 'preact/hooks';
import { ApiError, bytesOf, deleteKey, getKey, getLease, putKey, valueBytes, type Bytes, type KeyValue, type WatchEvent } from './api';
import { formatBytes, render, textOf, viewsFor, type ViewMode } from './format';
import { Dialog, DiffView, messageOf, secondsLeft, useNow, type Report } from './widgets';

const VIEW_LABELS: Record<ViewMode, string> = { text: 'Text', json: 'JSON', yaml: 'YAML', hex: 'Hex' };
/** Versions read back through history at most: each is one read at an older revision. */
const HISTORY_DEPTH = 50;

/** The lease of a key: its TTL counting down, read again when it reaches 0. */
export function LeaseTtl(props: { id: string }) {
  const now = useNow();
  const [lease, setLease] = useState<{ ttl: number; readAt: number } | null | undefined>();
  const [failed, setFailed] = useState('');
  const left = lease ? secondsLeft(lease.ttl, lease.readAt, now) : undefined;
  useEffect(() => {
    if (lease === null || left !== undefined && left > 0) return;
    let live = true;
    getLease(props.id).then(
      // A TTL of 0 or less is a lease etcd is about to drop: expired, as far as anyone can use it.
      (l) => live && setLease(l && l.ttl > 0 ? { ttl: l.ttl, readAt: Date.now() } : null),
      (e: unknown) => live && setFailed(messageOf(e)),
    );
    return () => {
      live = false;
    };
  }, [props.id, left === 0, lease === null]);
  if (failed) return <span>lease {props.id} ({failed})</span>;
  if (lease === null) return <span class="expired">lease {props.id} expired</span>;
  return (
    <span>
      lease {props.id}, <span class="ttl">{left === undefined ? '…' : `${left} s left`}</span>
    </span>
  );
}

/** The text an edit starts from: as the view shows it (JSON formatted, when shown formatted), so
 *  what is edited is what was read; the other views edit the text as stored. */
function editText(value: Bytes, mode: ViewMode): string | undefined {
  return mode === 'json' ? render(value, 'json') : textOf(value);
}

interface Conflict {
  theirs: KeyValue | null;
  mine: string;
}

export function KeyDetail(props: { name: string; bytes: Bytes; link: string; liveEvent?: WatchEvent; report: Report; onDeleted(): void }) {
  const { name, bytes, report } = props;
  const [kv, setKv] = useState<KeyValue | null | undefined>();
  const [failed, setFailed] = useState('');
  const [mode, setMode] = useState<ViewMode>('text');
  const [draft, setDraft] = useState<string | undefined>();
  const [conflict, setConflict] = useState<Conflict | undefined>();
  const [changedWhileEditing, setChangedWhileEditing] = useState<WatchEvent | undefined>();
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [historyOpen, setHistoryOpen] = useState(false);
  const [busy, setBusy] = useState(false);

  const load = async (): Promise<KeyValue | null> => {
    const current = await getKey(bytes);
    setKv(current);
    return current;
  };

  useEffect(() => {
    setKv(undefined);
    setDraft(undefined);
    setConflict(undefined);
    setChangedWhileEditing(undefined);
    setHistoryOpen(false);
    setFailed('');
    getKey(bytes).then(
      (current) => {
        setKv(current);
        if (current) setMode(viewsFor(valueBytes(current))[0]);
      },
      // Said where the value would be: "Loading…" must not stay when the read failed.
      (e: unknown) => setFailed(messageOf(e)),
    );
  }, [name]);

  // A change from the watch: shown at once, unless it would pull the value from under an edit.
  useEffect(() => {
    const e = props.liveEvent;
    if (!e) return;
    if (draft !== undefined) setChangedWhileEditing(e);
    else load().catch(report);
  }, [props.liveEvent]);

  if (failed && kv === undefined) return <p class="refused" role="alert">Could not read “{name}”: {failed}</p>;
  if (kv === undefined) return <p>Loading {name}…</p>;
  if (kv === null && !conflict) return <p class="notice">The key “{name}” does not exist (any more).</p>;

  const value = kv ? valueBytes(kv) : new Uint8Array();
  const text = textOf(value);
  const views = viewsFor(value);

  const save = async (mine: string, expected: KeyValue | null): Promise<void> => {
    setBusy(true);
    // A "Saved … at revision N" from before would contradict the answer to this save.
    report(undefined);
    try {
      await putKey(bytes, bytesOf(mine), expected ? { ifModRevision: expected.mod_revision } : { create: true });
      setDraft(undefined);
      setConflict(undefined);
      setChangedWhileEditing(undefined);
      const saved = await load();
      report(`Saved “${name}” at revision ${saved?.mod_revision ?? '?'}.`, 'info');
    } catch (e) {
      if (e instanceof ApiError && e.status === 412) {
        // Someone wrote (or deleted) the key since it was read: show both, lose neither.
        const theirs = await getKey(bytes);
        setKv(theirs);
        setConflict({ theirs, mine });
        setDraft(undefined);
      } else report(e);
    } finally {
      setBusy(false);
    }
  };

  const remove = async (): Promise<void> => {
    setConfirmDelete(false);
    try {
      await deleteKey(bytes, kv?.mod_revision);
      report(`Deleted “${name}”.`, 'info');
      props.onDeleted();
    } catch (e) {
      report(e instanceof ApiError && e.status === 412 ? new Error(`“${name}” changed since it was read: not deleted. Look at the new value first.`) : e);
      load().catch(report);
    }
  };

  return (
    <section class="detail" aria-labelledby="detail-title">
      <h2 id="detail-title" class="key-name">{name}</h2>
      <p class="link">
        <a href={props.link}>Link to this key</a>
      </p>
      {kv && (
        <dl class="meta">
          <dt>Size</dt>
          <dd>{formatBytes(value.length)}</dd>
          <dt>Created at revision</dt>
          <dd>{kv.create_revision}</dd>
          <dt>Modified at revision</dt>
          <dd>{kv.mod_revision}</dd>
          <dt>Version</dt>
          <dd>{kv.version}</dd>
          <dt>Lease</dt>
          <dd>{kv.lease ? <LeaseTtl id={kv.lease} key={kv.lease} /> : 'none'}</dd>
        </dl>
      )}

      {conflict ? (
        <ConflictView conflict={conflict} busy={busy} name={name} onKeepTheirs={() => { setConflict(undefined); setKv(conflict.theirs); }} onKeepMine={() => void save(conflict.mine, conflict.theirs)} onEdit={() => { setKv(conflict.theirs); setDraft(conflict.mine); setConflict(undefined); }} />
      ) : draft !== undefined ? (
        <form
          class="editor"
          onSubmit={(e) => {
            e.preventDefault();
            void save(draft, kv);
          }}
        >
          {changedWhileEditing && (
            <p class="warning" role="alert">
              Someone else {changedWhileEditing.type === 'delete' ? 'deleted' : 'changed'} this key at revision {changedWhileEditing.kv.mod_revision} while you were editing. Saving will show both values.
            </p>
          )}
          <label for="value-editor">New value of “{name}”</label>
          <textarea id="value-editor" value={draft} onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)} rows={16} spellcheck={false} />
          <div class="actions">
            <button type="submit" disabled={busy}>
              Save
            </button>
            <button type="button" onClick={() => { setDraft(undefined); setChangedWhileEditing(undefined); }}>
              Cancel
            </button>
            <span class="hint">Saved only if the key is still at revision {kv?.mod_revision} (If-Match).</span>
          </div>
        </form>
      ) : (
        <>
          <div class="toolbar">
            <fieldset class="views">
              <legend>Show as</legend>
              {views.map((v) => (
                <label key={v}>
                  <input type="radio" name="view" value={v} checked={mode === v} onChange={() => setMode(v)} />
                  {VIEW_LABELS[v]}
                </label>
              ))}
            </fieldset>
            <div class="actions">
              <button type="button" disabled={text === undefined} title={text === undefined ? 'Binary values cannot be edited as text' : undefined} onClick={() => setDraft(editText(value, views.includes(mode) ? mode : views[0]))}>
                Edit
              </button>
              <button type="button" aria-expanded={historyOpen} onClick={() => setHistoryOpen(!historyOpen)}>
                History
              </button>
              <button type="button" class="danger" onClick={() => setConfirmDelete(true)}>
                Delete…
              </button>
            </div>
          </div>
          <pre class={`value ${mode}`} tabIndex={0} aria-label={`Value of ${name} as ${VIEW_LABELS[views.includes(mode) ? mode : views[0]]}`}>
            {render(value, views.includes(mode) ? mode : views[0])}
          </pre>
        </>
      )}

      {historyOpen && kv && <History name={name} bytes={bytes} current={kv} report={report} onRestored={() => load().catch(report)} />}

      <Dialog title={`Delete “${name}”?`} open={confirmDelete} onClose={() => setConfirmDelete(false)}>
        <p>The key is deleted only if it is still at revision {kv?.mod_revision}.</p>
        <div class="actions">
          <button type="button" class="danger" onClick={() => void remove()}>
            Delete the key
          </button>
          <button type="button" onClick={() => setConfirmDelete(false)}>
            Keep it
          </button>
        </div>
      </Dialog>
    </section>
  );
}

function ConflictView(props: { conflict: Conflict; name: string; busy: boolean; onKeepTheirs(): void; onKeepMine(): void; onEdit(): void }) {
  const { theirs, mine } = props.conflict;
  const theirText = theirs ? (textOf(valueBytes(theirs)) ?? render(valueBytes(theirs), 'hex')) : '';
  const theirLabel = theirs ? `theirs (revision ${theirs.mod_revision})` : 'theirs (deleted)';

  return (
    <section class="conflict" aria-labelledby="conflict-title">
      <div role="alert">
        <h3 id="conflict-title">
          Conflict: “{props.name}” was {theirs ? 'changed' : 'deleted'} by someone else before your save
        </h3>
      </div>
      <p>Nothing was written. Both values are below: keep either, or edit yours on top of theirs.</p>
      <div class="side-by-side">
        <figure>
          <figcaption>Their value, {theirs ? `revision ${theirs.mod_revision}` : 'deleted'}</figcaption>
          <pre class="theirs" tabIndex={0} aria-label="Their value">{theirText}</pre>
        </figure>
        <figure>
          <figcaption>Your value</figcaption>
          <pre class="mine" tabIndex={0} aria-label="Your value">{mine}</pre>
        </figure>
      </div>
      <DiffView older={theirText} newer={mine} olderLabel={theirLabel} newerLabel="yours" />
      <div class="actions">
        <button type="button" onClick={props.onKeepTheirs} disabled={props.busy}>
          Keep theirs
        </button>
        <button type="button" onClick={props.onKeepMine} disabled={props.busy}>
          Keep mine
        </button>
        <button type="button" onClick={props.onEdit} disabled={props.busy}>
          Edit mine further
        </button>
      </div>
    </section>
  );
}

/** The key's earlier values, read at older revisions back to its creation or the compaction point. */
function History(props: { name: string; bytes: Bytes; current: KeyValue; report: Report; onRestored(): void }) {
  const { bytes, current, report } = props;
  const [versions, setVersions] = useState<KeyValue[]>([current]);
  const [end, setEnd] = useState('');
  const [a, setA] = useState(1);
  const [b, setB] = useState(0);

  useEffect(() => {
    let live = true;
    (async () => {
      const list = [current];
      let rev = current.mod_revision - 1;
      while (live && list.length < HISTORY_DEPTH && rev >= current.create_revision) {
        let older: KeyValue | null;
        try {
          older = await getKey(bytes, rev);
        } catch (e) {
          if (e instanceof ApiError && e.status === 410) setEnd('Older versions were compacted away.');
          else report(e);
          break;
        }
        if (!older) break;
        list.push(older);
        if (live) setVersions([...list]);
        rev = older.mod_revision - 1;
      }
      if (live && list.length >= HISTORY_DEPTH) setEnd(`Only the last ${HISTORY_DEPTH} versions are shown.`);
    })();
    return () => {
      live = false;
    };
  }, [current.mod_revision]);

  const restore = async (old: KeyValue): Promise<void> => {
    try {
      await putKey(bytes, valueBytes(old), { ifModRevision: current.mod_revision });
      report(`Restored version ${old.version} of “${props.name}”.`, 'info');
      props.onRestored();
    } catch (e) {
      report(e instanceof ApiError && e.status === 412 ? new Error('The key changed meanwhile: nothing restored. Look at the new value, then try again.') : e);
    }
  };

  const show = (kv: KeyValue | undefined): string => (kv ? (textOf(valueBytes(kv)) ?? render(valueBytes(kv), 'hex')) : '');
  return (
    <section class="history" aria-labelledby="history-title">
      <h3 id="history-title">History</h3>
      <table>
        <caption class="visually-hidden">Versions of {props.name}, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Revision</th>
            <th scope="col">Size</th>
            <th scope="col">Value</th>
            <th scope="col">Diff from</th>
            <th scope="col">Diff to</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v, i) => (
            <tr key={v.mod_revision}>
              <td>{v.version}</td>
              <td>{v.mod_revision}</td>
              <td>{formatBytes(valueBytes(v).length)}</td>
              <td class="preview">{show(v).slice(0, 80)}</td>
              <td>
                <input type="radio" name="diff-a" checked={a === i} onChange={() => setA(i)} aria-label={`Diff from version ${v.version}`} />
              </td>
              <td>
                <input type="radio" name="diff-b" checked={b === i} onChange={() => setB(i)} aria-label={`Diff to version ${v.version}`} />
              </td>
              <td>{i > 0 && <button type="button" onClick={() => void restore(v)}>Restore version {v.version}</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {end && <p class="hint">{end}</p>}
      {versions.length > 1 && versions[a] && versions[b] && (
        <DiffView older={show(versions[a])} newer={show(versions[b])} olderLabel={`version ${versions[a].version}`} newerLabel={`version ${versions[b].version}`} />
      )}
    </section>
  );
}
