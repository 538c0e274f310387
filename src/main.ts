// Command line and environment → config → etcd (the embedded one when no endpoints are given) →
// listen → stop everything cleanly on SIGINT/SIGTERM.

// First: V8 settings that must be in force before the rest is loaded.
import './boot/v8-tuning';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { ConfigError, loadConfig, usage, type Config } from './config/settings';
import { buildGateway } from './boot/gateway';
import { checkRequests, hardenServer, serverOptions } from './boot/http-server';
import { AccessPolicy } from './core/security/access';
import { EtcdClient, type EtcdTlsOptions } from './etcd/client';
import { isWorker, runPrimary, workerMetrics } from './boot/workers';
import { DataDirInUseError, ensureEtcdBinary, EtcdMissingError, EtcdStartError, portIsFree, startEmbeddedEtcd, type EtcdProcess } from './embedded-etcd/process';

/** A PEM file named by a setting; unreadable or not PEM: a ConfigError naming the setting and the path. */
function readPem(setting: string, file: string, kind: 'certificate' | 'key'): Buffer {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new ConfigError(`${setting}: cannot read "${file}": ${why}`);
  }
  const text = data.toString('latin1');
  if (kind === 'certificate') {
    let ok = text.includes('-----BEGIN CERTIFICATE-----');
    try {
      if (ok) new X509Certificate(data);
    } catch {
      ok = false;
    }
    if (!ok) throw new ConfigError(`${setting}: "${file}" holds no PEM certificate`);
  } else if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new ConfigError(`${setting}: "${file}" holds no PEM private key`);
  }
  return data;
}

/** Both settings of a pair, or neither. */
function pair(a: [string, string], b: [string, string], purpose: string): void {
  if (Boolean(a[1]) !== Boolean(b[1])) {
    const [set, unset] = a[1] ? [a[0], b[0]] : [b[0], a[0]];
    throw new ConfigError(`${set} is set but ${unset} is not: ${purpose} needs both (or neither)`);
  }
}

interface TlsSettings {
  /** Options of the HTTPS server; undefined: plain HTTP. */
  server?: https.ServerOptions;
  /** TLS to etcd; undefined: none asked for (https:// endpoints still use TLS, with the system's CAs). */
  etcd?: EtcdTlsOptions;
}

/** Reads and checks the TLS files before anything starts, so a mistake is a config error (exit 2). */
function loadTls(config: Config): TlsSettings {
  const out: TlsSettings = {};
  pair(['TLS_CERT_FILE', config.tlsCertFile], ['TLS_KEY_FILE', config.tlsKeyFile], 'HTTPS');
  if (config.tlsClientCaFile && !config.tlsCertFile) {
    throw new ConfigError('TLS_CLIENT_CA_FILE is set but TLS_CERT_FILE and TLS_KEY_FILE are not: client certificates are only asked for over HTTPS');
  }
  if (config.tlsCertFile) {
    const cert = readPem('TLS_CERT_FILE', config.tlsCertFile, 'certificate');
    const key = readPem('TLS_KEY_FILE', config.tlsKeyFile, 'key');
    const ca = config.tlsClientCaFile ? readPem('TLS_CLIENT_CA_FILE', config.tlsClientCaFile, 'certificate') : undefined;
    try {
      tls.createSecureContext({ cert, key });
    } catch (e) {
      throw new ConfigError(`TLS_CERT_FILE/TLS_KEY_FILE: "${config.tlsCertFile}" and "${config.tlsKeyFile}" are not a usable certificate and key: ${(e as Error).message}`);
    }
    // With a client CA, a client without a certificate it signed is refused during the handshake.
    out.server = { cert, key, ca, requestCert: Boolean(ca), rejectUnauthorized: Boolean(ca) };
  }
  pair(['ETCD_CERT_FILE', config.etcdCertFile], ['ETCD_KEY_FILE', config.etcdKeyFile], 'a client certificate for etcd');
  if (config.etcdCaFile || config.etcdCertFile) {
    const names = [config.etcdCaFile && 'ETCD_CA_FILE', config.etcdCertFile && 'ETCD_CERT_FILE/ETCD_KEY_FILE'].filter(Boolean).join(' and ');
    if (config.endpoints.length === 0) {
      throw new ConfigError(`${names}: set for etcd, but ETCD_ENDPOINTS is empty (the embedded etcd speaks plain HTTP); give https:// endpoints`);
    }
    if (!config.endpoints[0].toLowerCase().startsWith('https://')) {
      throw new ConfigError(`${names}: set for etcd, but ETCD_ENDPOINTS are http://; TLS to etcd needs https:// endpoints`);
    }
    const ca = config.etcdCaFile ? readPem('ETCD_CA_FILE', config.etcdCaFile, 'certificate') : undefined;
    const cert = config.etcdCertFile ? readPem('ETCD_CERT_FILE', config.etcdCertFile, 'certificate') : undefined;
    const key = config.etcdKeyFile ? readPem('ETCD_KEY_FILE', config.etcdKeyFile, 'key') : undefined;
    if (cert) {
      try {
        tls.createSecureContext({ cert, key });
      } catch (e) {
        throw new ConfigError(`ETCD_CERT_FILE/ETCD_KEY_FILE: "${config.etcdCertFile}" and "${config.etcdKeyFile}" are not a usable certificate and key: ${(e as Error).message}`);
      }
    }
    out.etcd = { ca, cert, key };
  }
  return out;
}

