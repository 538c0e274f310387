#!/usr/bin/python3
"""Watch checks of Debian's etcd3gw client (python3-etcd3gw) against an etcd JSON gateway.

Usage: /usr/bin/python3 test/python/etcd3gw_watch.py http://127.0.0.1:12345 [API_PATHS]

Runs the same checks once per API path. API_PATHS is a comma-separated list of api_path values
for Etcd3Client, where "default" means constructing the client without api_path (etcd3gw 2.0.0's
default is '/v3alpha/'); when omitted it is "default,/v3/". etcd 3.4's own gateway serves only
/v3/ and /v3beta/, so against etcd itself pass "/v3/". Prints one "ok <api_path> <check>" line per
passed check and "PASS <api_path>" after each round, then "ALL PASSED"; on the first failure prints
"FAIL <api_path> <check>: <reason>" to stderr and exits 1. A missing client exits 2 with the install
hint.

The etcd3gw watch API (etcd3gw 2.0.0, etcd3gw/client.py and etcd3gw/watch.py):
  - watch(key, **kwargs) -> (events_iterator, cancel). A Watcher POSTs
    {"create_request": {"key": b64(key), ...}} to <api_path>watch with stream=True (no timeout:
    Etcd3Client's timeout is stored on the requests Session, which ignores it), and reads the
    answer in a futurist worker thread with iter_content(chunk_size=None): every HTTP chunk must
    be exactly one {"result": WatchResponse} JSON document. A "created": true answer is skipped;
    each event's kv.key and kv.value (when present) are base64-decoded to bytes; everything else
    (type, revisions, prev_kv) is left as the gateway sent it. PUT events carry no "type" (the
    enum's zero value is omitted), DELETE events have "type": "DELETE" and no kv.value.
    The iterator blocks without a timeout; cancel() ends it and shuts the socket down.
  - kwargs passed through into create_request: start_revision, progress_notify, filters, prev_kv
    as given; range_end base64-encoded. Others are silently dropped.
  - watch_prefix(prefix, **kwargs): watch() with range_end = prefix with its last byte + 1.
  - watch_once(key, timeout=None, **kwargs) -> the first event, or raises
    etcd3gw.exceptions.WatchTimedOut after `timeout` seconds; the watch is stopped either way.
  - watch_prefix_once(prefix, timeout=None, **kwargs): watch_once() over the prefix's range.

Every wait here is bounded, and a watchdog ends the script if a call that has no timeout of its
own (the client's watch POST, its iterator) blocks for good.
"""

import base64
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import CheckFailed, eq, main  # noqa: E402 - exits 2 with the hint when etcd3gw is missing
from etcd3gw import exceptions as etcd3gw_exceptions  # noqa: E402

EVENT_WAIT = 10.0      # seconds to wait for an expected event
JOIN_WAIT = 10.0       # seconds for a reader thread to end after cancel
WATCHDOG_SECONDS = 50  # the whole script; the Node test kills it at 60 s


END = object()


class Collector(object):
    """Consumes etcd3gw's blocking events iterator in a thread, so that every wait is bounded."""

    def __init__(self, check, watch_result):
        self.check = check
        self.events, self._cancel = watch_result
        self.queue = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, name="watch-collector", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for event in self.events:
                self.queue.put(event)
        except Exception as exc:  # reported by take() / cancel()
            self.error = exc
        finally:
            self.queue.put(END)

    def take(self, count, what):
        """The next `count` events, each awaited for at most EVENT_WAIT seconds."""
        got = []
        while len(got) < count:
            try:
                event = self.queue.get(timeout=EVENT_WAIT)
            except queue.Empty:
                raise CheckFailed("%s: %s: got %d of %d events within %.0f s: %r"
                                  % (self.check.current, what, len(got), count, EVENT_WAIT, got))
            if event is END:
                raise CheckFailed("%s: %s: the events iterator ended after %d of %d events (%r): %r"
                                  % (self.check.current, what, len(got), count, self.error, got))
            got.append(event)
        return got

    def cancel(self):
        """Cancels the watch; the iterator must end and the reader give up the stream."""
        self._cancel()
        self.thread.join(JOIN_WAIT)
        self.check.ok(not self.thread.is_alive(),
                      "events iterator still blocked %.0f s after cancel()" % JOIN_WAIT)
        self.check.ok(self.error is None, "events iterator raised %r" % (self.error,))
        leftover = []
        while True:
            item = self.queue.get_nowait()
            if item is END:
                break
            leftover.append(item)
        return leftover


