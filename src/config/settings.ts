// One typed, validated configuration object, from the environment and the matching command-line flags
// (a flag wins over its variable).

import { parseArgs } from 'node:util';

export interface Config {
  /** etcd client URLs; empty means "start the embedded etcd". */
  endpoints: string[];
  /** The gateway's own etcd user, for requests without a token of their own. */
  etcdUsername: string;
  etcdPassword: string;
  host: string;
  port: number;
  /** Gateway processes sharing the port (node cluster); 1: no cluster. */
  workers: number;
  requestTimeoutMs: number;
  lockWaitMs: number;
  shutdownGraceMs: number;
  /** Origins allowed to call from a browser; empty: CORS off. */
  corsOrigins: string[];
  /** Requests per second per client; 0: no limit. */
  rateLimit: number;
  rateLimitBurst: number;
  /** The gateway access-control file; empty: access control off. */
  accessFile: string;
  maxHeaderBytes: number;
  /** A request head must arrive within this (ms; 0: no limit), counted from its first byte (or from
   *  the connection's start for a new connection). */
  headersTimeoutMs: number;
  /** A whole request, head and body, must arrive within this (ms; 0: no limit). Answers, streams
   *  included, are not limited by it: it ends when the body has been received. */
  requestReadTimeoutMs: number;
  /** An idle keep-alive connection (no request under way) is closed after this (ms). */
  keepAliveTimeoutMs: number;
  maxConnections: number;
  /** Plain-HTTP connections read by the fast lane first; false: Node's HTTP server reads everything. */
  httpFastLane: boolean;
  maxBodyBytes: number;
  /** Where the embedded etcd keeps its data. */
  dataDir: string;
  logLevel: string;
  watchStreams: number;
  maxWatchesPerConnection: number;
  maxWatchConnections: number;
  /** Per client (its access-control identity, else its address): open streams, watches, keepalives in flight. */
  maxStreamsPerClient: number;
  maxWatchesPerClient: number;
  maxKeepalivesPerClient: number;
  sendBufferBytes: number;
  pingIntervalMs: number;
  /** Interval of the heartbeat comment on an SSE watch (ms). */
  watchHeartbeatMs: number;
  /** HTTPS and WSS: PEM certificate (chain) and private key files, both or neither; empty: plain HTTP. */
  tlsCertFile: string;
  tlsKeyFile: string;
  /** PEM CA certificates; when set, clients must present a certificate they signed (mutual TLS). */
  tlsClientCaFile: string;
  /** TLS to etcd: CA certificates to verify etcd with (empty: the system's), and the gateway's client
   *  certificate and key, both or neither. Only for https:// endpoints. */
  etcdCaFile: string;
  etcdCertFile: string;
  etcdKeyFile: string;
  /** The web console under /ui/ (UI=on|off). */
  ui: boolean;
}

interface Setting {
  flag: string;
  env: string;
  default: string;
  help: string;
}