async function main(): Promise<void> {
  let config: Config | 'help';
  let tlsSettings: TlsSettings = {};
  try {
    config = loadConfig(process.argv.slice(2), process.env);
    if (config !== 'help') tlsSettings = loadTls(config);
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

  // A port in use is said at once, before an embedded etcd starts (a second `npm start` in one checkout).
  if (!isWorker() && config.port !== 0 && !(await portIsFree(config.port, config.host))) {
    process.stderr.write(`gateway failed to start: port ${config.port} on ${config.host} is in use (another gateway running?): stop it, or start this one with PORT=<another port>\n`);
    process.exit(1);
  }
  let embedded: EtcdProcess | undefined;
  let endpoints = config.endpoints;
  // Workers get the endpoints (the embedded etcd's too) from the primary, in ETCD_ENDPOINTS.
  if (endpoints.length === 0 && !isWorker()) {
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
    try {
      embedded = await startEmbeddedEtcd({ bin, dataDir, log: (msg) => log.info(msg) });
    } catch (e) {
      // The cause in the first line (the log tail of etcd follows); a stack trace would only hide it.
      if (e instanceof DataDirInUseError || e instanceof EtcdStartError) {
        process.stderr.write(`gateway failed to start: ${e.message}\n`);
        process.exit(1);
      }
      throw e;
    }
    endpoints = [embedded.clientUrl];
  }

  /** The log line and the banner once the gateway listens (in a cluster: once every worker does). */
  const announce = (port: number): void => {
    const base = baseUrl(port);
    const clientCerts = tlsSettings.server?.requestCert ? 'required' : 'no';
    log.info({ api: `${base}/v3/`, docs: `${base}/docs/`, etcd: endpoints, embedded: Boolean(embedded), clientCerts, workers: config.workers }, 'gateway listening');
    process.stdout.write(
      [
        `etcd JSON gateway listening on ${base}`,
        `  Keys API:   ${base}/v1/kv/`,
        `  API:        ${base}/v3/  (also /v3beta/ and /v3alpha/)`,
        `  Swagger UI: ${base}/docs/`,
        ...(config.ui ? [`  Console:    ${base}/ui/`] : []),
        `  etcd:       ${endpoints.join(', ')}${embedded ? ` (embedded, data in ${embedded.dataDir})` : ''}`,
        ...(config.workers > 1 ? [`  workers:    ${config.workers}`] : []),
        '',
      ].join('\n'),
    );
  };
  const baseUrl = (port: number): string =>
    `${tlsSettings.server ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;

  if (config.workers > 1 && !isWorker()) {
    runPrimary({
      workers: config.workers,
      env: { ETCD_ENDPOINTS: endpoints.join(',') },
      shutdownGraceMs: config.shutdownGraceMs,
      log,
      onListening: announce,
      async onStopped(code) {
        await embedded?.stop();
        process.exit(code);
      },
    });
    return;
  }

  const etcd = new EtcdClient({
    endpoints,
    requestTimeoutMs: config.requestTimeoutMs,
    username: config.etcdUsername || undefined,
    password: config.etcdPassword,
    tls: tlsSettings.etcd,
  });
  if (config.etcdUsername) {
    // Signing in now reports bad credentials at start-up; an unreachable etcd is retried on first use.
    await etcd.signIn().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'etcd sign-in failed; will retry on first request'));
  }
  let access: AccessPolicy | undefined;
  if (config.accessFile) {
    try {
      access = new AccessPolicy(config.accessFile, log);
    } catch (e) {
      process.stderr.write(`ACCESS_FILE ${config.accessFile}: ${(e as Error).message}\n`);
      process.exit(2);
    }
  }
  // SIGHUP reloads the access file; without one it does nothing (rather than stop the gateway, and in
  // a cluster the primary passes it on to every worker).
  process.on('SIGHUP', () => access?.reload());
  const gateway = buildGateway({
    etcd,
    logger: log,
    access,
    maxConnections: config.maxConnections,
    fastLane: config.httpFastLane,
    maxBodyBytes: config.maxBodyBytes,
    lockWaitMs: config.lockWaitMs,
    corsOrigins: config.corsOrigins,
    rateLimit: { rate: config.rateLimit, burst: config.rateLimitBurst || 2 * config.rateLimit },
    streams: config,
    ui: config.ui,
  });
  if (isWorker()) gateway.metrics.aggregate = workerMetrics(gateway.metrics.registry);
  const tlsServer = tlsSettings.server;
  const options = serverOptions(config);
  const handler = checkRequests(gateway.handler);
  const server = tlsServer ? https.createServer({ ...tlsServer, ...options }, handler) : http.createServer(options, handler);
  // Timeouts against slow clients, and JSON for what Node would answer without a body; before attach(),
  // whose clientError handler then finds a timed-out socket already answered.
  hardenServer(server, config);
  if (tlsServer) {
    // Refused handshakes (no or an untrusted client certificate, plain HTTP on the TLS port) end there.
    server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'TLS handshake refused'));
  }
  // An https.Server emits 'connection', 'request' and 'upgrade' like http.Server (and @types/node lets it
  // stand for one), so WebSockets become wss:// with no other change.
  gateway.attach(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  if (!isWorker()) announce(port);

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
    access?.close();
    server.closeIdleConnections();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // A worker whose primary is gone stops too.
  if (isWorker()) process.on('disconnect', () => stop('primary process gone'));
}

main().catch((e: unknown) => {
  process.stderr.write(`gateway failed to start: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
