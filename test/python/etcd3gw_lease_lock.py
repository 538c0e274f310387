#!/usr/bin/python3
"""Lease and lock checks of Debian's etcd3gw client (python3-etcd3gw) against an etcd JSON gateway.

Usage: /usr/bin/python3 test/python/etcd3gw_lease_lock.py http://127.0.0.1:12345 [API_PATHS]

Runs the same checks once per API path. API_PATHS is a comma-separated list of api_path values
for Etcd3Client, where "default" means constructing the client without api_path (etcd3gw 2.0.0's
default is '/v3alpha/'); when omitted it is "default,/v3/". etcd 3.4's own gateway serves only /v3/
and /v3beta/, so against etcd itself pass "/v3/".

What the client sends (etcd3gw 2.0.0):
  client.lease(ttl)   POST <api>lease/grant        {"TTL": ttl, "ID": 0}         -> int(result["ID"])
  lease.ttl()         POST <api>kv/lease/timetolive {"ID": id}                   -> int(result["TTL"])
  lease.keys()        POST <api>kv/lease/timetolive {"ID": id, "keys": true}     -> decoded result["keys"]
  lease.refresh()     POST <api>lease/keepalive    {"ID": id}  -> int(result["result"].get("TTL", -1))
  lease.revoke()      POST <api>kv/lease/revoke    {"ID": id}                    -> True
  client.put(k, v, lease=lease) / client.create(...)  put / txn with "lease": id
  client.lock(name, ttl) is not etcd's lock service (/v3/lock/lock): Lock.acquire() grants a lease
  of its own and runs one txn "create /locks/<name> = <uuid> with that lease if create_revision ==
  0"; it never waits, it answers False at once when the key exists. release() is a txn "delete the
  key if its value is my uuid"; refresh() is a keepalive of the lock's lease; is_acquired() reads
  the key.

Prints one "ok <api_path> <check>" line per passed check and "PASS <api_path>" after each round;
on the first failure prints "FAIL <api_path> <check>: <reason>" to stderr and exits 1. A missing
client exits 2 with the install hint. Every wait is bounded.
"""

import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import eq, main  # noqa: E402 - exits 2 with the install hint when etcd3gw is missing
from etcd3gw import exceptions  # noqa: E402

# Bound for a key on an expired TTL-2 lease to disappear: etcd's minimum TTL is ~2 s and its
# lessor checks for expired leases every 500 ms, so a few seconds suffice; this leaves slack.
EXPIRY_DEADLINE_S = 15.0
# Bound for a single request or a lock attempt (acquire() must answer, not wait for the holder).
PROMPT_S = 5.0


def run_round(client, make_client, prefix, check):
    run_lease_checks(client, prefix, check)
    run_lock_checks(client, prefix, check)
    check.start("cleanup")
    client.delete_prefix(prefix)
    eq(check, client.get_prefix(prefix), [], "nothing left under the test prefix")
    check.passed()


def wait_until(predicate, deadline_s, poll_s=0.2):
    """Polls predicate() until it is true or deadline_s passed; returns (result, seconds waited)."""
    start = time.monotonic()
    while True:
        if predicate():
            return True, time.monotonic() - start
        if time.monotonic() - start > deadline_s:
            return False, time.monotonic() - start
        time.sleep(poll_s)


def raw_timetolive(client, lease_id, keys=False):
    body = {"ID": lease_id}
    if keys:
        body["keys"] = True
    return client.post(client.get_url("/kv/lease/timetolive"), json=body)