const SETTINGS = {
  endpoints: { flag: 'etcd-endpoints', env: 'ETCD_ENDPOINTS', default: '', help: 'comma-separated etcd client URLs (http://host:2379,...); unset: start an embedded etcd' },
  etcdUsername: { flag: 'etcd-username', env: 'ETCD_USERNAME', default: '', help: "the gateway's own etcd user, for requests that carry no etcd token" },
  etcdPassword: { flag: 'etcd-password', env: 'ETCD_PASSWORD', default: '', help: 'its password (prefer the variable: flags show in ps)' },
  host: { flag: 'host', env: 'HOST', default: '127.0.0.1', help: 'address to listen on' },
  port: { flag: 'port', env: 'PORT', default: '8080', help: 'port to listen on (0: any free port)' },
  workers: { flag: 'workers', env: 'WORKERS', default: '1', help: 'gateway processes sharing the port (node cluster); 1: a single process' },
  requestTimeoutMs: { flag: 'request-timeout-ms', env: 'REQUEST_TIMEOUT_MS', default: '5000', help: 'deadline of each request to etcd, in milliseconds' },
  lockWaitMs: { flag: 'lock-wait-ms', env: 'LOCK_WAIT_MS', default: '60000', help: 'longest wait of a lock or an election campaign' },
  corsOrigins: { flag: 'cors-origins', env: 'CORS_ORIGINS', default: '', help: 'comma-separated origins allowed from browsers (https://app.example.com, or *); unset: CORS off' },
  rateLimit: { flag: 'rate-limit', env: 'RATE_LIMIT', default: '0', help: 'requests per second per client address on the API (0: no limit); past it: 429' },
  maxHeaderBytes: { flag: 'max-header-bytes', env: 'MAX_HEADER_BYTES', default: '16384', help: 'largest request head (request line and headers); larger: 431' },
  headersTimeoutMs: { flag: 'headers-timeout-ms', env: 'HEADERS_TIMEOUT_MS', default: '10000', help: 'a request head (and a new connection\'s first request) must arrive within this; later: 408 and the connection is closed (0: no limit)' },
  requestReadTimeoutMs: { flag: 'request-read-timeout-ms', env: 'REQUEST_READ_TIMEOUT_MS', default: '30000', help: 'a whole request (head and body) must arrive within this; later: 408 and the connection is closed (0: no limit); streamed answers are not limited' },
  keepAliveTimeoutMs: { flag: 'keepalive-timeout-ms', env: 'KEEPALIVE_TIMEOUT_MS', default: '5000', help: 'an idle keep-alive connection is closed after this' },
  maxConnections: { flag: 'max-connections', env: 'MAX_CONNECTIONS', default: '10000', help: 'open TCP connections accepted; more: 503 and the connection is closed' },
  httpFastLane: { flag: 'http-fast-lane', env: 'HTTP_FAST_LANE', default: 'on', help: "on: plain unary POSTs are read by the gateway's own HTTP/1.1 reader; off: Node's HTTP server reads every request" },
  accessFile: { flag: 'access-file', env: 'ACCESS_FILE', default: '', help: 'gateway access-control file (YAML or JSON): clients, tokens, granted prefixes; reloaded on change and SIGHUP' },
  rateLimitBurst: { flag: 'rate-limit-burst', env: 'RATE_LIMIT_BURST', default: '0', help: 'requests a client may send at once (0: twice the rate)' },
  shutdownGraceMs: { flag: 'shutdown-grace-ms', env: 'SHUTDOWN_GRACE_MS', default: '10000', help: 'on SIGTERM/SIGINT, how long requests in flight may take to finish' },
  maxBodyBytes: { flag: 'max-body-bytes', env: 'MAX_BODY_BYTES', default: '2097152', help: 'largest request body accepted (larger: 413)' },
  dataDir: { flag: 'data-dir', env: 'DATA_DIR', default: './data/etcd', help: 'data directory of the embedded etcd' },
  logLevel: { flag: 'log-level', env: 'LOG_LEVEL', default: 'info', help: 'fatal, error, warn, info, debug, trace or silent' },
  watchStreams: { flag: 'watch-streams', env: 'WATCH_STREAMS', default: '4', help: 'etcd Watch streams that all client watches share' },
  maxWatchesPerConnection: { flag: 'max-watches-per-connection', env: 'MAX_WATCHES_PER_CONNECTION', default: '1000', help: 'watches one HTTP stream or WebSocket may hold' },
  maxWatchConnections: { flag: 'max-watch-connections', env: 'MAX_WATCH_CONNECTIONS', default: '10000', help: 'open watch streams and WebSockets, in all' },
  maxStreamsPerClient: { flag: 'max-streams-per-client', env: 'MAX_STREAMS_PER_CLIENT', default: '0', help: 'open streams (WebSockets, HTTP streams, /v1/ watches, blocking reads, waiting locks and campaigns) one client may hold; more: 429 (0: a tenth of MAX_WATCH_CONNECTIONS)' },
  maxWatchesPerClient: { flag: 'max-watches-per-client', env: 'MAX_WATCHES_PER_CLIENT', default: '10000', help: 'watches one client may hold across all its streams; more: refused (429)' },
  maxKeepalivesPerClient: { flag: 'max-keepalives-per-client', env: 'MAX_KEEPALIVES_PER_CLIENT', default: '1000', help: 'lease keepalives one client may have waiting for etcd (each ID of a keepalive body counts); more: 429' },
  sendBufferBytes: { flag: 'send-buffer-bytes', env: 'SEND_BUFFER_BYTES', default: '4194304', help: 'bytes waiting to be sent to one client before it is cut off as too slow' },
  pingIntervalMs: { flag: 'ws-ping-interval-ms', env: 'WS_PING_INTERVAL_MS', default: '30000', help: 'WebSocket ping interval; a peer silent for two intervals is dropped' },
  watchHeartbeatMs: { flag: 'watch-heartbeat-ms', env: 'WATCH_HEARTBEAT_MS', default: '15000', help: 'interval of the heartbeat comment on a Server-Sent Events watch, so proxies keep it open' },
  tlsCertFile: { flag: 'tls-cert-file', env: 'TLS_CERT_FILE', default: '', help: 'PEM certificate (chain) to serve HTTPS and WSS with; needs TLS_KEY_FILE; unset: plain HTTP' },
  tlsKeyFile: { flag: 'tls-key-file', env: 'TLS_KEY_FILE', default: '', help: 'PEM private key of TLS_CERT_FILE' },
  tlsClientCaFile: { flag: 'tls-client-ca-file', env: 'TLS_CLIENT_CA_FILE', default: '', help: 'PEM CA certificates: require client certificates they signed (mutual TLS)' },
  etcdCaFile: { flag: 'etcd-ca-file', env: 'ETCD_CA_FILE', default: '', help: "PEM CA certificates to verify https:// etcd endpoints with (unset: the system's)" },
  etcdCertFile: { flag: 'etcd-cert-file', env: 'ETCD_CERT_FILE', default: '', help: "PEM client certificate for etcd's --client-cert-auth; needs ETCD_KEY_FILE" },
  etcdKeyFile: { flag: 'etcd-key-file', env: 'ETCD_KEY_FILE', default: '', help: 'PEM private key of ETCD_CERT_FILE' },
  ui: { flag: 'ui', env: 'UI', default: 'on', help: 'the web console at /ui/: on or off (off: the gateway serves only the API)' },
} satisfies Record<keyof Config, Setting>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {}

