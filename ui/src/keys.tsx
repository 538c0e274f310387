// The keys view: a prefix opened as a tree (read page by page), the key on screen, creating keys,
// deleting a prefix, and the live watch on the open prefix with its event log.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, bytesOf, countKeys, deletePrefix, keyBytes, keyName, listKeys, putKey, watchPrefix, type Bytes, type WatchEvent } from './api';
import { KeyDetail } from './detail';
import { KeyTree } from './tree';
import { Dialog, messageOf, type Report } from './widgets';

/** Keys per listing page, and how many are read before the person asks for more. */
const PAGE_SIZE = 1000;
const AUTO_LOAD = 2000;
/** Events kept in the log panel. */
const LOG_SIZE = 200;
const FLASH_MS = 2000;

interface Listing {
  names: string[];
  bytes: Map<string, Bytes>;
  more: boolean;
  token?: string;
  revision: number;
}

interface LogEntry {
  id: number;
  time: string;
  type: string;
  key: string;
  revision: number;
}

function insertSorted(names: string[], name: string): string[] {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (names[mid] < name) lo = mid + 1;
    else hi = mid;
  }
  if (names[lo] === name) return names;
  return [...names.slice(0, lo), name, ...names.slice(lo)];
}

/** The page's address names what is open: `#prefix=app/&key=app/config`, so a key can be linked to
 *  and the back button goes back. A key alone opens its folder (up to its last '/'). */
function fromHash(): { prefix: string; key?: string } {
  const q = new URLSearchParams(location.hash.slice(1));
  const key = q.get('key') ?? undefined;
  const prefix = q.get('prefix') ?? (key === undefined ? '' : key.slice(0, key.lastIndexOf('/') + 1));
  return { prefix, key };
}

export function hashOf(prefix: string, key?: string): string {
  return `#${new URLSearchParams(key === undefined ? { prefix } : { prefix, key })}`;
}

