// What Swagger UI's "Try it out" sends for each operation, pre-filled from openapi.yaml, must succeed
// on the first try. These are the few that cannot on any cluster a newcomer has, each with the answer
// it gets instead and why. test/swagger-ui.test.ts (the page itself) and test/openapi.test.ts (the
// examples sent directly) both hold the spec to this list.

/** The lease the examples name: `POST /v3/lease/grant` with its `withId` example makes it. */
export const EXAMPLE_LEASE = '1000';

export interface ExpectedAnswer {
  /** The HTTP status, when it is settled; otherwise the message says what went wrong. */
  status?: number;
  message: RegExp;
  reason: string;
}

export const EXPECTED_FAILURES: Record<string, ExpectedAnswer> = {
  Cluster_MemberRemove: { status: 404, message: /member not found/, reason: 'needs the ID of a member from /v3/cluster/member/list: IDs are random, no example can name one' },
  Cluster_MemberUpdate: { status: 404, message: /member not found/, reason: 'needs the ID of a member from /v3/cluster/member/list' },
  Cluster_MemberPromote: { status: 404, message: /member not found/, reason: 'needs the ID of a learner from /v3/cluster/member/list' },
  Maintenance_MoveLeader: { status: 412, message: /bad leader transferee/, reason: 'needs the ID of another voting member; a single-member cluster has none' },
  Auth_AuthEnable: { status: 412, message: /root user does not exist/, reason: 'needs a root user with the root role; once on, every request Swagger UI sends (with no token) would be refused' },
  Auth_Authenticate: { status: 412, message: /authentication is not enabled/, reason: 'tokens exist only while auth is enabled (see Auth_AuthEnable)' },
  // Its status is etcd's code 2 today (issue 23 item 2 answers it as what it is): the message is the test.
  Election_Proclaim: { message: /election: not leader/, reason: 'needs the leader key and revision that the campaign answered, which no example can know' },
};