export function usage(): string {
  const lines = ['Usage: npm start -- [options]', '', 'Options (each also read from the environment variable shown):'];
  for (const s of Object.values(SETTINGS) as Setting[]) {
    lines.push(`  --${s.flag.padEnd(28)} ${s.env.padEnd(28)} ${s.help}${s.default ? ` (default ${s.default})` : ''}`);
  }
  lines.push('  --help                                          show this help');
  lines.push('', 'The embedded etcd runs the binary named by ETCD_BIN, or `etcd` from PATH.');
  return lines.join('\n');
}

function integer(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`${name} must be a whole number, got "${text}"`);
  const n = Number(text.trim());
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** The two request timeouts; Node refuses a head timeout longer than the whole request's. */
function timeouts(headersText: string, requestText: string): { headersTimeoutMs: number; requestReadTimeoutMs: number } {
  const headersTimeoutMs = integer('HEADERS_TIMEOUT_MS', headersText, 0, 3_600_000);
  const requestReadTimeoutMs = integer('REQUEST_READ_TIMEOUT_MS', requestText, 0, 3_600_000);
  if (headersTimeoutMs > 0 && requestReadTimeoutMs > 0 && headersTimeoutMs > requestReadTimeoutMs) {
    throw new ConfigError(`HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not be longer than REQUEST_READ_TIMEOUT_MS (${requestReadTimeoutMs}): the head is part of the request`);
  }
  return { headersTimeoutMs, requestReadTimeoutMs };
}

function onOff(name: string, text: string): boolean {
  const value = text.trim().toLowerCase();
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new ConfigError(`${name} must be on or off, got "${text}"`);
}

function endpointList(text: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const e of list) {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      throw new ConfigError(`ETCD_ENDPOINTS: "${e}" is not a URL (expected http://host:port)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(`ETCD_ENDPOINTS: "${e}" must start with http:// or https://`);
    }
    if (!url.port) throw new ConfigError(`ETCD_ENDPOINTS: "${e}" has no port`);
  }
  const schemes = new Set(list.map((e) => new URL(e).protocol));
  if (schemes.size > 1) throw new ConfigError('ETCD_ENDPOINTS: mixes http:// and https:// endpoints');
  return list;
}

function originList(text: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const o of list) {
    if (o === '*') continue;
    let url: URL;
    try {
      url = new URL(o);
    } catch {
      throw new ConfigError(`CORS_ORIGINS: "${o}" is not an origin (expected https://host[:port] or *)`);
    }
    if (url.origin !== o) throw new ConfigError(`CORS_ORIGINS: "${o}" is not an origin (expected ${url.origin})`);
  }
  return list;
}

/** The global watch-connection limit and the per-client caps under it: by default one client may hold
 *  a tenth of the streams, so that one client cannot take the whole process. */
