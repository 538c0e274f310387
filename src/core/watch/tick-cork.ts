// Write coalescing for stream connections: the messages written to one socket within one tick of the
// event loop (a revision fanned out to a client's watches, held answers released together) leave in
// one socket write, each still its own WebSocket message or HTTP chunk. A socket is corked at its first
// write of the tick, and one callback per tick, for all sockets, uncorks them once the tick's work is
// done (instead of a callback per socket: a revision fanned out to 10,000 sockets schedules one).

interface Corkable {
  cork(): void;
  uncork(): void;
}

let holding: TickCork[] = [];

function releaseAll(): void {
  const list = holding;
  holding = [];
  for (const c of list) c.release();
}

export class TickCork {
  private held = false;

  constructor(private readonly stream: Corkable) {}

  /** Called before each write: holds the stream's writes until the current tick's work is done. */
  hold(): void {
    if (this.held) return;
    this.held = true;
    if (holding.length === 0) process.nextTick(releaseAll);
    holding.push(this);
    this.stream.cork();
  }

  release(): void {
    this.held = false;
    this.stream.uncork();
  }
}