export function KeysView(props: { report: Report }) {
  const { report } = props;
  const [initial] = useState(fromHash);
  const [prefixInput, setPrefixInput] = useState(initial.prefix);
  const [prefix, setPrefix] = useState(initial.prefix);
  const [separator, setSeparator] = useState('/');
  const [filter, setFilter] = useState('');
  const [listing, setListing] = useState<Listing | undefined>();
  const [refused, setRefused] = useState('');
  const [loading, setLoading] = useState(false);
  const [selected, setSelected] = useState<string | undefined>(initial.key);
  const [liveEvent, setLiveEvent] = useState<WatchEvent | undefined>();
  const [flashing, setFlashing] = useState<ReadonlySet<string>>(new Set());
  const [log, setLog] = useState<LogEntry[]>([]);
  const [watchState, setWatchState] = useState('');
  const [generation, setGeneration] = useState(0);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<number | undefined>();
  const selectedRef = useRef(selected);
  selectedRef.current = selected;
  const prefixRef = useRef(prefix);
  prefixRef.current = prefix;

  // The address follows what is open, and what is open follows the address (a link, back, forward).
  useEffect(() => {
    const want = hashOf(prefix, selected);
    if (location.hash === want) return;
    // The same place written another way (`#key=a/b`): rewritten in place, not one more step back.
    const now = fromHash();
    if (now.prefix === prefix && now.key === selected) history.replaceState(null, '', want);
    else location.hash = want;
  }, [prefix, selected]);
  useEffect(() => {
    const follow = (): void => {
      const { prefix: p, key } = fromHash();
      if (p !== prefixRef.current) {
        setPrefixInput(p);
        setPrefix(p);
      }
      if (key !== selectedRef.current) setSelected(key);
    };
    addEventListener('hashchange', follow);
    return () => removeEventListener('hashchange', follow);
  }, []);
  const logIds = useRef(0);

  const loadPage = async (base: Listing | undefined): Promise<Listing> => {
    const page = await listKeys(bytesOf(prefix), PAGE_SIZE, base?.token);
    const names = base ? [...base.names] : [];
    const bytes = new Map(base?.bytes);
    for (const kv of page.kvs) {
      const name = keyName(kv);
      names.push(name);
      bytes.set(name, keyBytes(kv));
    }
    return { names, bytes, more: page.more, token: page.continue, revision: base?.revision ?? page.revision };
  };

  // Opening a prefix: its first pages, then the watch from the revision they were read at, so no change
  // between the listing and the watch is missed.
  useEffect(() => {
    let live = true;
    let stop: (() => void) | undefined;
    setListing(undefined);
    setRefused('');
    setLog([]);
    setLoading(true);
    (async () => {
      let l = await loadPage(undefined);
      while (live && l.more && l.names.length < AUTO_LOAD) l = await loadPage(l);
      if (!live) return;
      setListing(l);
      stop = watchPrefix(bytesOf(prefix), l.revision + 1, {
        event: (e) => onEvent(e),
        state: setWatchState,
        compacted: () => setGeneration((g) => g + 1),
      });
    })()
      .catch((e: unknown) => {
        if (!live) return;
        // A refusal is shown where the tree would be; anything else on the message line.
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) setRefused(messageOf(e));
        else report(e);
      })
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
      stop?.();
      setWatchState('');
    };
  }, [prefix, generation]);

  const onEvent = (e: WatchEvent): void => {
    const name = keyName(e.kv);
    // The listing, its count and its revision stay those of the store as the watch has seen it.
    setListing((l) => {
      if (!l) return l;
      const revision = Math.max(l.revision, e.kv.mod_revision);
      if (e.type === 'delete') return { ...l, revision, names: l.names.filter((n) => n !== name) };
      const bytes = new Map(l.bytes).set(name, keyBytes(e.kv));
      return { ...l, revision, names: insertSorted(l.names, name), bytes };
    });
    setLog((entries) => [{ id: ++logIds.current, time: new Date().toLocaleTimeString(), type: e.type, key: name, revision: e.kv.mod_revision }, ...entries].slice(0, LOG_SIZE));
    setFlashing((f) => new Set(f).add(name));
    setTimeout(() => setFlashing((f) => {
      const next = new Set(f);
      next.delete(name);
      return next;
    }), FLASH_MS);
    if (name === selectedRef.current) setLiveEvent(e);
  };

  const more = async (): Promise<void> => {
    if (!listing) return;
    setLoading(true);
    try {
      setListing(await loadPage(listing));
    } catch (e) {
      report(e);
    } finally {
      setLoading(false);
    }
  };

  const askDeletePrefix = async (): Promise<void> => {
    try {
      setDeleting(await countKeys(bytesOf(prefix)));
    } catch (e) {
      report(e);
    }
  };
  const doDeletePrefix = async (): Promise<void> => {
    setDeleting(undefined);
    try {
      const n = await deletePrefix(bytesOf(prefix));
      report(`Deleted ${n.toLocaleString()} keys under “${prefix}”.`, 'info');
      setSelected(undefined);
    } catch (e) {
      report(e);
    }
  };

  const selectedBytes = useMemo(() => (selected === undefined ? undefined : (listing?.bytes.get(selected) ?? bytesOf(selected))), [selected, listing]);

  return (
    <div class="keys">
      <section class="browser" aria-label="Key browser">
        <form
          class="prefix"
          onSubmit={(e) => {
            e.preventDefault();
            setSelected(undefined);
            if (prefixInput === prefix) setGeneration((g) => g + 1);
            else setPrefix(prefixInput);
          }}
        >
          <label for="prefix-input">Prefix</label>
          <div class="inline">
            <input id="prefix-input" value={prefixInput} onInput={(e) => setPrefixInput((e.target as HTMLInputElement).value)} placeholder="(every key)" spellcheck={false} />
            <button type="submit">Open</button>
          </div>
        </form>
        <div class="inline options">
          <label for="separator-input">Separator</label>
          <input id="separator-input" class="short" value={separator} maxLength={4} onInput={(e) => setSeparator((e.target as HTMLInputElement).value)} />
          <label for="filter-input">Filter</label>
          <input id="filter-input" type="search" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} placeholder="part of a key" />
        </div>
        <p class="status" aria-live="polite">
          {loading ? 'Loading…' : listing ? `${listing.names.length.toLocaleString()} ${listing.names.length === 1 ? 'key' : 'keys'} loaded at revision ${listing.revision}${listing.more ? ', more to load' : ''}` : ''}
          {watchState && <span class={`watch ${watchState === 'live' ? 'on' : 'off'}`}> · watch: {watchState}</span>}
        </p>
        {refused && (
          <p class="refused" role="alert">
            The gateway refused this listing: {refused}
          </p>
        )}
        {listing && <KeyTree names={listing.names} prefix={prefix} separator={separator} filter={filter} selected={selected} flashing={flashing} more={listing.more} onOpenKey={setSelected} />}
        <div class="actions">
          {listing?.more && (
            <button type="button" onClick={() => void more()} disabled={loading}>
              Load more keys
            </button>
          )}
          <button type="button" onClick={() => setCreating(true)}>
            New key…
          </button>
          <button type="button" class="danger" onClick={() => void askDeletePrefix()} disabled={!listing}>
            Delete prefix…
          </button>
        </div>
      </section>

      <section class="content" aria-label="Selected key">
        {selected !== undefined && selectedBytes ? (
          <KeyDetail key={selected} name={selected} bytes={selectedBytes} link={hashOf(prefix, selected)} liveEvent={liveEvent} report={report} onDeleted={() => setSelected(undefined)} />
        ) : (
          <p class="empty">Choose a key in the tree (arrow keys move, Enter opens).</p>
        )}
      </section>

      <section class="events" aria-labelledby="events-title">
        <h2 id="events-title">Live events {prefix ? `under “${prefix}”` : "on every key"}</h2>
        <div role="log" aria-live="off">
          <ol>
            {log.map((e) => (
              <li key={e.id}>
                <time>{e.time}</time> <span class={`event ${e.type}`}>{e.type}</span> <span class="key-name">{e.key}</span> <span class="rev">rev {e.revision}</span>
              </li>
            ))}
          </ol>
        </div>
      </section>

      <CreateKey open={creating} prefix={prefix} onClose={() => setCreating(false)} report={report} onCreated={setSelected} />
      <Dialog title={prefix ? `Delete every key under “${prefix}”?` : "Delete every key in the cluster?"} open={deleting !== undefined} onClose={() => setDeleting(undefined)}>
        <p>
          This deletes <strong>{deleting?.toLocaleString()}</strong> {deleting === 1 ? 'key' : 'keys'} under “{prefix}”. It cannot be undone.
        </p>
        <div class="actions">
          <button type="button" class="danger" onClick={() => void doDeletePrefix()}>
            Delete {deleting?.toLocaleString()} keys
          </button>
          <button type="button" onClick={() => setDeleting(undefined)}>
            Cancel
          </button>
        </div>
      </Dialog>
    </div>
  );
}

