#!/usr/bin/python3
"""KV checks of Debian's etcd3gw client (python3-etcd3gw) against an etcd JSON gateway.

Usage: /usr/bin/python3 test/python/etcd3gw_kv.py http://127.0.0.1:12345 [API_PATHS]

Runs the same checks once per API path. API_PATHS is a comma-separated list of api_path values
for Etcd3Client, where "default" means constructing the client without api_path (etcd3gw 2.0.0's
default is '/v3alpha/'); when omitted it is "default,/v3/". Note that etcd 3.4's own gateway
serves only /v3/ and /v3beta/, so against etcd itself pass "/v3beta/,/v3/". Prints one "ok <api_path> <check>" line per passed check and "PASS <api_path>" after each
round; on the first failure prints "FAIL <api_path> <check>: <reason>" to stderr and exits 1.
A missing client exits 2 with the install hint.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import eq, main  # noqa: E402 - exits 2 with the install hint when etcd3gw is missing


def run_checks(client, make_client, prefix, check):
    p = prefix
    # etcd3gw base64-encodes a str with latin-1, so UTF-8 text must be passed as bytes.
    utf8_value = "héllo wörld ✓ 日本語 🙂".encode("utf-8")
    binary_value = b"\xff\xfe\x00\x80bin\xc3\x28"  # not valid UTF-8, contains NUL
    latin1_str = "café"  # a str: sent as latin-1 bytes b'caf\xe9' (also not valid UTF-8)

    check.start("put ascii")
    eq(check, client.put(p + "a", "value-a"), True, "put return")
    check.passed()

    check.start("get ascii")
    eq(check, client.get(p + "a"), [b"value-a"], "get value")
    check.passed()

    check.start("put/get utf-8 value")
    eq(check, client.put(p + "utf8", utf8_value), True, "put return")
    got = client.get(p + "utf8")
    eq(check, got, [utf8_value], "get value")
    eq(check, got[0].decode("utf-8"), "héllo wörld ✓ 日本語 🙂", "decoded text")
    check.passed()

    check.start("put/get non-utf-8 bytes value")
    eq(check, client.put(p + "bin", binary_value), True, "put return")
    eq(check, client.get(p + "bin"), [binary_value], "get value")
    check.passed()

    check.start("put/get latin-1 str value")
    eq(check, client.put(p + "latin1", latin1_str), True, "put return")
    eq(check, client.get(p + "latin1"), [b"caf\xe9"], "get value")
    check.passed()

    check.start("put/get empty value")
    eq(check, client.put(p + "empty", b""), True, "put return")
    # etcd's gateway omits an empty value; etcd3gw maps a missing 'value' to b''.
    eq(check, client.get(p + "empty"), [b""], "get value")
    check.passed()

    check.start("get missing key")
    eq(check, client.get(p + "missing"), [], "get value")
    check.passed()

    check.start("overwrite and get with metadata")
    client.put(p + "a", "value-a2")
    got = client.get(p + "a", metadata=True)
    eq(check, len(got), 1, "number of results")
    value, meta = got[0]
    eq(check, value, b"value-a2", "value")
    eq(check, meta["key"], (p + "a").encode(), "metadata key")
    # int64 fields come as decimal strings, as from etcd's gateway.
    for field in ("create_revision", "mod_revision", "version"):
        check.ok(isinstance(meta.get(field), str) and meta[field].isdigit(),
                 "metadata %s should be a decimal string, got %r in %r" % (field, meta.get(field), meta))
    eq(check, meta["version"], "2", "version after two puts")
    check.ok(int(meta["mod_revision"]) > int(meta["create_revision"]),
             "mod_revision %r should be above create_revision %r"
             % (meta["mod_revision"], meta["create_revision"]))
    check.passed()

    # Keys under a sub-prefix, written out of order so that key order differs from revision order.
    sub = p + "dir/"
    check.start("get_prefix ascending by key")
    for name, val in (("k2", b"v2"), ("k1", b"v1"), ("k3", b"v3")):
        client.put(sub + name, val)
    client.put(p + "dir0", b"outside")  # just past the prefix's range end ('/' + 1 == '0')
    client.put(p + "dip", b"outside")   # just before it
    got = client.get_prefix(sub)
    eq(check, [(m["key"], v) for v, m in got],
       [((sub + "k1").encode(), b"v1"), ((sub + "k2").encode(), b"v2"), ((sub + "k3").encode(), b"v3")],
       "keys and values")
    check.passed()

    check.start("get_prefix sort_order descend by key")
    got = client.get_prefix(sub, sort_order="descend", sort_target="key")
    eq(check, [m["key"] for _, m in got], [(sub + n).encode() for n in ("k3", "k2", "k1")], "keys")
    check.passed()

    check.start("get_prefix sort by create revision")
    got = client.get_prefix(sub, sort_order="ascend", sort_target="create")
    eq(check, [m["key"] for _, m in got], [(sub + n).encode() for n in ("k2", "k1", "k3")], "keys")
    got = client.get_prefix(sub, sort_order="descend", sort_target="create")
    eq(check, [m["key"] for _, m in got], [(sub + n).encode() for n in ("k3", "k1", "k2")], "keys")
    check.passed()

    check.start("get_prefix over whole test prefix")
    got = client.get_prefix(p)
    eq(check, [m["key"] for _, m in got],
       [(p + n).encode() for n in ("a", "bin", "dip", "dir/k1", "dir/k2", "dir/k3", "dir0",
                                   "empty", "latin1", "utf8")],
       "keys")
    eq(check, dict((m["key"], v) for v, m in got)[(p + "bin").encode()], binary_value, "binary value")
    check.passed()

    check.start("get with limit (extra range kwargs)")
    got = client.get(sub, metadata=True, range_end=_b64(sub[:-1] + "0"), limit=2)
    eq(check, [m["key"] for _, m in got], [(sub + n).encode() for n in ("k1", "k2")], "keys")
    check.passed()

    check.start("get_all includes test keys in order")
    got = client.get_all()
    keys = [m["key"] for _, m in got if m["key"].startswith(sub.encode())]
    eq(check, keys, [(sub + n).encode() for n in ("k1", "k2", "k3")], "keys under prefix")
    check.passed()

    check.start("delete one key")
    eq(check, client.delete(sub + "k2"), True, "delete return")
    eq(check, client.get(sub + "k2"), [], "get after delete")
    eq(check, [v for v, _ in client.get_prefix(sub)], [b"v1", b"v3"], "remaining values")
    check.passed()

    check.start("delete missing key")
    # Nothing deleted: the gateway omits 'deleted' (zero), which etcd3gw reports as False.
    eq(check, client.delete(sub + "k2"), False, "delete return")
    check.passed()

    check.start("delete_prefix")
    eq(check, client.delete_prefix(sub), True, "delete_prefix return")
    eq(check, client.get_prefix(sub), [], "get_prefix after delete_prefix")
    eq(check, client.get(p + "dir0"), [b"outside"], "key after the prefix survives")
    eq(check, client.get(p + "dip"), [b"outside"], "key before the prefix survives")
    eq(check, client.delete_prefix(sub), False, "second delete_prefix return")
    check.passed()

    check.start("replace succeeds when old value matches")
    client.put(p + "cas", b"old")
    eq(check, client.replace(p + "cas", b"old", b"new"), True, "replace return")
    eq(check, client.get(p + "cas"), [b"new"], "value after replace")
    check.passed()

    check.start("replace fails when old value differs")
    eq(check, client.replace(p + "cas", b"old", b"newer"), False, "replace return")
    eq(check, client.get(p + "cas"), [b"new"], "value unchanged")
    check.passed()

    check.start("replace with non-utf-8 values")
    eq(check, client.replace(p + "cas", b"new", binary_value), True, "replace to binary")
    eq(check, client.replace(p + "cas", binary_value, utf8_value), True, "replace from binary")
    eq(check, client.get(p + "cas"), [utf8_value], "value after replaces")
    check.passed()

    check.start("replace on missing key fails")
    eq(check, client.replace(p + "nokey", b"", b"x"), False, "replace return")
    eq(check, client.get(p + "nokey"), [], "still missing")
    check.passed()

    check.start("create succeeds once")
    eq(check, client.create(p + "new", b"first"), True, "create return")
    eq(check, client.get(p + "new"), [b"first"], "value after create")
    check.passed()

    check.start("create fails the second time")
    eq(check, client.create(p + "new", b"second"), False, "create return")
    eq(check, client.get(p + "new"), [b"first"], "value unchanged")
    check.passed()

    check.start("create after delete succeeds")
    eq(check, client.delete(p + "new"), True, "delete return")
    eq(check, client.create(p + "new", utf8_value), True, "create return")
    eq(check, client.get(p + "new"), [utf8_value], "value after re-create")
    check.passed()

    check.start("transaction raw response")
    res = client.transaction({
        "compare": [{"key": _b64(p + "cas"), "result": "EQUAL", "target": "VALUE",
                     "value": _b64(utf8_value)}],
        "success": [{"request_range": {"key": _b64(p + "cas")}}],
        "failure": [],
    })
    eq(check, res.get("succeeded"), True, "succeeded")
    kvs = res["responses"][0]["response_range"]["kvs"]
    eq(check, [(_unb64(kv["key"]), _unb64(kv["value"])) for kv in kvs],
       [((p + "cas").encode(), utf8_value)], "range in txn")
    check.ok(isinstance(res["header"]["revision"], str), "header.revision should be a string: %r" % res)
    check.passed()

    check.start("cleanup")
    eq(check, client.delete_prefix(p), True, "delete_prefix return")
    eq(check, client.get_prefix(p), [], "nothing left")
    check.passed()


def _b64(data):
    import base64
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    import base64
    return base64.b64decode(text)


if __name__ == "__main__":
    sys.exit(main("etcd3gw-test", run_checks))
