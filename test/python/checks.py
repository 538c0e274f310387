"""The harness shared by the etcd3gw check scripts (etcd3gw_kv.py, etcd3gw_watch.py,
etcd3gw_lease_lock.py): each script keeps only its checks and ends in
`sys.exit(checks.main(<key prefix root>, <round function>))`.

Command line: <script> <gateway base URL, e.g. http://127.0.0.1:2379> [API_PATHS]. API_PATHS is a
comma-separated list of api_path values for Etcd3Client, where "default" means constructing the
client without api_path; when omitted it is "default,/v3/". The round function runs once per API
path. Output: "etcd3gw from <file>, default api_path <repr>" first, one "ok <api_path> <check>" line
per passed check (Checker.passed()), "PASS <api_path>" after each round and "ALL PASSED" at the end,
exit 0; on the first failure "FAIL <api_path> <check>: <reason>" on stderr and exit 1; a bad command
line exits 2 with a message on stderr, and so does a missing etcd3gw, with the install hint.
"""

import inspect
import os
import sys
import threading
import traceback
import uuid
from urllib.parse import urlsplit

try:
    import etcd3gw
    from etcd3gw import exceptions  # noqa: F401 - so that the scripts' own import of it is safe
    from etcd3gw.client import Etcd3Client
except ImportError as exc:  # pragma: no cover - environment problem, not a gateway problem
    print("etcd3gw is not importable (%s); run: apt-get install python3-etcd3gw" % exc,
          file=sys.stderr)
    sys.exit(2)


class CheckFailed(Exception):
    pass


class Checker(object):
    """Names the check in progress so that an exception can be attributed to it."""

    def __init__(self, api_path):
        self.api_path = api_path
        self.current = "(setup)"

    def start(self, name):
        self.current = name

    def ok(self, condition, message):
        if not condition:
            raise CheckFailed("%s: %s" % (self.current, message))

    def passed(self):
        print("ok %s %s" % (self.api_path, self.current))
        sys.stdout.flush()


def eq(check, actual, expected, what):
    check.ok(actual == expected, "%s: expected %r, got %r" % (what, expected, actual))


CURRENT = {"checker": None}  # the round in progress, for the watchdog's message


def start_watchdog(seconds):
    """Ends the process with a FAIL line if the script has not finished within `seconds`."""
    def fire():
        checker = CURRENT["checker"]
        where = "%s %s" % (checker.api_path, checker.current) if checker else "(setup)"
        print("FAIL %s: no result within %d s (a client call without a timeout blocked)"
              % (where, seconds), file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def parse_args(argv):
    """(base URL split, [(api_path, Etcd3Client kwargs)]), or None after a message on stderr."""
    if len(argv) not in (2, 3):
        print("usage: %s <gateway base URL, e.g. http://127.0.0.1:2379> [default,/v3/,...]"
              % argv[0], file=sys.stderr)
        return None
    url = urlsplit(argv[1])
    if url.scheme not in ("http", "https") or not url.hostname or not url.port:
        print("not a base URL with scheme, host and port: %r" % argv[1], file=sys.stderr)
        return None

    default_api_path = inspect.signature(Etcd3Client.__init__).parameters["api_path"].default
    print("etcd3gw from %s, default api_path %r" % (etcd3gw.__file__, default_api_path))

    rounds = []
    for item in (argv[2] if len(argv) == 3 else "default,/v3/").split(","):
        if item == "default":
            rounds.append((default_api_path, {}))  # constructor called without api_path
        elif item.startswith("/") and item.endswith("/"):
            rounds.append((item, {"api_path": item}))
        else:
            print("not an api_path (like /v3/) nor 'default': %r" % item, file=sys.stderr)
            return None
    return url, rounds


def main(prefix_root, run_round, watchdog_seconds=None):
    """Runs `run_round(client, make_client, prefix, check)` once per API path of the command line
    and reports as the module's docstring says; returns the exit code. `make_client()` constructs
    another client like `client`; `prefix` ("<prefix_root>/<uuid>/<api path>/") is the round's own
    key prefix. With `watchdog_seconds`, the whole script is bounded by start_watchdog(), and a
    failure ends the process at once, without waiting for threads that may still be reading."""
    parsed = parse_args(sys.argv)
    if parsed is None:
        return 2
    url, rounds = parsed

    watchdog = start_watchdog(watchdog_seconds) if watchdog_seconds else None
    for api_path, kwargs in rounds:
        def make_client(kwargs=kwargs):
            return Etcd3Client(host=url.hostname, port=url.port, protocol=url.scheme,
                               timeout=10, **kwargs)

        client = make_client()
        assert client.api_path == api_path, (client.api_path, api_path)
        prefix = "%s/%s/%s/" % (prefix_root, uuid.uuid4().hex, api_path.strip("/"))
        check = Checker(api_path)
        CURRENT["checker"] = check
        try:
            run_round(client, make_client, prefix, check)
        except CheckFailed as exc:
            return fail("%s %s" % (api_path, exc), watchdog is not None)
        except Exception:  # an exception from the client is a failure of the current check
            return fail("%s %s: unexpected exception:\n%s"
                        % (api_path, check.current, traceback.format_exc()), watchdog is not None)
        print("PASS %s" % api_path)
    if watchdog is not None:
        watchdog.cancel()
    print("ALL PASSED")
    return 0


def fail(message, at_once):
    """Prints the FAIL line; returns exit code 1, or with `at_once` ends the process with it."""
    print("FAIL %s" % message, file=sys.stderr)
    if not at_once:
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
