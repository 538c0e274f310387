// A small TCP proxy on a free loopback port, forwarding to one target. Tests put it between the gateway
// and etcd to break connections without touching etcd: `cutAll()` destroys every current connection
// while new ones are still accepted; `pause()` makes it drop every new connection at once (as a network
// that lets the handshake through and nothing else), until `resume()`; `freeze()` makes every connection,
// current and new, carry nothing either way (as a stopped process, or a network that silently loses
// everything), until `thaw()` lets the held data through; `blackHole()` makes the current connections carry
// nothing, for good, while new ones work (as a half-open connection whose peer is gone).

import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** Connections currently forwarded. */
  readonly active: number;
  /** Connections accepted since the start (forwarded or dropped). */
  readonly accepted: number;
  /** Destroys every current connection (both sides); returns how many were cut. */
  cutAll(): number;
  /** Arms a cut: once `bytes` more bytes have flowed in `direction` ('down': from the target to the
   *  clients, 'up': the other way; all connections together), every connection is cut, in the middle of
   *  that data. Resolves with how many connections were cut. */
  cutAfterBytes(bytes: number, direction?: 'down' | 'up'): Promise<number>;
  /** New connections go to `target` from now on (a client moved to another server). */
  retarget(target: { host: string; port: number }): void;
  /** Disarms a pending cutAfterBytes (its promise resolves with 0). */
  disarm(): void;
  /** New connections are dropped at once until resume(); current ones are left alone. */
  pause(): void;
  resume(): void;
  /** No connection forwards anything, and new ones are accepted and held too, until thaw(). */
  freeze(): void;
  thaw(): void;
  /** The current connections carry nothing from now on (and are never closed); new ones flow. */
  blackHole(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(firstTarget: { host: string; port: number }): Promise<TcpProxy> {
  let target = firstTarget;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  const holes: Array<{ client: net.Socket; upstream: net.Socket }> = [];
  let paused = false;
  let frozen = false;
  let accepted = 0;
  let armed: { remaining: number; direction: 'down' | 'up'; done: (cut: number) => void } | undefined;

  function cutAll(): number {
    const current = [...pairs];
    pairs.clear();
    for (const { client, upstream } of current) {
      client.destroy();
      upstream.destroy();
    }
    return current.length;
  }

  const server = net.createServer((client) => {
    accepted++;
    if (paused) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    // The chunk that reaches the count is still passed on (the pipes below), then everything is cut:
    // the peer has part of the data, or a request whose answer it will never send back.
    const count = (direction: 'down' | 'up') => (chunk: Buffer) => {
      if (!armed || armed.direction !== direction) return;
      armed.remaining -= chunk.length;
      if (armed.remaining > 0) return;
      const { done } = armed;
      armed = undefined;
      setImmediate(() => done(cutAll()));
    };
    upstream.on('data', count('down'));
    client.on('data', count('up'));
    if (frozen) hold(pair);
    else flow(pair);
  });

  function flow({ client, upstream }: { client: net.Socket; upstream: net.Socket }): void {
    client.pipe(upstream);
    upstream.pipe(client);
  }

  function hold({ client, upstream }: { client: net.Socket; upstream: net.Socket }): void {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get active() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    cutAll,
    cutAfterBytes(bytes: number, direction: 'down' | 'up' = 'down') {
      armed?.done(0);
      return new Promise<number>((resolve) => {
        armed = { remaining: bytes, direction, done: resolve };
      });
    },
    retarget(next) {
      target = next;
    },
    disarm() {
      armed?.done(0);
      armed = undefined;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
    },
    freeze() {
      frozen = true;
      for (const pair of pairs) hold(pair);
    },
    blackHole() {
      for (const pair of pairs) hold(pair);
      // Kept open but no longer ours to thaw or cut: the client must notice by itself.
      holes.push(...pairs);
      pairs.clear();
    },
    thaw() {
      if (!frozen) return;
      frozen = false;
      for (const pair of pairs) flow(pair);
    },
    async close() {
      paused = true;
      armed?.done(0);
      armed = undefined;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const { client, upstream } of [...pairs, ...holes]) {
          client.destroy();
          upstream.destroy();
        }
        pairs.clear();
      });
    },
  };
}