def run_lease_checks(client, p, check):
    check.start("lease grant")
    lease = client.lease(ttl=60)
    check.ok(isinstance(lease.id, int) and lease.id > 0, "lease id should be a positive int: %r" % lease.id)
    check.ok(lease.client is client, "lease should keep its client")
    # The raw answer: ID and TTL are int64, so decimal strings on the wire.
    raw = client.post(client.get_url("/lease/grant"), json={"TTL": 60, "ID": 0})
    check.ok(isinstance(raw.get("ID"), str) and raw["ID"].isdigit(), "grant ID should be a decimal string: %r" % raw)
    eq(check, raw.get("TTL"), "60", "grant TTL")
    check.ok(isinstance(raw.get("header", {}).get("revision"), str), "grant header.revision: %r" % raw)
    other = client.lease(ttl=60)
    check.ok(other.id != lease.id, "two grants should give two leases: %r" % other.id)
    other.revoke()
    client.post(client.get_url("/kv/lease/revoke"), json={"ID": int(raw["ID"])})
    check.passed()

    check.start("lease ttl")
    ttl = lease.ttl()
    check.ok(isinstance(ttl, int) and 50 <= ttl <= 60, "ttl() of a fresh 60 s lease: %r" % ttl)
    raw = raw_timetolive(client, lease.id)
    eq(check, raw.get("ID"), str(lease.id), "timetolive ID (int64 lease IDs survive the round trip)")
    eq(check, raw.get("grantedTTL"), "60", "timetolive grantedTTL")
    check.ok("keys" not in raw, "no keys asked, none given: %r" % raw)
    check.passed()

    check.start("lease keys empty")
    eq(check, lease.keys(), [], "keys() of a lease without keys")
    check.passed()

    check.start("lease keys after put and create with lease=")
    eq(check, client.put(p + "leased/k1", "v1", lease=lease), True, "put return")
    eq(check, client.put(p + "leased/k2", b"v2", lease=lease), True, "put return")
    eq(check, client.create(p + "leased/k3", "v3", lease=lease), True, "create return")
    eq(check, sorted(lease.keys()), [(p + "leased/" + k).encode() for k in ("k1", "k2", "k3")],
       "keys() after attaching three keys")
    got = client.get(p + "leased/k1", metadata=True)
    eq(check, len(got), 1, "number of results")
    eq(check, got[0][1].get("lease"), str(lease.id), "metadata lease of a leased key")
    eq(check, client.get(p + "leased/k2"), [b"v2"], "value of a leased key")
    check.passed()

    check.start("lease refresh")
    eq(check, lease.refresh(), 60, "refresh() of a 60 s lease answers its full TTL")
    ttl = lease.ttl()
    check.ok(58 <= ttl <= 60, "ttl() right after refresh(): %r" % ttl)
    check.passed()

    check.start("lease revoke deletes its keys")
    eq(check, lease.revoke(), True, "revoke return")
    eq(check, client.get_prefix(p + "leased/"), [], "keys of the revoked lease")
    check.passed()

    check.start("revoked lease: ttl -1, no keys, refresh -1")
    eq(check, lease.ttl(), -1, "ttl() of a revoked lease")
    eq(check, lease.keys(), [], "keys() of a revoked lease")
    eq(check, lease.refresh(), -1, "refresh() of a revoked lease (keepalive answers without TTL)")
    check.passed()

    check.start("revoke of a revoked lease raises Etcd3Exception (404, NotFound)")
    try:
        lease.revoke()
    except exceptions.Etcd3Exception as exc:
        eq(check, type(exc), exceptions.Etcd3Exception, "exception type (404 is not in the client's code map)")
        eq(check, str(exc), "Not Found", "exception reason")
        body = json.loads(exc.detail_text)
        eq(check, body.get("code"), 5, "error code")
        eq(check, body.get("error"), "etcdserver: requested lease not found", "error text")
    else:
        check.ok(False, "second revoke() should raise")
    check.passed()

    check.start("key on a TTL-2 lease disappears after expiry")
    short = client.lease(ttl=2)
    ttl = short.ttl()
    check.ok(0 <= ttl <= 2, "ttl() of a 2 s lease: %r" % ttl)
    client.put(p + "short", "gone soon", lease=short)
    eq(check, client.get(p + "short"), [b"gone soon"], "value before expiry")
    eq(check, short.keys(), [(p + "short").encode()], "keys() before expiry")
    gone, waited = wait_until(lambda: client.get(p + "short") == [], EXPIRY_DEADLINE_S)
    check.ok(gone, "key still there %.1f s after its 2 s lease was granted" % waited)
    check.ok(waited >= 0.5, "key vanished after only %.2f s" % waited)
    ok, _ = wait_until(lambda: short.ttl() == -1, PROMPT_S)
    check.ok(ok, "ttl() of the expired lease should be -1, got %r" % short.ttl())
    eq(check, short.refresh(), -1, "refresh() of an expired lease")
    check.passed()

    check.start("refresh keeps a TTL-2 lease alive")
    kept = client.lease(ttl=2)
    client.put(p + "kept", "kept", lease=kept)
    start = time.monotonic()
    while time.monotonic() - start < 3.5:  # well past the 2 s TTL
        ttl = kept.refresh()
        check.ok(ttl == 2, "refresh() of a 2 s lease: %r" % ttl)
        time.sleep(0.5)
    eq(check, client.get(p + "kept"), [b"kept"], "value after refreshing past the TTL")
    gone, waited = wait_until(lambda: client.get(p + "kept") == [], EXPIRY_DEADLINE_S)
    check.ok(gone, "key still there %.1f s after the last refresh" % waited)
    check.passed()