function CreateKey(props: { open: boolean; prefix: string; onClose(): void; report: Report; onCreated(name: string): void }) {
  const [name, setName] = useState(props.prefix);
  const [value, setValue] = useState('');
  const [ttl, setTtl] = useState('');
  const [error, setError] = useState('');
  useEffect(() => {
    if (props.open) {
      setName(props.prefix);
      setValue('');
      setTtl('');
      setError('');
    }
  }, [props.open]);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (!name) return setError('A key needs a name.');
    if (ttl && !/^[1-9]\d*$/.test(ttl)) return setError('The TTL is a whole number of seconds.');
    try {
      await putKey(bytesOf(name), bytesOf(value), { create: true, ttl: ttl ? Number(ttl) : undefined });
      props.report(`Created “${name}”${ttl ? ` with a ${ttl} s lease` : ''}.`, 'info');
      props.onClose();
      props.onCreated(name);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 412 ? `“${name}” already exists.` : messageOf(err));
    }
  };
  return (
    <Dialog title="New key" open={props.open} onClose={props.onClose}>
      <form class="create" onSubmit={(e) => void submit(e)}>
        <label for="new-key">Key</label>
        <input id="new-key" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} required spellcheck={false} />
        <label for="new-value">Value</label>
        <textarea id="new-value" value={value} rows={6} onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)} spellcheck={false} />
        <label for="new-ttl">TTL in seconds (optional: the key goes with its lease)</label>
        <input id="new-ttl" inputMode="numeric" value={ttl} onInput={(e) => setTtl((e.target as HTMLInputElement).value)} />
        {error && <p class="error" role="alert">{error}</p>}
        <div class="actions">
          <button type="submit">Create</button>
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Dialog>
  );
}