def summary(events):
    """(type, key, value) per event; etcd3gw leaves "type" out for PUT, as the gateway sends it."""
    return [(e.get("type", "PUT"), e["kv"]["key"], e["kv"].get("value")) for e in events]


def mod_revision(client, key):
    got = client.get(key, metadata=True)
    if len(got) != 1:
        raise CheckFailed("expected one value for %r, got %r" % (key, got))
    return int(got[0][1]["mod_revision"])


def threads_of_watches():
    """Threads started by etcd3gw watches (futurist workers) and by this script's collectors."""
    return [t for t in threading.enumerate()
            if t is not threading.main_thread() and not isinstance(t, threading.Timer)]


def run_checks(client, make_client, prefix, check):
    p = prefix
    utf8_value = "wätch ✓ 日本".encode("utf-8")

    check.start("watch put/delete events in order")
    key = p + "key"
    w = Collector(check, client.watch(key))
    client.put(key, "v1")
    client.put(key, utf8_value)
    client.put(p + "key2", "other key")  # a different key: not watched
    eq(check, client.delete(key), True, "delete return")
    events = w.take(3, "put, put, delete")
    eq(check, summary(events),
       [("PUT", key.encode(), b"v1"), ("PUT", key.encode(), utf8_value),
        ("DELETE", key.encode(), None)],
       "events")
    check.ok("type" not in events[0], "a PUT event should carry no 'type' (as from etcd's "
             "gateway, which omits the enum's zero value): %r" % events[0])
    revs = [int(e["kv"]["mod_revision"]) for e in events]
    check.ok(revs == sorted(revs) and len(set(revs)) == 3, "mod_revisions not increasing: %r" % revs)
    eq(check, events[0]["kv"]["version"], "1", "first put's version (a decimal string)")
    eq(check, events[1]["kv"]["version"], "2", "second put's version")
    eq(check, events[0]["kv"]["create_revision"], events[0]["kv"]["mod_revision"],
       "create_revision of the first put")
    check.passed()

    check.start("watch cancel ends the iterator")
    leftover = w.cancel()
    eq(check, leftover, [], "events after the expected ones")
    check.passed()

    check.start("watch_prefix only keys under the prefix")
    sub = p + "dir/"
    w = Collector(check, client.watch_prefix(sub))
    client.put(sub + "a", "1")
    client.put(p + "dir0", "outside")  # equals the range end ('/' + 1 == '0'): outside
    client.put(sub + "b", "2")
    client.put(sub + "c/deeper", "3")
    # If "dir0" leaked it would come before "b" (events arrive in revision order).
    eq(check, summary(w.take(3, "three puts under the prefix")),
       [("PUT", (sub + "a").encode(), b"1"), ("PUT", (sub + "b").encode(), b"2"),
        ("PUT", (sub + "c/deeper").encode(), b"3")],
       "events")
    eq(check, w.cancel(), [], "events after the expected ones")
    check.passed()

    check.start("watch_prefix with filters and prev_kv (kwargs pass-through)")
    w = Collector(check, client.watch_prefix(sub, filters=["NOPUT"], prev_kv=True))
    client.put(sub + "a", "1b")      # filtered out
    eq(check, client.delete(sub + "a"), True, "delete return")
    events = w.take(1, "the delete")
    eq(check, summary(events), [("DELETE", (sub + "a").encode(), None)], "events")
    prev = events[0].get("prev_kv")
    check.ok(isinstance(prev, dict), "prev_kv missing from %r" % events[0])
    # etcd3gw decodes only kv; prev_kv stays base64 as the gateway sent it.
    eq(check, base64.b64decode(prev["key"]), (sub + "a").encode(), "prev_kv key")
    eq(check, base64.b64decode(prev["value"]), b"1b", "prev_kv value")
    eq(check, w.cancel(), [], "events after the expected ones")
    check.passed()

    check.start("watch_once returns the first event (put from another thread)")
    once_key = p + "once"
    done = threading.Event()
    writer_errors = []

    def writer():
        # The watch has no "created" hook, so put until the watcher has its event (bounded).
        other = make_client()
        try:
            for n in range(1, 41):
                if done.wait(0.25):
                    return
                other.put(once_key, "once-%d" % n)
        except Exception as exc:
            writer_errors.append(exc)

    t = threading.Thread(target=writer, name="writer", daemon=True)
    t.start()
    try:
        event = client.watch_once(once_key, timeout=EVENT_WAIT)
    finally:
        done.set()
        t.join(JOIN_WAIT)
    check.ok(not t.is_alive(), "writer thread still running")
    eq(check, writer_errors, [], "writer errors")
    check.ok(isinstance(event, dict), "watch_once returned %r" % (event,))
    eq(check, event.get("type", "PUT"), "PUT", "event type")
    eq(check, event["kv"]["key"], once_key.encode(), "event key")
    # The n-th put writes "once-n" and makes version n: the event must be self-consistent.
    eq(check, event["kv"]["value"], ("once-%s" % event["kv"]["version"]).encode(), "event value")
    check.passed()

    check.start("watch_prefix_once returns the first event")
    done = threading.Event()
    writer_errors = []
    once_prefix = p + "once-dir/"

    def prefix_writer():
        other = make_client()
        try:
            for n in range(1, 41):
                if done.wait(0.25):
                    return
                other.put(once_prefix + "k%d" % n, "x")
        except Exception as exc:
            writer_errors.append(exc)

    t = threading.Thread(target=prefix_writer, name="writer", daemon=True)
    t.start()
    try:
        event = client.watch_prefix_once(once_prefix, timeout=EVENT_WAIT)
    finally:
        done.set()
        t.join(JOIN_WAIT)
    check.ok(not t.is_alive(), "writer thread still running")
    eq(check, writer_errors, [], "writer errors")
    eq(check, event.get("type", "PUT"), "PUT", "event type")
    check.ok(event["kv"]["key"].startswith(once_prefix.encode()), "event key %r" % event["kv"]["key"])
    eq(check, event["kv"]["value"], b"x", "event value")
    check.passed()

    check.start("watch_once times out when nothing happens")
    started = time.monotonic()
    try:
        event = client.watch_once(p + "silent", timeout=1.0)
    except etcd3gw_exceptions.WatchTimedOut:
        elapsed = time.monotonic() - started
    else:
        raise CheckFailed("%s: expected WatchTimedOut, got %r" % (check.current, event))
    check.ok(1.0 <= elapsed < 5.0, "timed out after %.2f s, expected about 1 s" % elapsed)
    check.passed()

    check.start("watch start_revision replays history")
    hist = p + "hist"
    client.put(hist, "h1")
    first = mod_revision(client, hist)
    client.put(hist, "h2")
    client.delete(hist)
    client.put(hist, "h3")
    # An int, as a Python caller would pass it; etcd3gw sends it as a JSON number.
    w = Collector(check, client.watch(hist, start_revision=first))
    past = w.take(4, "history")
    eq(check, summary(past),
       [("PUT", hist.encode(), b"h1"), ("PUT", hist.encode(), b"h2"),
        ("DELETE", hist.encode(), None), ("PUT", hist.encode(), b"h3")],
       "replayed events")
    eq(check, [int(e["kv"]["mod_revision"]) for e in past], [first, first + 1, first + 2, first + 3],
       "replayed mod_revisions")
    client.put(hist, "h4")
    eq(check, summary(w.take(1, "live event after history")), [("PUT", hist.encode(), b"h4")],
       "live event")
    eq(check, w.cancel(), [], "events after the expected ones")
    # watch_once with start_revision as a decimal string (the gateway's own int64 form).
    event = client.watch_once(hist, timeout=EVENT_WAIT, start_revision=str(first + 1))
    eq(check, summary([event]), [("PUT", hist.encode(), b"h2")], "watch_once from a past revision")
    check.passed()

    check.start("cancel closes every watch stream (reader threads end)")
    deadline = time.monotonic() + JOIN_WAIT
    while threads_of_watches() and time.monotonic() < deadline:
        time.sleep(0.05)
    eq(check, [t.name for t in threads_of_watches()], [], "threads still running")
    check.passed()

    check.start("cleanup")
    eq(check, client.delete_prefix(p), True, "delete_prefix return")
    eq(check, client.get_prefix(p), [], "nothing left")
    check.passed()


if __name__ == "__main__":
    sys.exit(main("etcd3gw-watch-test", run_checks, watchdog_seconds=WATCHDOG_SECONDS))
