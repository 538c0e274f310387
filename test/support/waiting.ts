// Bounded waiting for tests: sleep, poll a condition with a deadline, and watch a promise settle so a
// test can tell "still waiting" from "answered", and when.

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls `probe` every `intervalMs` until it returns a value other than undefined/false; rejects with
 *  `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let round = 0; round < Math.ceil(timeoutMs / intervalMs) + 1; round++) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : String(last)})`);
}

export interface Tracked<T> {
  promise: Promise<T>;
  /** Whether the promise has settled yet. */
  readonly settled: boolean;
  /** Date.now() when it settled. */
  readonly settledAt: number | undefined;
}

/** Wraps a promise to record when it settles. */
export function track<T>(promise: Promise<T>): Tracked<T> {
  let settledAt: number | undefined;
  const wrapped = promise.finally(() => {
    settledAt = Date.now();
  });
  // The caller awaits `promise`; this keeps a rejection before that from being reported as unhandled.
  wrapped.catch(() => undefined);
  return {
    promise: wrapped,
    get settled() {
      return settledAt !== undefined;
    },
    get settledAt() {
      return settledAt;
    },
  };
}

/** Rejects if `promise` takes longer than `ms`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