function perClient(get: (s: Setting) => string): Pick<Config, 'maxWatchConnections' | 'maxStreamsPerClient' | 'maxWatchesPerClient' | 'maxKeepalivesPerClient'> {
  const maxWatchConnections = integer('MAX_WATCH_CONNECTIONS', get(SETTINGS.maxWatchConnections), 1, 10_000_000);
  const streams = integer('MAX_STREAMS_PER_CLIENT', get(SETTINGS.maxStreamsPerClient), 0, 10_000_000);
  return {
    maxWatchConnections,
    maxStreamsPerClient: streams || Math.max(1, Math.floor(maxWatchConnections / 10)),
    maxWatchesPerClient: integer('MAX_WATCHES_PER_CLIENT', get(SETTINGS.maxWatchesPerClient), 1, 100_000_000),
    maxKeepalivesPerClient: integer('MAX_KEEPALIVES_PER_CLIENT', get(SETTINGS.maxKeepalivesPerClient), 1, 10_000_000),
  };
}

/** Returns the configuration, or `"help"` when --help was asked for. Throws ConfigError when invalid. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config | 'help' {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const s of Object.values(SETTINGS) as Setting[]) options[s.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n\n${usage()}`);
  }
  if (values.help) return 'help';
  const get = (s: Setting): string => (values[s.flag] as string | undefined) ?? env[s.env] ?? s.default;
  const logLevel = get(SETTINGS.logLevel);
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  return {
    endpoints: endpointList(get(SETTINGS.endpoints)),
    etcdUsername: get(SETTINGS.etcdUsername),
    etcdPassword: get(SETTINGS.etcdPassword),
    host: get(SETTINGS.host),
    port: integer('PORT', get(SETTINGS.port), 0, 65535),
    workers: integer('WORKERS', get(SETTINGS.workers), 1, 64),
    requestTimeoutMs: integer('REQUEST_TIMEOUT_MS', get(SETTINGS.requestTimeoutMs), 1, 600_000),
    lockWaitMs: integer('LOCK_WAIT_MS', get(SETTINGS.lockWaitMs), 1, 86_400_000),
    corsOrigins: originList(get(SETTINGS.corsOrigins)),
    rateLimit: integer('RATE_LIMIT', get(SETTINGS.rateLimit), 0, 1_000_000),
    rateLimitBurst: integer('RATE_LIMIT_BURST', get(SETTINGS.rateLimitBurst), 0, 10_000_000),
    accessFile: get(SETTINGS.accessFile),
    maxHeaderBytes: integer('MAX_HEADER_BYTES', get(SETTINGS.maxHeaderBytes), 1024, 1 << 20),
    ...timeouts(get(SETTINGS.headersTimeoutMs), get(SETTINGS.requestReadTimeoutMs)),
    keepAliveTimeoutMs: integer('KEEPALIVE_TIMEOUT_MS', get(SETTINGS.keepAliveTimeoutMs), 1, 3_600_000),
    maxConnections: integer('MAX_CONNECTIONS', get(SETTINGS.maxConnections), 1, 10_000_000),
    httpFastLane: onOff('HTTP_FAST_LANE', get(SETTINGS.httpFastLane)),
    shutdownGraceMs: integer('SHUTDOWN_GRACE_MS', get(SETTINGS.shutdownGraceMs), 0, 3_600_000),
    maxBodyBytes: integer('MAX_BODY_BYTES', get(SETTINGS.maxBodyBytes), 1, 1 << 30),
    dataDir: get(SETTINGS.dataDir),
    logLevel,
    watchStreams: integer('WATCH_STREAMS', get(SETTINGS.watchStreams), 1, 256),
    maxWatchesPerConnection: integer('MAX_WATCHES_PER_CONNECTION', get(SETTINGS.maxWatchesPerConnection), 1, 1_000_000),
    ...perClient(get),
    sendBufferBytes: integer('SEND_BUFFER_BYTES', get(SETTINGS.sendBufferBytes), 1024, 1 << 30),
    pingIntervalMs: integer('WS_PING_INTERVAL_MS', get(SETTINGS.pingIntervalMs), 100, 3_600_000),
    watchHeartbeatMs: integer('WATCH_HEARTBEAT_MS', get(SETTINGS.watchHeartbeatMs), 100, 3_600_000),
    // Files are read, and the pairs checked, by main.ts before anything starts (errors name the setting).
    tlsCertFile: get(SETTINGS.tlsCertFile),
    tlsKeyFile: get(SETTINGS.tlsKeyFile),
    tlsClientCaFile: get(SETTINGS.tlsClientCaFile),
    etcdCaFile: get(SETTINGS.etcdCaFile),
    etcdCertFile: get(SETTINGS.etcdCertFile),
    etcdKeyFile: get(SETTINGS.etcdKeyFile),
    ui: onOff('UI', get(SETTINGS.ui)),
  };
}
