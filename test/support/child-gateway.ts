// The gateway as its own process (`node dist/src/main.js`), for tests that measure its memory or need
// the server exactly as main.ts builds it (timeouts, limits), and whose load must not share its event loop.

import { heapAfterGc, startGatewayProcess, type GatewayProcess } from '../../bench/setup';

export interface ChildGateway extends GatewayProcess {
  /** heapUsed, RSS and external memory after two full garbage collections inside the gateway. */
  heapAfterGc(): Promise<{ heapUsed: number; rss: number; external: number }>;
}

export async function startChildGateway(etcdUrl: string, env: Record<string, string> = {}): Promise<ChildGateway> {
  const gw = await startGatewayProcess({ etcdUrl, env, heapProbe: true, stderr: 'pipe' });
  return Object.assign(gw, { heapAfterGc: () => heapAfterGc(gw) });
}