def run_lock_checks(client, p, check):
    name = "etcd3gw-lock-%s" % uuid.uuid4().hex

    check.start("lock acquire")
    lock = client.lock(name, ttl=60)
    eq(check, lock.key, "/locks/" + name, "lock key")
    check.ok(lock.lease is None, "no lease before acquire()")
    eq(check, lock.is_acquired(), False, "is_acquired() before acquire()")
    eq(check, lock.acquire(), True, "acquire() of a free lock")
    eq(check, lock.is_acquired(), True, "is_acquired() after acquire()")
    eq(check, client.get(lock.key), [lock.uuid.encode()], "lock key holds the holder's uuid")
    eq(check, lock.lease.keys(), [lock.key.encode()], "the lock key is on the lock's lease")
    ttl = lock.lease.ttl()
    check.ok(50 <= ttl <= 60, "lock lease ttl(): %r" % ttl)
    check.passed()

    check.start("second lock on the same name fails while the first is held")
    second = client.lock(name, ttl=60)
    started = time.monotonic()
    eq(check, second.acquire(), False, "acquire() of a held lock")
    took = time.monotonic() - started
    check.ok(took < PROMPT_S, "acquire() of a held lock should answer at once, took %.1f s" % took)
    eq(check, second.is_acquired(), False, "second is_acquired()")
    eq(check, lock.is_acquired(), True, "first is_acquired()")
    eq(check, second.release(), False, "release() by the non-holder")
    eq(check, lock.is_acquired(), True, "first still holds after the non-holder's release()")
    eq(check, second.lease.keys(), [], "the failed attempt's lease holds no key")
    second.lease.revoke()  # acquire() grants a lease even when it fails
    check.passed()

    check.start("lock refresh")
    eq(check, lock.refresh(), 60, "refresh() of a 60 s lock")
    check.passed()

    check.start("lock release")
    eq(check, lock.release(), True, "release() by the holder")
    eq(check, lock.is_acquired(), False, "is_acquired() after release()")
    eq(check, client.get(lock.key), [], "lock key after release()")
    eq(check, lock.release(), False, "second release()")
    check.passed()

    check.start("second lock acquires after release")
    eq(check, second.acquire(), True, "acquire() of the released lock")
    eq(check, second.is_acquired(), True, "second is_acquired()")
    eq(check, lock.is_acquired(), False, "first is_acquired()")
    eq(check, lock.acquire(), False, "first acquire() while the second holds")
    lock.lease.revoke()
    eq(check, second.refresh(), 60, "second refresh()")
    eq(check, second.release(), True, "second release()")
    second.lease.revoke()
    check.passed()

    check.start("lock as a context manager")
    with client.lock(name, ttl=60) as held:
        eq(check, held.is_acquired(), True, "is_acquired() inside with")
        another = client.lock(name, ttl=60)
        eq(check, another.acquire(), False, "another acquire() inside with")
        another.lease.revoke()
    eq(check, held.is_acquired(), False, "is_acquired() after with")
    eq(check, client.get(held.key), [], "lock key after with")
    held.lease.revoke()
    check.passed()

    check.start("lock is freed when its TTL-2 lease expires")
    short = client.lock(name, ttl=2)
    eq(check, short.acquire(), True, "acquire() with a 2 s lease")
    waiter = client.lock(name, ttl=60)

    def try_acquire():
        if waiter.acquire():
            return True
        waiter.lease.revoke()  # each attempt grants a lease of its own
        return False

    acquired, waited = wait_until(try_acquire, EXPIRY_DEADLINE_S, poll_s=0.3)
    check.ok(acquired, "lock still held %.1f s after its 2 s lease was granted" % waited)
    eq(check, short.is_acquired(), False, "expired holder's is_acquired()")
    eq(check, waiter.is_acquired(), True, "new holder's is_acquired()")
    eq(check, short.refresh(), -1, "refresh() of the expired lock lease")
    eq(check, waiter.release(), True, "new holder's release()")
    waiter.lease.revoke()
    check.passed()

    check.start("revoking the holder's lease frees the lock")
    holder = client.lock(name, ttl=60)
    eq(check, holder.acquire(), True, "acquire()")
    other = client.lock(name, ttl=60)
    eq(check, other.acquire(), False, "acquire() while held")
    other.lease.revoke()
    eq(check, holder.lease.revoke(), True, "revoke() of the holder's lease")
    eq(check, holder.is_acquired(), False, "is_acquired() after its lease was revoked")
    eq(check, other.acquire(), True, "acquire() after the holder's lease was revoked")
    eq(check, other.release(), True, "release()")
    other.lease.revoke()
    check.passed()


if __name__ == "__main__":
    sys.exit(main("etcd3gw-lease-lock", run_round))
