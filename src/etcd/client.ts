// All access to etcd goes through this module. Unary calls go over its own HTTP/2 transport
// (unary-channel.ts); streams use the `etcd3` package's generated grpc-js service clients (one HTTP/2
// connection per endpoint). It owns what etcd3's pool gets wrong for a gateway: no automatic retry of
// writes, a deadline on every attempt, keepalive pings to notice dead members, no circuit breaker that
// blocks a healthy member, and gRPC codes kept intact.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { installFastLongStrings } from '../core/contract/int64';
import { Host } from 'etcd3/lib/connection-pool';
import { fromGrpcError, GatewayError, GrpcCode } from '../core/errors';
import { UnaryChannel, unaryError, type Cancellation, type UnaryError } from './unary-channel';

/** Channels kept to members that are not configured endpoints (a cluster has a handful of members). */
const MEMBER_CHANNELS = 16;

export type Service = 'KV' | 'Watch' | 'Lease' | 'Cluster' | 'Maintenance' | 'Auth' | 'Lock' | 'Election';

type ServiceClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

interface MethodCodec {
  path: string;
  serialize(request: unknown): Buffer;
  deserialize(answer: Buffer): unknown;
}

interface Definitions {
  /** By `Service.Method`: the gRPC path and proto-loader's (de)serializers, as grpc-js would use them. */
  methods: Map<string, MethodCodec>;
  /** grpc-js clients for the lock and election services, which the etcd3 package does not have. */
  Lock: grpc.ServiceClientConstructor;
  Election: grpc.ServiceClientConstructor;
}

const PACKAGE_OF: Record<Service, string> = {
  KV: 'etcdserverpb',
  Watch: 'etcdserverpb',
  Lease: 'etcdserverpb',
  Cluster: 'etcdserverpb',
  Maintenance: 'etcdserverpb',
  Auth: 'etcdserverpb',
  Lock: 'v3lockpb',
  Election: 'v3electionpb',
};

/** etcd's rpc.proto (from the etcd3 package) and our lock and election protos, which import it, loaded
 *  with the etcd3 package's options, so every message decodes as its own clients decode them. */
function loadDefinitions(): Definitions {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'proto', 'v3lock.proto'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('proto/v3lock.proto not found');
    dir = up;
  }
  installFastLongStrings();
  const rpcProto = require.resolve('etcd3/proto/rpc.proto');
  const def = protoLoader.loadSync([rpcProto, path.join(dir, 'proto', 'v3lock.proto'), path.join(dir, 'proto', 'v3election.proto')], {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [path.dirname(rpcProto)],
  });
  const methods = new Map<string, MethodCodec>();
  for (const [service, pkg] of Object.entries(PACKAGE_OF)) {
    const definition = def[`${pkg}.${service}`] as protoLoader.ServiceDefinition | undefined;
    if (!definition) throw new Error(`${pkg}.${service} is not in the protos`);
    for (const [method, m] of Object.entries(definition)) {
      methods.set(`${service}.${method}`, { path: m.path, serialize: m.requestSerialize, deserialize: m.responseDeserialize });
    }
  }
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    v3lockpb: { Lock: grpc.ServiceClientConstructor };
    v3electionpb: { Election: grpc.ServiceClientConstructor };
  };
  return { methods, Lock: pkg.v3lockpb.Lock, Election: pkg.v3electionpb.Election };
}

let definitions: Definitions | undefined;

export interface EtcdClientOptions {
  endpoints: string[];
  /** Deadline of one request to etcd, all attempts included. */
  requestTimeoutMs: number;
  /** The gateway's own etcd user, for requests that carry no token of their own. */
  username?: string;
  password?: string;
  /** TLS to etcd: CA certificates to verify etcd with (default: the system's), and a client certificate
   *  and key (both or neither) for etcd's --client-cert-auth. https:// endpoints use TLS even without it. */
  tls?: EtcdTlsOptions;
}

export interface EtcdTlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface CallOptions {
  /** Reads may be sent again to another member when one is unavailable; writes never are. */
  idempotent: boolean;
  metadata?: grpc.Metadata;
  /** Absolute deadline (ms since epoch); defaults to now + requestTimeoutMs. */
  deadline?: number;
  signal?: Cancellation;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // etcd answers up to max-request-bytes + 512 KiB by default, and more when configured: never cap replies.
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  // etcd refuses client pings more often than every 5 s (--grpc-keepalive-min-time), and any ping on a
  // connection without calls (it then closes the connection for "too many pings"): a ping every 6 s
  // while streams are open, 3 s to answer, notices a hung member within ~9 s, and moves its watches.
  'grpc.keepalive_time_ms': 6_000,
  'grpc.keepalive_timeout_ms': 3_000,
  'grpc.keepalive_permit_without_calls': 0,
  // Reconnect quickly after an etcd restart rather than backing off for up to two minutes.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
};

