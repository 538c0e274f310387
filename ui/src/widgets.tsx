// Small pieces shared by the views: the ticking clock behind every countdown, a modal dialog, a diff,
// and the way an error is reported.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';
import { diffLines, parseJson } from './format';

/** What the views tell the person: an error (with the gateway's own message) or a confirmation;
 *  undefined takes back what was said last, once it no longer holds. */
export type Report = (what: unknown, kind?: 'error' | 'info') => void;

export function messageOf(e: unknown): string {
  if (e instanceof ApiError) return `${e.status}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** The time now, once a second: one timer per component that shows a countdown. */
export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

/** Seconds left of a TTL read at `readAt`, never below 0. */
export function secondsLeft(ttl: number, readAt: number, now: number): number {
  return Math.max(0, Math.ceil(ttl - (now - readAt) / 1000));
}

/** A modal <dialog>: the browser traps focus in it and gives it back on close; Escape cancels. */
let dialogs = 0;

export function Dialog(props: { title: string; open: boolean; onClose(): void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [titleId] = useState(() => `dialog-title-${++dialogs}`);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={ref} aria-labelledby={titleId} onClose={props.onClose}>
      {props.open && (
        <>
          <h2 id={titleId}>{props.title}</h2>
          {props.children}
        </>
      )}
    </dialog>
  );
}

/** `older` against `newer`, line by line: removed lines marked −, added ones +. Two JSON documents are
 *  compared as formatted JSON, so a change of layout is not a change of every line. */
export function DiffView(props: { older: string; newer: string; olderLabel: string; newerLabel: string }) {
  const a = parseJson(props.older);
  const b = parseJson(props.newer);
  const asJson = a.ok && b.ok;
  const lines = asJson ? diffLines(JSON.stringify(a.value, null, 2), JSON.stringify(b.value, null, 2)) : diffLines(props.older, props.newer);
  const same = lines.every((l) => l.op === ' ');
  return (
    <figure class="diff">
      <figcaption>
        <span class="del-mark">− {props.olderLabel}</span> <span class="ins-mark">+ {props.newerLabel}</span>
        {asJson && ' (as formatted JSON)'}
        {same && ' (identical)'}
      </figcaption>
      <pre tabIndex={0} aria-label={`Differences between ${props.olderLabel} and ${props.newerLabel}`}>
        {lines.map((l, i) => (
          <span key={i} class={l.op === '-' ? 'del' : l.op === '+' ? 'ins' : 'same'}>
            {l.op === '-' ? '− ' : l.op === '+' ? '+ ' : '  '}
            {l.text}
            {'\n'}
          </span>
        ))}
      </pre>
    </figure>
  );
}
