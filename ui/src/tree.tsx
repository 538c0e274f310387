// The key tree: the loaded keys under the open prefix, split on the separator into folders. It follows
// the WAI-ARIA tree pattern: one tab stop, arrows move and open/close, Home/End, Enter opens a key.
// Only the rows of open folders are rendered, so a folder with thousands of keys costs nothing closed.

import { useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';

interface Node {
  /** The label: the part of the key between two separators (folders end with the separator). */
  label: string;
  /** A key: the whole key; a folder: the key prefix it stands for, separator included. */
  path: string;
  isKey: boolean;
  children: Node[];
  /** Keys under a folder. */
  keys: number;
}

interface Row {
  node: Node;
  level: number;
  setSize: number;
  posInSet: number;
}

function build(names: string[], prefix: string, separator: string): Node[] {
  const root: Node = { label: '', path: prefix, isKey: false, children: [], keys: 0 };
  const folders = new Map<string, Node>();
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const parts = separator ? name.slice(prefix.length).split(separator) : [name.slice(prefix.length)];
    let parent = root;
    parent.keys++;
    let path = prefix;
    for (let i = 0; i < parts.length - 1; i++) {
      path += parts[i] + separator;
      let folder = folders.get(path);
      if (!folder) {
        folder = { label: parts[i] + separator, path, isKey: false, children: [], keys: 0 };
        folders.set(path, folder);
        parent.children.push(folder);
      }
      folder.keys++;
      parent = folder;
    }
    parent.children.push({ label: parts[parts.length - 1], path: name, isKey: true, children: [], keys: 1 });
  }
  return root.children;
}

/** A key and a folder can share a path ("a/" the key, "a/" the folder of "a/b"): rows are told apart. */
const rowId = (n: Node): string => `${n.isKey ? 'k' : 'f'}${n.path}`;

function flatten(nodes: Node[], open: (n: Node) => boolean, keep: (n: Node) => boolean, level: number, out: Row[]): void {
  const shown = nodes.filter(keep);
  shown.forEach((node, i) => {
    out.push({ node, level, setSize: shown.length, posInSet: i + 1 });
    if (!node.isKey && open(node)) flatten(node.children, open, keep, level + 1, out);
  });
}

export interface TreeProps {
  names: string[];
  prefix: string;
  separator: string;
  filter: string;
  selected?: string;
  /** Keys changed a moment ago: they and their folders flash. */
  flashing: ReadonlySet<string>;
  /** More keys follow the loaded ones: the folders of the last loaded key may hold more than shown. */
  more: boolean;
  onOpenKey(name: string): void;
}

export function KeyTree(props: TreeProps) {
  const { names, prefix, separator, filter, selected, flashing } = props;
  const nodes = useMemo(() => build(names, prefix, separator), [names, prefix, separator]);
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(new Set());
  const [focused, setFocused] = useState<string | undefined>();
  const list = useRef<HTMLUListElement>(null);
  const moved = useRef(false);

  const needle = filter.toLowerCase();
  const matches = useMemo(() => {
    if (!needle) return undefined;
    const hit = new Set<Node>();
    const visit = (n: Node): boolean => {
      const any = n.isKey ? n.path.toLowerCase().includes(needle) : n.children.map(visit).some(Boolean);
      if (any) hit.add(n);
      return any;
    };
    nodes.forEach(visit);
    return hit;
  }, [nodes, needle]);

  const rows = useMemo(() => {
    const out: Row[] = [];
    flatten(nodes, (n) => matches !== undefined || expanded.has(n.path), (n) => !matches || matches.has(n), 1, out);
    return out;
  }, [nodes, expanded, matches]);

  const flashingFolders = useMemo(() => {
    const set = new Set<string>();
    for (const key of flashing) {
      if (!separator) continue;
      for (let i = key.indexOf(separator, prefix.length); i >= 0; i = key.indexOf(separator, i + separator.length)) set.add(key.slice(0, i + separator.length));
    }
    return set;
  }, [flashing, prefix, separator]);

  const focusIndex = Math.max(0, rows.findIndex((r) => rowId(r.node) === focused));
  const current = rows[focusIndex];

  // Focus follows the arrow keys as soon as the rows are rendered; clicks and re-renders do not steal it.
  useLayoutEffect(() => {
    if (!moved.current) return;
    moved.current = false;
    (list.current?.children[focusIndex] as HTMLElement | undefined)?.focus();
  });

  const toggle = (n: Node, open?: boolean): void => {
    const next = new Set(expanded);
    if (open ?? !next.has(n.path)) next.add(n.path);
    else next.delete(n.path);
    setExpanded(next);
  };
  const moveTo = (i: number): void => {
    const row = rows[Math.min(rows.length - 1, Math.max(0, i))];
    if (!row) return;
    moved.current = true;
    setFocused(rowId(row.node));
  };
  const activate = (n: Node): void => {
    setFocused(rowId(n));
    if (n.isKey) props.onOpenKey(n.path);
    else toggle(n);
  };

  const onKeyDown = (e: KeyboardEvent): void => {
    if (!current) return;
    const n = current.node;
    const isOpen = !n.isKey && (matches !== undefined || expanded.has(n.path));
    switch (e.key) {
      case 'ArrowDown':
        moveTo(focusIndex + 1);
        break;
      case 'ArrowUp':
        moveTo(focusIndex - 1);
        break;
      case 'Home':
        moveTo(0);
        break;
      case 'End':
        moveTo(rows.length - 1);
        break;
      case 'ArrowRight':
        if (n.isKey) return;
        if (isOpen) moveTo(focusIndex + 1);
        else toggle(n, true);
        break;
      case 'ArrowLeft':
        if (isOpen) toggle(n, false);
        else {
          for (let i = focusIndex - 1; i >= 0; i--) {
            if (rows[i].level === current.level - 1) {
              moveTo(i);
              break;
            }
          }
        }
        break;
      case 'Enter':
      case ' ':
        activate(n);
        break;
      default:
        return;
    }
    e.preventDefault();
  };

  if (rows.length === 0) return <p class="empty">{filter ? `No loaded key matches “${filter}”.` : 'No keys under this prefix.'}</p>;
  return (
    <ul class="tree" role="tree" aria-label={`Keys under “${prefix}”`} ref={list} onKeyDown={onKeyDown}>
      {rows.map((row, i) => {
        const n = row.node;
        const open = !n.isKey && (matches !== undefined || expanded.has(n.path));
        const flash = n.isKey ? flashing.has(n.path) : flashingFolders.has(n.path);
        const partial = props.more && !n.isKey && names.length > 0 && names[names.length - 1].startsWith(n.path);
        return (
          <li
            key={rowId(n)}
            role="treeitem"
            aria-level={row.level}
            aria-setsize={row.setSize}
            aria-posinset={row.posInSet}
            aria-expanded={n.isKey ? undefined : open}
            aria-selected={n.isKey ? n.path === selected : undefined}
            tabIndex={i === focusIndex ? 0 : -1}
            class={`row level-${Math.min(row.level, 12)}${n.isKey ? ' key' : ' folder'}${open ? ' open' : ''}${flash ? ' flash' : ''}`}
            data-path={n.path}
            onClick={() => activate(n)}
          >
            {n.label === '' ? '(empty)' : n.label}
            {!n.isKey && <span class="count"> {n.keys}{partial ? '+' : ''}</span>}
          </li>
        );
      })}
    </ul>
  );
}
