// Paced, coalescing writes for stream connections. Each connection's messages wait in its Outbox, and
// one flusher for the whole process writes the outboxes in the order they filled, a time slice at a
// time, yielding to the event loop between slices. A connection's waiting messages leave in one socket
// write (one system call), however many there are.
//
// Why: a revision fanned out to 10,000 sockets is 10,000 writes, and on a small machine each costs more
// in the kernel than everything else the gateway does for it. Written at once, in one long tick, the
// next revision waits in etcd's stream until the last socket has had the previous one, and every
// socket pays one write per revision however far behind the gateway is. Written in slices, the next
// revision is read between two slices and joins the messages still waiting: the sockets not yet
// written get both in one write. The busier the gateway, the more each write carries, so it keeps up
// with a rate it could not write one message at a time, and a socket waits at most about one pass over
// the busy connections. Unloaded (every outbox written within one slice) nothing changes: the messages
// of one tick leave together, right after it.
//
// Order: a connection's messages leave in the order they were queued, so everything a connection sends
// must go through its outbox (or flush it first).

import { performance } from 'node:perf_hooks';

/** How long one slice of the flusher may write before it yields to the event loop. */
export const SLICE_MS = 4;

let queue: Outbox[] = [];
let head = 0;
let scheduled = false;

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(flushSlice);
}

function flushSlice(): void {
  scheduled = false;
  const deadline = performance.now() + SLICE_MS;
  let written = 0;
  while (head < queue.length) {
    const outbox = queue[head];
    queue[head++] = undefined as unknown as Outbox;
    try {
      outbox.flush();
    } catch (err) {
      // One connection's failure must not stop the others' writes (nor the process): it is dropped.
      outbox.close();
      process.emitWarning(`watch stream write failed; connection dropped: ${(err as Error).message}`);
    }
    // The clock is read every 16 writes: a write is microseconds, reading the clock is not free.
    if ((++written & 15) === 0 && performance.now() > deadline) break;
  }
  if (head < queue.length) {
    // More waits: the rest goes on after the event loop has had its turn (new input joins it).
    if (head > 4096 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    schedule();
  } else {
    queue = [];
    head = 0;
  }
}

/** The last messages joined into one write, and the result: the outboxes of one shared watch mostly
 *  hold the same messages (the same Buffers), so they share one joined copy instead of one each. */
let lastParts: Buffer[] = [];
let lastJoined: Buffer | undefined;

function join(first: Buffer, rest: Buffer[]): Buffer {
  const n = rest.length + 1;
  if (lastJoined && lastParts.length === n && lastParts[0] === first) {
    let same = true;
    for (let i = 1; i < n && same; i++) same = lastParts[i] === rest[i - 1];
    if (same) return lastJoined;
  }
  lastParts = [first, ...rest];
  return (lastJoined = Buffer.concat(lastParts));
}

export class Outbox {
  /** The messages waiting: most of the time one, so kept without an array. */
  private first?: Buffer;
  private rest?: Buffer[];
  private queued = false;
  private closed = false;
  /** Whether the last message queued / written goes on in the next one (a revision in fragments). */
  private queuedContinues = false;
  private writtenContinues = false;
  /** Bytes waiting here (not yet handed to the socket). */
  bytes = 0;

  /** `write` hands bytes to the connection, or drops them (a connection closing, or one cut off as too
   *  slow: the place for that check, since it is where the connection's socket is at hand anyway);
   *  `afterPartial` says the bytes written before ended inside a revision. */
  constructor(private readonly write: (data: Buffer, afterPartial: boolean) => void) {}

  /** Queues one message; `continues` marks a message whose revision goes on in the next one (left out
   *  for a control frame, which may come between two parts of a revision and leaves that as it is). */
  push(message: Buffer, continues?: boolean): void {
    if (this.closed) return;
    if (continues !== undefined) this.queuedContinues = continues;
    if (this.first === undefined) this.first = message;
    else (this.rest ??= []).push(message);
    this.bytes += message.length;
    if (!this.queued) {
      this.queued = true;
      queue.push(this);
      schedule();
    }
  }

  /** Writes what waits, in one write. Called by the flusher, and by the connection before it writes
   *  anything past the outbox (a close frame) or ends. */
  flush(): void {
    this.queued = false;
    const first = this.first;
    if (first === undefined) return;
    const rest = this.rest;
    this.first = this.rest = undefined;
    this.bytes = 0;
    if (this.closed) return;
    const afterPartial = this.writtenContinues;
    this.writtenContinues = this.queuedContinues;
    this.write(rest ? join(first, rest) : first, afterPartial);
  }

  /** The connection is gone: what waits is dropped. */
  close(): void {
    this.closed = true;
    this.first = this.rest = undefined;
    this.bytes = 0;
  }
}