/** etcd refused the gateway's own token before doing anything: sign in again and send once more. */
function needsSignIn(err: UnaryError): boolean {
  return err.code === GrpcCode.UNAUTHENTICATED || (err.code === GrpcCode.INVALID_ARGUMENT && err.details === 'etcdserver: user name is empty');
}

/** `work`, or DEADLINE_EXCEEDED when `deadline` comes first (work shared with other requests goes on). */
function untilDeadline(work: Promise<void>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(fromGrpcError(unaryError(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded'))), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/** Ends a stream the gateway no longer wants: no more messages are handled, and etcd is told. */
export function endStream(call: grpc.ClientDuplexStream<unknown, unknown> | undefined): void {
  if (!call) return;
  call.removeAllListeners('data');
  call.end();
  call.cancel();
}

/** Told about every unary call: for metrics. `code` is the gRPC code (0 for success). */
export type CallObserver = (service: Service, method: string, code: number, seconds: number) => void;

export class EtcdClient {
  observer?: CallObserver;
  private readonly hosts: Host[];
  /** Unary calls: one lean HTTP/2 connection per member. */
  private readonly channels: UnaryChannel[];
  /** Channels to members that are not configured endpoints, by host:port (unaryAt). */
  private readonly memberChannels = new Map<string, UnaryChannel>();
  /** Loaded once per process, shared by every client. */
  private readonly definitions: Definitions;
  private readonly ownClients = new Map<string, ServiceClient>();
  /** Requests stick to one member until it fails, so a client reads its own writes from one place. */
  private current = 0;
  /** The token of the gateway's own etcd user, when one is configured and etcd has auth enabled. */
  private gatewayToken?: grpc.Metadata;
  /** The sign-in in flight: every request that finds the token rejected waits for this one. */
  private signingIn?: Promise<void>;
  /** Whether the channels to etcd use TLS (https:// endpoints, or TLS options given). */
  readonly secure: boolean;
  /** One credentials object for every channel, so grpc-js keeps one connection per member. */
  private readonly credentials: grpc.ChannelCredentials;
  /** For etcd's HTTP side (/version): the same CA and client certificate as the gRPC channels. */
  private readonly httpAgent: http.Agent;

  constructor(readonly options: EtcdClientOptions) {
    if (options.endpoints.length === 0) throw new Error('no etcd endpoints');
    const { tls } = options;
    this.secure = Boolean(tls) || options.endpoints.some((e) => /^https:\/\//i.test(e));
    this.credentials = this.secure ? grpc.credentials.createSsl(tls?.ca ?? null, tls?.key ?? null, tls?.cert ?? null) : grpc.credentials.createInsecure();
    this.httpAgent = this.secure ? new https.Agent({ ca: tls?.ca, cert: tls?.cert, key: tls?.key }) : new http.Agent();
    const noRetry = { execute: <T>(fn: () => T) => fn() };
    this.hosts = options.endpoints.map(
      (e) => new Host(e, this.credentials, CHANNEL_OPTIONS, noRetry as unknown as ConstructorParameters<typeof Host>[3]),
    );
    this.channels = options.endpoints.map((e) => new UnaryChannel(e, this.secure, tls));
    this.definitions = definitions ??= loadDefinitions();
  }

  /** GETs a JSON document from the HTTP side of the current member (e.g. `/version`), over TLS with the
   *  same CA and client certificate as gRPC when that is on; rejects after `timeoutMs`. */
  httpJson(urlPath: string, timeoutMs: number): Promise<unknown> {
    const base = this.currentEndpoint.replace(/^https?:\/\//i, this.secure ? 'https://' : 'http://');
    const url = new URL(urlPath, base);
    const get = this.secure ? https.get : http.get;
    return new Promise((resolve, reject) => {
      const req = get(url, { agent: this.httpAgent, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`${url.pathname}: HTTP ${res.statusCode}`));
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch (e) {
            reject(e as Error);
          }
        });
      });
      req.on('error', reject);
    });
  }

  /** One unary gRPC call; rejects with a GatewayError carrying etcd's code and message. */
  unary<T = Record<string, unknown>>(service: Service, method: string, request: unknown, opts: CallOptions): Promise<T> {
    // Not itself async: an async function returning a promise adds a promise and two turns of the
    // microtask queue to every request.
    if (opts.metadata || !this.options.username) return this.unaryAttempts<T>(service, method, request, opts);
    return this.unaryAsGateway<T>(service, method, request, opts);
  }

  /** A call with the gateway's own etcd credentials, signing in again once when etcd asks for it; one
   *  deadline for all of it (attempt, sign-in, and the call sent again). */
  private async unaryAsGateway<T>(service: Service, method: string, request: unknown, opts: CallOptions): Promise<T> {
    const deadline = opts.deadline ?? Date.now() + this.options.requestTimeoutMs;
    const token = this.gatewayToken;
    try {
      return await this.unaryAttempts<T>(service, method, request, { ...opts, deadline, metadata: token });
    } catch (e) {
      const cause = (e as { cause?: UnaryError }).cause;
      if (!cause || !needsSignIn(cause)) throw e;
      // Someone signed in since this call was sent: its new token is the one to try.
      if (this.gatewayToken === token) await untilDeadline(this.signIn(deadline), deadline);
      return this.unaryAttempts<T>(service, method, request, { ...opts, deadline, metadata: this.gatewayToken });
    }
  }

  /** Authenticates the gateway's own etcd user; without auth enabled in etcd there is no token to get.
   *  One sign-in at a time: etcd checks the password with bcrypt, and a sign-in per waiting request
   *  when etcd forgot the token (--auth-token-ttl, a changed password) kept etcd saturated. */
  signIn(deadline?: number): Promise<void> {
    this.signingIn ??= this.authenticate(deadline).finally(() => (this.signingIn = undefined));
    return this.signingIn;
  }

  private async authenticate(deadline: number | undefined): Promise<void> {
    const { username, password } = this.options;
    if (!username) return;
    try {
      const answer = await this.unaryAttempts<{ token: string }>('Auth', 'Authenticate', { name: username, password: password ?? '' }, { idempotent: true, deadline });
      const md = new grpc.Metadata();
      md.set('token', answer.token);
      this.gatewayToken = md;
    } catch (e) {
      if (/authentication is not enabled/.test((e as Error).message)) this.gatewayToken = undefined;
      else throw e;
    }
  }

  /** One unary call to one member, named by a client URL of its own (as the member list gives them):
   *  for what only that member can say (its Status). No other member is tried. A URL that is one of the
   *  configured endpoints uses its channel; others get a channel of their own, kept for the next ask
   *  (at most MEMBER_CHANNELS of them, the oldest closed first). */
  unaryAt<T = Record<string, unknown>>(endpoint: string, service: Service, method: string, request: unknown, opts: Omit<CallOptions, 'idempotent'>): Promise<T> {
    return this.unaryAttempts<T>(service, method, request, { ...opts, idempotent: true, metadata: opts.metadata ?? this.gatewayToken }, endpoint);
  }

  private channelAt(endpoint: string): UnaryChannel {
    const url = new URL(endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new GatewayError(GrpcCode.INVALID_ARGUMENT, `${endpoint}: not an http(s) URL`);
    const hostPort = (u: URL): string => `${u.hostname}:${u.port || (this.secure ? '443' : '80')}`;
    const key = hostPort(url);
    const configured = this.options.endpoints.findIndex((e) => hostPort(new URL(/^[a-z]+:\/\//i.test(e) ? e : `http://${e}`)) === key);
    if (configured >= 0) return this.channels[configured];
    let channel = this.memberChannels.get(key);
    if (channel) {
      // Most recently used last: the oldest is the first to go.
      this.memberChannels.delete(key);
    } else {
      channel = new UnaryChannel(endpoint, this.secure, this.options.tls);
      if (this.memberChannels.size >= MEMBER_CHANNELS) {
        const [oldest, old] = this.memberChannels.entries().next().value as [string, UnaryChannel];
        this.memberChannels.delete(oldest);
        old.close();
      }
    }
    this.memberChannels.set(key, channel);
    return channel;
  }

  /** Credentials for streams opened on behalf of clients that sent none. */
  defaultMetadata(): grpc.Metadata | undefined {
    return this.gatewayToken;
  }

  /** The attempts of one call: the same request to each member in turn while it is a read or etcd
   *  provably never saw it, within one deadline. One async function for all of it (the request encoded
   *  once): the layers it replaced each cost a promise and a suspension per request. */
  private async unaryAttempts<T>(service: Service, method: string, request: unknown, opts: CallOptions, endpoint?: string): Promise<T> {
    const started = performance.now();
    const deadline = opts.deadline ?? Date.now() + this.options.requestTimeoutMs;
    let lastError: unknown;
    try {
      const codec = this.definitions.methods.get(`${service}.${method}`);
      if (!codec) throw new Error(`no gRPC method ${service}.${method}`);
      let headers: Record<string, string> | undefined;
      if (opts.metadata) {
        for (const [k, v] of Object.entries(opts.metadata.getMap())) if (typeof v === 'string') (headers ??= {})[k] = v;
      }
      const message = codec.serialize(request);
      if (endpoint !== undefined) {
        // One member named by its URL (unaryAt): only it is asked; its failure is the answer.
        const answer = codec.deserialize(await this.channelAt(endpoint).call(codec.path, message, headers, deadline, opts.signal)) as T;
        this.observer?.(service, method, 0, (performance.now() - started) / 1000);
        return answer;
      }
      // Counted from the member asked first: a failure moves `current` on, which must not make the next
      // attempt skip a member (or, with two, ask the failed one again).
      const first = this.current;
      for (let attempt = 0; attempt < this.hosts.length; attempt++) {
        const index = (first + attempt) % this.hosts.length;
        try {
          const answer = codec.deserialize(await this.channels[index].call(codec.path, message, headers, deadline, opts.signal)) as T;
          this.observer?.(service, method, 0, (performance.now() - started) / 1000);
          return answer;
        } catch (e) {
          const err = e as UnaryError;
          lastError = err;
          // A member that did not answer (down, hung, cut off) is not asked first by the next request, even
          // when this one is a write that may not be sent again: otherwise a hung member fails every write.
          const memberFailed = err.code === GrpcCode.UNAVAILABLE || err.code === GrpcCode.DEADLINE_EXCEEDED;
          if (memberFailed && this.current === index) this.current = (index + 1) % this.hosts.length;
          // Only a read, or a request that provably never reached etcd, is sent to another member.
          const retryable = err.code === GrpcCode.UNAVAILABLE && (opts.idempotent || err.neverSent === true);
          if (!retryable || Date.now() >= deadline) break;
        }
      }
    } catch (e) {
      // The request could not be encoded (or named no method), or the one member named failed.
      lastError = e;
    }
    const failure = Object.assign(fromGrpcError(lastError), { cause: lastError as UnaryError | undefined });
    this.observer?.(service, method, failure.code ?? GrpcCode.UNKNOWN, (performance.now() - started) / 1000);
    throw failure;
  }

  /** A service client on one member; lock and election ride on the member's existing channel. */
  private client(index: number, service: Service): ServiceClient {
    const host = this.hosts[index];
    if (service !== 'Lock' && service !== 'Election') return host.getServiceClient(service) as unknown as ServiceClient;
    const key = `${index}/${service}`;
    let client = this.ownClients.get(key);
    if (!client) {
      const channel = (host.getServiceClient('KV') as unknown as grpc.Client).getChannel();
      // The override channel carries the member's credentials (TLS included); these are not used.
      client = new this.definitions[service](this.options.endpoints[index].replace(/^https?:\/\//, ''), this.credentials, {
        channelOverride: channel,
      }) as ServiceClient;
      this.ownClients.set(key, client);
    }
    return client;
  }

  /** Opens a bidirectional stream (Watch.Watch, Lease.LeaseKeepAlive) on the current member. The caller
   *  reports a broken stream with `streamFailed`, so the next one goes to another member. */
  openStream(service: Service, method: string, metadata: grpc.Metadata): { call: grpc.ClientDuplexStream<unknown, unknown>; host: number } {
    const host = this.current;
    const client = this.client(host, service) as unknown as Record<
      string,
      (md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientDuplexStream<unknown, unknown>
    >;
    return { call: client[method].call(client, metadata, {}), host };
  }

  /** Opens a server stream (Maintenance.Snapshot, Election.Observe) on the current member. */
  serverStream(service: Service, method: string, request: unknown, metadata?: grpc.Metadata): grpc.ClientReadableStream<unknown> {
    const client = this.client(this.current, service) as unknown as Record<
      string,
      (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<unknown>
    >;
    return client[method].call(client, request, metadata ?? new grpc.Metadata(), {});
  }

  streamFailed(host: number): void {
    if (this.current === host) this.current = (host + 1) % this.hosts.length;
  }

  /** The client URL of the member requests currently go to (for messages and /version). */
  get currentEndpoint(): string {
    return this.options.endpoints[this.current];
  }

  close(): void {
    for (const client of this.ownClients.values()) client.close();
    for (const host of this.hosts) host.close();
    for (const channel of this.channels) channel.close();
    for (const channel of this.memberChannels.values()) channel.close();
    this.httpAgent.destroy();
  }
}
