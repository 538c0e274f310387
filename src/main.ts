// Command line and environment → config → etcd (the embedded one when no endpoints are given) →
// listen → stop everything cleanly on SIGINT/SIGTERM.

import http from 'node:http';
import path from 'node:path';
import pino from 'pino';
import { ConfigError, loadConfig, usage, type Config } from './config';
import { buildGateway } from './app';
import { EtcdClient } from './etcd/client';
import { ensureEtcdBinary, EtcdMissingError, startEmbeddedEtcd, type EtcdProcess } from './etcd/process';

async function main(): Promise<void> {
  let config: Config | 'help';
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  if (config === 'help') {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  const log = pino({ level: config.logLevel });

  let embedded: EtcdProcess | undefined;
  let endpoints = config.endpoints;
  if (endpoints.length === 0) {
    let bin: string;
    try {
      bin = await ensureEtcdBinary({ install: true, log: (msg) => log.info(msg) });
    } catch (e) {
      if (e instanceof EtcdMissingError) {
        process.stderr.write(`${e.message}\n`);
        process.exit(1);
      }
      throw e;
    }
    const dataDir = path.resolve(config.dataDir);
    embedded = await startEmbeddedEtcd({ bin, dataDir, log: (msg) => log.info(msg) });
    endpoints = [embedded.clientUrl];
  }

  const etcd = new EtcdClient({
    endpoints,
    requestTimeoutMs: config.requestTimeoutMs,
    username: config.etcdUsername || undefined,
    password: config.etcdPassword,
  });
  if (config.etcdUsername) {
    // Signing in now reports bad credentials at start-up; an unreachable etcd is retried on first use.
    await etcd.signIn().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'etcd sign-in failed; will retry on first request'));
  }
  const gateway = buildGateway({
    etcd,
    logger: log,
    maxBodyBytes: config.maxBodyBytes,
    lockWaitMs: config.lockWaitMs,
    corsOrigins: config.corsOrigins,
    rateLimit: { rate: config.rateLimit, burst: config.rateLimitBurst || 2 * config.rateLimit },
    streams: config,
  });
  const server = http.createServer(gateway.app);
  gateway.attach(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const base = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info({ api: `${base}/v3/`, docs: `${base}/docs/`, etcd: endpoints, embedded: Boolean(embedded) }, 'gateway listening');
  process.stdout.write(
    [
      `etcd JSON gateway listening on ${base}`,
      `  API:        ${base}/v3/  (also /v3beta/ and /v3alpha/)`,
      `  Swagger UI: ${base}/docs/`,
      `  etcd:       ${endpoints.join(', ')}${embedded ? ` (embedded, data in ${embedded.dataDir})` : ''}`,
      '',
    ].join('\n'),
  );

  let stopping = false;
  // Stop accepting, end streams (WebSockets with 1001), let requests in flight finish within the
  // grace period so no acknowledged write is cut off, then close etcd and the embedded etcd.
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'stopping');
    const finish = (): void => {
      etcd.close();
      void (embedded?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
    };
    const grace = setTimeout(() => {
      log.warn('grace period over: closing the connections still open');
      server.closeAllConnections();
    }, config.shutdownGraceMs);
    server.close(() => {
      clearTimeout(grace);
      finish();
    });
    gateway.close();
    server.closeIdleConnections();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  process.stderr.write(`gateway failed to start: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
