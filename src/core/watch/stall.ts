// A consumer that reads nothing is found even when nothing more is sent to it. The slow-consumer rule
// of every stream is checked when a message is written: one large answer (a resumed watch's catch-up,
// up to a thousand revisions in one etcd response) always goes through, and a client too slow for it
// is cut off at the next message. A catch-up that is the last thing sent for a while would then sit
// in the socket's buffer, unread, for as long as the client holds the connection open. So once more
// than the limit waits, the socket is looked at again every STALL_MS: a client that read none of it
// since the last look is cut off as too slow, one that reads is left alone.

/** How long a consumer with more than its send buffer waiting may read nothing. */
export const STALL_MS = 1_000;

export class StallWatch {
  private timer?: NodeJS.Timeout;
  /** What waited at the last look, and what was written since. */
  private last = 0;
  private added = 0;

  constructor(
    /** Bytes written and not yet taken by the client. */
    private readonly waiting: () => number,
    private readonly limit: number,
    /** Cuts the consumer off (once). */
    private readonly cut: () => void,
  ) {}

  /** Watching: every write must be told (`wrote`), so that what the client took is known. */
  get armed(): boolean {
    return this.timer !== undefined;
  }

  /** After a write of `bytes`: starts watching if more than the limit waits now. */
  wrote(bytes: number): void {
    if (this.timer) {
      this.added += bytes;
      return;
    }
    const waiting = this.waiting();
    if (waiting <= this.limit) return;
    this.arm(waiting);
  }

  private arm(waiting: number): void {
    this.last = waiting;
    this.added = 0;
    this.timer = setTimeout(() => this.look(), STALL_MS);
    this.timer.unref();
  }

  private look(): void {
    this.timer = undefined;
    const waiting = this.waiting();
    if (waiting <= this.limit) return;
    // Taken by the client since the last look: nothing means it is not reading.
    if (this.last + this.added - waiting <= 0) return this.cut();
    this.arm(waiting);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
