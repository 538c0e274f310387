// One error type for everything the gateway answers with a non-2xx status, shaped as etcd's gateway
// shapes it: {"error": m, "message": m, "code": grpcCode}, HTTP status from grpc-gateway v1's table.

export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** grpc-gateway v1 `HTTPStatusFromCode`, which etcd 3.4's gateway uses. */
const HTTP_STATUS_BY_CODE: readonly number[] = [
  200, 408, 500, 400, 504, 404, 409, 403, 429, 412, 409, 400, 501, 500, 503, 500, 401,
];

export function httpStatusFromGrpcCode(code: number): number {
  return HTTP_STATUS_BY_CODE[code] ?? 500;
}

export class GatewayError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** Set when the HTTP status is not the one grpc-gateway derives from `code` (413, 404 routes...). */
    readonly httpStatusOverride?: number,
  ) {
    super(message);
  }

  get httpStatus(): number {
    return this.httpStatusOverride ?? httpStatusFromGrpcCode(this.code);
  }

  body(): { error: string; message: string; code: number } {
    return { error: this.message, message: this.message, code: this.code };
  }
}

export function invalidArgument(message: string): GatewayError {
  return new GatewayError(GrpcCode.INVALID_ARGUMENT, message);
}

/** etcd's answers for a request caught in a leader change or loss. Most of etcd's servers send them as
 *  UNAVAILABLE; a few (Maintenance.Alarm, among others, in 3.4) pass them on unconverted, as code 2
 *  (UNKNOWN, a 500). They are an etcd fault that passes, and get the UNAVAILABLE (503) the others get. */
const TRANSIENT_ETCD_ERRORS = new Set([
  'raft proposal dropped',
  'etcdserver: request timed out',
  'etcdserver: request timed out, possibly due to previous leader failure',
  'etcdserver: request timed out, possibly due to connection lost',
  'etcdserver: leader changed',
  'etcdserver: no leader',
]);

/** Ordinary conditions that etcd's lock and election services report as code 2 (UNKNOWN, a 500): a
 *  500 means the gateway or etcd is failing, so they get the code of what they are. etcd's message is
 *  kept. (etcd's own gateway answers them with 500; listed in the README's differences.) */
const ORDINARY_ETCD_ERRORS = new Map<string, number>([
  // Election_Leader (and Observe's first answer) when nobody campaigns.
  ['election: no leader', GrpcCode.NOT_FOUND],
  // Proclaim with a leader key or revision that is not the leader's.
  ['election: not leader', GrpcCode.FAILED_PRECONDITION],
  // A campaign or lock on a lease that does not exist (expired or revoked); etcd's KV and lease
  // services already say it with code 5.
  ['etcdserver: requested lease not found', GrpcCode.NOT_FOUND],
  // Proclaim or resign without a leader key.
  ['"leader" field must be provided', GrpcCode.INVALID_ARGUMENT],
  // etcd auth on and no token: the maintenance, lock and election services pass the auth store's
  // error on unconverted; the KV service says the same with code 3.
  ['auth: user name is empty', GrpcCode.INVALID_ARGUMENT],
  ['etcdserver: user name is empty', GrpcCode.INVALID_ARGUMENT],
  ['auth: invalid auth token', GrpcCode.UNAUTHENTICATED],
  ['auth: permission denied', GrpcCode.PERMISSION_DENIED],
  ['etcdserver: permission denied', GrpcCode.PERMISSION_DENIED],
  // A campaign or lock whose lease expired while it waited.
  ['election: session expired', GrpcCode.NOT_FOUND],
  ['mutex: session is expired', GrpcCode.NOT_FOUND],
]);

interface GrpcLikeError {
  code?: unknown;
  details?: unknown;
  message?: unknown;
}

/** Turns whatever a gRPC call rejected with into a GatewayError, keeping etcd's code and message. */
export function fromGrpcError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = (err ?? {}) as GrpcLikeError;
  if (typeof e.code === 'number' && e.code >= 0 && e.code <= 16) {
    const details = typeof e.details === 'string' && e.details ? e.details : String(e.message ?? '');
    // e.g. etcd drops a proposal caught in a leader change and says so with code 2 (UNKNOWN, a 500): an
    // etcd fault that passes, not an unknown error.
    if (e.code === GrpcCode.UNKNOWN && TRANSIENT_ETCD_ERRORS.has(details)) return new GatewayError(GrpcCode.UNAVAILABLE, details);
    const ordinary = e.code === GrpcCode.UNKNOWN ? ORDINARY_ETCD_ERRORS.get(details) : undefined;
    if (ordinary !== undefined) return new GatewayError(ordinary, details);
    return new GatewayError(e.code, describeTransportError(e.code, details));
  }
  return new GatewayError(GrpcCode.INTERNAL, err instanceof Error ? err.message : String(err));
}

/** etcd's own messages pass through untouched; grpc-js's transport messages get a prefix that says the
 *  gateway could not reach etcd, since a client reading "No connection established" cannot tell who failed. */
function describeTransportError(code: number, details: string): string {
  if (code === GrpcCode.UNAVAILABLE && !details.startsWith('etcdserver:')) return `etcd unavailable: ${details}`;
  if (code === GrpcCode.DEADLINE_EXCEEDED && details.startsWith('Deadline exceeded')) {
    // grpc-js appends timings and the member's address; the client needs only what happened.
    return 'context deadline exceeded: the gateway stopped waiting for etcd';
  }
  return details;
}
