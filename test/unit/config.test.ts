// Configuration: flags override the environment, defaults apply, bad values are refused with a
// message that names the setting.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, usage } from '../../src/config/settings';

describe('config', () => {
  it('has defaults for everything: no endpoints means the embedded etcd', () => {
    assert.deepEqual(loadConfig([], {}), {
      endpoints: [],
      etcdUsername: '',
      etcdPassword: '',
      host: '127.0.0.1',
      port: 8080,
      workers: 1,
      requestTimeoutMs: 5000,
      lockWaitMs: 60000,
      shutdownGraceMs: 10000,
      corsOrigins: [],
      rateLimit: 0,
      rateLimitBurst: 0,
      accessFile: '',
      maxHeaderBytes: 16384,
      headersTimeoutMs: 10000,
      requestReadTimeoutMs: 30000,
      keepAliveTimeoutMs: 5000,
      maxConnections: 10000,
      httpFastLane: true,
      maxBodyBytes: 2097152,
      dataDir: './data/etcd',
      logLevel: 'info',
      watchStreams: 4,
      maxWatchesPerConnection: 1000,
      maxWatchConnections: 10000,
      maxStreamsPerClient: 1000,
      maxWatchesPerClient: 10000,
      maxKeepalivesPerClient: 1000,
      sendBufferBytes: 4194304,
      pingIntervalMs: 30000,
      watchHeartbeatMs: 15000,
      tlsCertFile: '',
      tlsKeyFile: '',
      tlsClientCaFile: '',
      etcdCaFile: '',
      etcdCertFile: '',
      etcdKeyFile: '',
      ui: true,
    });
  });

  it('caps each client at a tenth of MAX_WATCH_CONNECTIONS streams unless MAX_STREAMS_PER_CLIENT says otherwise', () => {
    const derived = loadConfig([], { MAX_WATCH_CONNECTIONS: '50' });
    assert.ok(derived !== 'help');
    assert.equal(derived.maxStreamsPerClient, 5);
    const given = loadConfig(['--max-streams-per-client', '7', '--max-watches-per-client', '8', '--max-keepalives-per-client', '9'], {});
    assert.ok(given !== 'help');
    assert.deepEqual([given.maxStreamsPerClient, given.maxWatchesPerClient, given.maxKeepalivesPerClient], [7, 8, 9]);
    assert.throws(() => loadConfig([], { MAX_WATCHES_PER_CLIENT: '0' }), (e: unknown) => e instanceof ConfigError && /MAX_WATCHES_PER_CLIENT must be between 1/.test(e.message));
  });

  it('turns the web console off with UI=off (or --ui off), and refuses anything but on and off', () => {
    const off = loadConfig([], { UI: 'off' });
    assert.ok(off !== 'help');
    assert.equal(off.ui, false);
    const on = loadConfig(['--ui', 'on'], { UI: 'off' });
    assert.ok(on !== 'help');
    assert.equal(on.ui, true);
    assert.throws(() => loadConfig([], { UI: 'no' }), (e: unknown) => e instanceof ConfigError && e.message === 'UI must be on or off, got "no"');
  });

  it('reads the environment, and a flag wins over its variable', () => {
    const env = { ETCD_ENDPOINTS: 'http://10.0.0.1:2379, http://10.0.0.2:2379', PORT: '9000', HOST: '::1' };
    const fromEnv = loadConfig([], env);
    assert.ok(fromEnv !== 'help');
    assert.deepEqual(fromEnv.endpoints, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
    assert.equal(fromEnv.port, 9000);
    assert.equal(fromEnv.host, '::1');
    const fromFlags = loadConfig(['--port', '9100', '--etcd-endpoints=https://e:2379', '--log-level', 'warn'], env);
    assert.ok(fromFlags !== 'help');
    assert.equal(fromFlags.port, 9100);
    assert.deepEqual(fromFlags.endpoints, ['https://e:2379']);
    assert.equal(fromFlags.logLevel, 'warn');
  });

  it('answers --help with the usage, listing every variable', () => {
    assert.equal(loadConfig(['--help'], {}), 'help');
    for (const name of ['ETCD_ENDPOINTS', 'ETCD_USERNAME', 'ETCD_PASSWORD', 'LOCK_WAIT_MS', 'SHUTDOWN_GRACE_MS', 'CORS_ORIGINS', 'RATE_LIMIT', 'RATE_LIMIT_BURST', 'ACCESS_FILE', 'MAX_HEADER_BYTES', 'HEADERS_TIMEOUT_MS', 'REQUEST_READ_TIMEOUT_MS', 'KEEPALIVE_TIMEOUT_MS', 'MAX_CONNECTIONS', 'HTTP_FAST_LANE', 'PORT', 'HOST', 'REQUEST_TIMEOUT_MS', 'MAX_BODY_BYTES', 'DATA_DIR', 'LOG_LEVEL', 'WATCH_STREAMS', 'MAX_WATCHES_PER_CONNECTION', 'MAX_WATCH_CONNECTIONS', 'MAX_STREAMS_PER_CLIENT', 'MAX_WATCHES_PER_CLIENT', 'MAX_KEEPALIVES_PER_CLIENT', 'SEND_BUFFER_BYTES', 'WS_PING_INTERVAL_MS', 'WATCH_HEARTBEAT_MS', 'TLS_CERT_FILE', 'TLS_KEY_FILE', 'TLS_CLIENT_CA_FILE', 'ETCD_CA_FILE', 'ETCD_CERT_FILE', 'ETCD_KEY_FILE']) {
      assert.match(usage(), new RegExp(name));
    }
  });

  it('takes 0 for "no limit" on the request timeouts, and any head timeout with no request limit', () => {
    const c = loadConfig([], { HEADERS_TIMEOUT_MS: '0', REQUEST_READ_TIMEOUT_MS: '0' });
    assert.ok(c !== 'help');
    assert.equal(c.headersTimeoutMs, 0);
    assert.equal(c.requestReadTimeoutMs, 0);
    const d = loadConfig(['--headers-timeout-ms', '60000'], { REQUEST_READ_TIMEOUT_MS: '0' });
    assert.ok(d !== 'help');
    assert.equal(d.headersTimeoutMs, 60000);
  });

  it('turns the fast lane off with HTTP_FAST_LANE=off or --http-fast-lane off', () => {
    for (const [argv, env] of [[[], { HTTP_FAST_LANE: 'off' }], [['--http-fast-lane', 'OFF'], { HTTP_FAST_LANE: 'on' }]] as const) {
      const c = loadConfig([...argv], env);
      assert.ok(c !== 'help');
      assert.equal(c.httpFastLane, false);
    }
  });

  it('refuses bad values, naming the setting', () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [[], { PORT: 'eighty' }, /PORT must be a whole number/],
      [[], { PORT: '70000' }, /PORT must be between 0 and 65535/],
      [[], { ETCD_ENDPOINTS: 'localhost:2379' }, /ETCD_ENDPOINTS: "localhost:2379" must start with http:\/\/ or https:\/\//],
      [[], { ETCD_ENDPOINTS: 'http://a' }, /has no port/],
      [[], { ETCD_ENDPOINTS: 'http://a:1,https://b:2' }, /mixes http/],
      [[], { REQUEST_TIMEOUT_MS: '0' }, /REQUEST_TIMEOUT_MS must be between/],
      [[], { LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
      [['--bogus'], {}, /Unknown option '--bogus'/],
      [[], { CORS_ORIGINS: 'https://a.example/path' }, /CORS_ORIGINS: "https:\/\/a.example\/path" is not an origin \(expected https:\/\/a.example\)/],
      [[], { RATE_LIMIT: '-1' }, /RATE_LIMIT must be a whole number/],
      [[], { HEADERS_TIMEOUT_MS: '20000', REQUEST_READ_TIMEOUT_MS: '10000' }, /HEADERS_TIMEOUT_MS \(20000\) must not be longer than REQUEST_READ_TIMEOUT_MS \(10000\)/],
      [[], { KEEPALIVE_TIMEOUT_MS: '0' }, /KEEPALIVE_TIMEOUT_MS must be between 1 and/],
      [[], { HTTP_FAST_LANE: 'false' }, /HTTP_FAST_LANE must be on or off, got "false"/],
    ];
    for (const [argv, env, message] of cases) assert.throws(() => loadConfig(argv, env), (e: unknown) => e instanceof ConfigError && message.test(e.message));
  });
});
