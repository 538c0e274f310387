// Cluster membership and leadership transfer. Membership changes go to etcd's gateway on one fresh
// etcd and to this gateway on another; member IDs and URLs differ between the two and are masked.
// Leadership transfer needs several members: a real three-member cluster.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertSameAnswer, send, startDifferentialPair, startGateway, type Answer, type GatewayFixture } from '../support/gateway';
import { replaceStrings } from '../support/masking';
import { startTestEtcdCluster, type TestEtcd, type TestEtcdCluster } from '../support/etcd';

function byMaskedId(body: unknown): unknown {
  const b = body as { members?: Array<{ ID: string }> };
  if (!b || !Array.isArray(b.members)) return body;
  return { ...b, members: [...b.members].sort((x, y) => x.ID.localeCompare(y.ID)) };
}

describe('cluster membership, identical to etcd gateway answers', () => {
  let reference: TestEtcd;
  let gw: GatewayFixture;
  let close: () => Promise<void>;
  before(async () => {
    ({ reference, gw, close } = await startDifferentialPair());
  });
  after(() => close?.());

  /** The IDs and URLs each side's members have, mapped to names that are the same on both sides. */
  async function identities(base: string, learnerId?: string): Promise<Record<string, string>> {
    const list = await send(base, '/v3/cluster/member/list', {});
    // The running member is the one with a name (etcd 3.4's member/update drops a learner's isLearner).
    const self = list.body.members.find((m: { name?: string }) => m.name);
    const map: Record<string, string> = { [self.ID]: 'SELF', [self.peerURLs[0]]: 'SELF-PEER', [self.clientURLs[0]]: 'SELF-CLIENT', [list.body.header.cluster_id]: 'CLUSTER' };
    if (learnerId) map[learnerId] = 'LEARNER';
    return map;
  }

  async function both(path: string, body: object | ((learner: string | undefined) => object), learners: { theirs?: string; ours?: string }): Promise<[Answer, Answer]> {
    const make = (l?: string): object => (typeof body === 'function' ? body(l) : body);
    const theirs = await send(reference.clientUrl, path, make(learners.theirs));
    const ours = await gw.post(path, make(learners.ours));
    assert.equal(ours.status, theirs.status, `${path}: ${ours.text} vs ${theirs.text}`);
    // etcd derives a new member's ID from its URLs and the second it was added: mask it per side.
    if (theirs.body.member) learners.theirs = theirs.body.member.ID;
    if (ours.body.member) learners.ours = ours.body.member.ID;
    const [mt, mo] = await Promise.all([identities(reference.clientUrl, learners.theirs), identities(gw.url, learners.ours)]);
    // etcd lists members by ID, and IDs are random: compare in the order of the masked names, after
    // checking that ours are sorted by ID as etcd sorts them.
    const ids = ((ours.body.members ?? []) as Array<{ ID: string }>).map((m) => BigInt(m.ID));
    assert.deepEqual(ids, [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), `${path}: members sorted by ID`);
    assertSameAnswer(byMaskedId(replaceStrings(theirs.body, mt)), byMaskedId(replaceStrings(ours.body, mo)), path);
    return [theirs, ours];
  }

  it('adds a learner, refuses what etcd refuses, updates, promotes and removes', async () => {
    const learners: { theirs?: string; ours?: string } = {};
    await both('/v3/cluster/member/add', { peerURLs: ['http://127.0.0.1:1'], isLearner: true }, learners);
    assert.ok(learners.theirs && learners.ours, 'a learner was added on both sides');
    // A second add of the same URLs within the same wall-clock second derives the same member ID, and
    // etcd then says "member ID already exist" rather than "Peer URLs already exists": let the second
    // turn on both sides so that the answer to compare is the URL check.
    await new Promise((r) => setTimeout(r, 1050 - (Date.now() % 1000)));
    await both('/v3/cluster/member/add', { peerURLs: ['http://127.0.0.1:1'], isLearner: true }, learners);
    await both('/v3/cluster/member/add', { peerURLs: ['http://127.0.0.1:2'], isLearner: true }, learners);
    await both('/v3/cluster/member/add', { peerURLs: ['not a url'], isLearner: true }, learners);
    await both('/v3/cluster/member/add', {}, learners);
    await both('/v3/cluster/member/promote', (l) => ({ ID: l }), learners);
    await both('/v3/cluster/member/promote', { ID: 12345 }, learners);
    await both('/v3/cluster/member/update', (l) => ({ ID: l, peerURLs: ['http://127.0.0.1:3'] }), learners);
    await both('/v3/cluster/member/update', { ID: '12345', peerURLs: ['http://127.0.0.1:4'] }, learners);
    await both('/v3/cluster/member/remove', {}, learners);
    await both('/v3/cluster/member/remove', (l) => ({ ID: l }), learners);
    await both('/v3/cluster/member/list', {}, learners);
  });

  it('keeps 64-bit member IDs exact, as numbers or strings', async () => {
    const [, ours] = await both('/v3/cluster/member/remove', { ID: 18446744073709551615n.toString() }, {});
    assert.equal(ours.status, 404);
    const big = await gw.post('/v3/cluster/member/remove', '{"ID":18446744073709551615}');
    assert.equal(big.status, 404, big.text);
    const over = await gw.post('/v3/cluster/member/remove', '{"ID":18446744073709551616}');
    assert.deepEqual(over.body.message, '/ID: 18446744073709551616 is out of range for a uint64');
    const negative = await gw.post('/v3/cluster/member/remove', { ID: '-1' });
    assert.equal(negative.status, 400);
  });
});

describe('leadership transfer on a three-member cluster', () => {
  let cluster: TestEtcdCluster;
  let gws: GatewayFixture[] = [];
  before(async () => {
    cluster = await startTestEtcdCluster(3);
    gws = await Promise.all(cluster.members.map((m) => startGateway({ etcd: m as TestEtcd, endpoints: [m.clientUrl] })));
  });
  after(async () => {
    for (const g of gws) await g.close();
    await cluster?.cleanup();
  });

  it('moves leadership from the leader to another member, and a follower refuses as etcd does', async () => {
    const status = await Promise.all(gws.map((g) => g.post('/v3/maintenance/status', {})));
    const leaderId = status[0].body.leader;
    const leaderAt = status.findIndex((s) => s.body.header.member_id === leaderId);
    const follower = status.findIndex((s, i) => i !== leaderAt && s.body.header.member_id);
    const target = status[follower].body.header.member_id;
    const refused = await gws[follower].post('/v3/maintenance/transfer-leadership', { targetID: target });
    const refusedByEtcd = await send(cluster.members[follower].clientUrl, '/v3/maintenance/transfer-leadership', { targetID: target });
    assert.equal(refused.status, 412);
    assert.deepEqual(refused.body, refusedByEtcd.body);
    const moved = await gws[leaderAt].post('/v3/maintenance/transfer-leadership', { targetID: target });
    assert.equal(moved.status, 200, moved.text);
    assert.deepEqual(moved.body, {});
    const after = await gws[follower].post('/v3/maintenance/status', {});
    assert.equal(after.body.leader, target);
  });
});
