// The test suite that ships with Debian's python3-etcd3gw (etcd3gw/tests/ in dist-packages), run
// whole with /usr/bin/python3 against this gateway, and once against etcd's own gateway to show the
// suite's own expectations.
//
// The suite is unittest-based (oslotest's BaseTestCase, so it needs python3-oslotest, which brings
// testtools and fixtures). test_client.py holds mock-only unit tests; test_etcd3gw.py holds the
// functional ones, which take no endpoint setting: they build their client as `Etcd3Client()` —
// localhost:2379 and the client's default api_path ('/v3alpha/' in 2.0.0) — and are skipped unless
// a GET of 127.0.0.1:2379 at import time succeeds. The runner below (RUNNER) changes nothing in the
// tests themselves: while importing test_etcd3gw it redirects that probe to the target, then rebinds
// that module's `Etcd3Client` to one with the target's host, port and api_path (test_client's checks
// of the defaults still see the real class), and runs the discovered suite with unittest. A skipped
// test is a failure here, as it would mean the suite did not reach the target.

import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { startTestEtcd } from '../support/etcd';
import { PYTHON, requireEtcd3gw, runProcess } from '../support/python';

const SUITE_INSTALL_HINT = 'apt-get install python3-etcd3gw python3-oslotest';
const RUN_TIMEOUT_MS = 180_000;
/** What the suite imports beyond etcd3gw: etcd3gw.tests.base needs oslotest, testtools and fixtures. */
const SUITE_MODULES = ['etcd3gw.tests.base', 'oslotest.base', 'testtools', 'fixtures'];

/** The tests of python3-etcd3gw 2.0.0's suite; a later version may add more, none may be missing. */
const KNOWN_TESTS = [
  'test_client.TestEtcd3Gateway.test_client_bad_request',
  'test_client.TestEtcd3Gateway.test_client_default',
  'test_client.TestEtcd3Gateway.test_client_exceptions_by_code',
  'test_client.TestEtcd3Gateway.test_client_ipv4',
  'test_client.TestEtcd3Gateway.test_client_ipv6',
  'test_etcd3gw.TestEtcd3Gateway.test_client_keys_with_metadata_and_no_value',
  'test_etcd3gw.TestEtcd3Gateway.test_client_keys_with_metadata_and_value',
  'test_etcd3gw.TestEtcd3Gateway.test_client_lease',
  'test_etcd3gw.TestEtcd3Gateway.test_client_lease_with_keys',
  'test_etcd3gw.TestEtcd3Gateway.test_client_lock_acquire_release',
  'test_etcd3gw.TestEtcd3Gateway.test_client_locks',
  'test_etcd3gw.TestEtcd3Gateway.test_client_members',
  'test_etcd3gw.TestEtcd3Gateway.test_client_status',
  'test_etcd3gw.TestEtcd3Gateway.test_client_with_keys_and_values',
  'test_etcd3gw.TestEtcd3Gateway.test_create_fail',
  'test_etcd3gw.TestEtcd3Gateway.test_create_success',
  'test_etcd3gw.TestEtcd3Gateway.test_create_with_lease_success',
  'test_etcd3gw.TestEtcd3Gateway.test_get_and_delete_prefix',
  'test_etcd3gw.TestEtcd3Gateway.test_get_prefix_sort_order',
  'test_etcd3gw.TestEtcd3Gateway.test_get_prefix_sort_order_explicit_sort_target_key',
  'test_etcd3gw.TestEtcd3Gateway.test_get_prefix_sort_order_explicit_sort_target_rev',
  'test_etcd3gw.TestEtcd3Gateway.test_replace_fail',
  'test_etcd3gw.TestEtcd3Gateway.test_replace_success',
  'test_etcd3gw.TestEtcd3Gateway.test_sequential_watch_prefix_once',
  'test_etcd3gw.TestEtcd3Gateway.test_watch_key',
  'test_etcd3gw.TestEtcd3Gateway.test_watch_prefix',
  'test_etcd3gw.TestEtcd3Gateway.test_watch_unicode',
].map((id) => `etcd3gw.tests.${id}`);

/**
 * argv: base URL, api_path. Runs etcd3gw.tests with unittest (verbose report on stderr) and prints
 * one `RESULTS {json}` line on stdout; exits 0 only if every test passed and none was skipped.
 */
const RUNNER = String.raw`
import functools, json, os, sys, time, unittest
from unittest import mock
from urllib.parse import urlsplit

import requests
import urllib3

import etcd3gw
import etcd3gw.tests
from etcd3gw.client import Etcd3Client

base, api_path = sys.argv[1], sys.argv[2]
url = urlsplit(base)
SUITE_PROBE = "127.0.0.1:2379"
probes = []
real_request = urllib3.PoolManager.request


def redirected_request(self, method, target, *args, **kwargs):
    # test_etcd3gw's _is_etcd3_running() GETs 127.0.0.1:2379 when the module is imported.
    if target == SUITE_PROBE:
        probes.append(target)
        target = base + "/"
    return real_request(self, method, target, *args, **kwargs)


with mock.patch.object(urllib3.PoolManager, "request", redirected_request):
    from etcd3gw.tests import test_etcd3gw
if not probes:
    sys.exit("etcd3gw.tests.test_etcd3gw did not probe %s on import; the runner needs updating" % SUITE_PROBE)
test_etcd3gw.Etcd3Client = functools.partial(
    Etcd3Client, host=url.hostname, port=url.port, protocol=url.scheme, api_path=api_path)

# Every HTTP exchange of the current test, reported with a failure (Session.send sits below the
# Session.post that test_watch_unicode mocks). A streamed answer (a watch) is not read here.
exchanges = []
real_send = requests.Session.send


def clip(data, limit=600):
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    data = data or ""
    return data if len(data) <= limit else data[:limit] + "...(%d chars)" % len(data)


def logged_send(self, request, **kwargs):
    entry = "%s %s %s" % (request.method, request.url, clip(request.body))
    try:
        resp = real_send(self, request, **kwargs)
    except Exception as exc:
        exchanges.append("%s\n  -> %r" % (entry, exc))
        raise
    answer = "(streamed)" if kwargs.get("stream") else clip(resp.text)
    exchanges.append("%s\n  -> %s %s" % (entry, resp.status_code, answer))
    return resp


requests.Session.send = logged_send

tests_dir = os.path.dirname(etcd3gw.tests.__file__)
top_dir = os.path.dirname(os.path.dirname(etcd3gw.__file__))
suite = unittest.defaultTestLoader.discover(tests_dir, pattern="test_*.py", top_level_dir=top_dir)


class Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = []
        self.started = {}

    def startTest(self, test):
        del exchanges[:]
        self.started[test.id()] = time.monotonic()
        super().startTest(test)

    def record(self, test, outcome, detail=""):
        took = time.monotonic() - self.started.get(test.id(), time.monotonic())
        self.outcomes.append({"id": test.id(), "outcome": outcome, "seconds": round(took, 2), "detail": detail})

    def http(self):
        last = exchanges[-12:]
        return "HTTP exchanges of the test (last %d of %d):\n%s\n" % (len(last), len(exchanges), "\n".join(last))

    def addSuccess(self, test):
        super().addSuccess(test)
        self.record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.record(test, "failed", self._exc_info_to_string(err, test) + self.http())

    def addError(self, test, err):
        super().addError(test, err)
        self.record(test, "error", self._exc_info_to_string(err, test) + self.http())

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.record(test, "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.record(test, "unexpected success")


result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Result).run(suite)
print("RESULTS " + json.dumps({"etcd3gw": os.path.dirname(etcd3gw.__file__), "api_path": api_path,
                               "probes": len(probes), "run": result.testsRun, "outcomes": result.outcomes}))
sys.exit(0 if result.wasSuccessful() and not result.skipped else 1)
`;

interface Outcome {
  id: string;
  outcome: string;
  seconds: number;
  detail: string;
}

interface SuiteReport {
  etcd3gw: string;
  api_path: string;
  probes: number;
  run: number;
  outcomes: Outcome[];
}

/** Runs the whole suite against `base` on `apiPath`; asserts exit 0 and that every test passed. */
async function runSuite(t: TestContext, base: string, apiPath: string): Promise<SuiteReport> {
  const res = await runProcess(PYTHON, ['-c', RUNNER, base, apiPath], RUN_TIMEOUT_MS, {
    OS_TEST_TIMEOUT: '30', // oslotest's per-test bound: a watch test whose watch fails would wait forever
  });
  const transcript = `--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
  assert.ok(!res.timedOut, `the etcd3gw suite did not finish within ${RUN_TIMEOUT_MS} ms\n${transcript}`);
  const line = res.stdout.split('\n').find((l) => l.startsWith('RESULTS '));
  assert.ok(line, `the etcd3gw suite runner printed no RESULTS line (exit ${res.code ?? res.signal})\n${transcript}`);
  const report = JSON.parse(line.slice('RESULTS '.length)) as SuiteReport;
  for (const o of report.outcomes) t.diagnostic(`${o.outcome.padEnd(7)} ${o.id.replace(/^etcd3gw\.tests\./, '')} (${o.seconds} s)`);
  const bad = report.outcomes.filter((o) => o.outcome !== 'passed');
  const passed = report.outcomes.length - bad.length;
  t.diagnostic(`${passed} passed, ${bad.length} not passed, of ${report.run} run (etcd3gw from ${report.etcd3gw}, api_path ${apiPath})`);
  assert.deepEqual(
    bad.map((o) => `${o.outcome}: ${o.id}\n${o.detail}`),
    [],
    `tests of the etcd3gw suite did not pass against ${base}${apiPath}\n--- stderr ---\n${res.stderr}`,
  );
  assert.equal(res.code, 0, `the etcd3gw suite exited ${res.code ?? res.signal}\n${transcript}`);
  assert.ok(report.probes > 0, 'the functional tests did not probe the endpoint');
  const ids = report.outcomes.map((o) => o.id);
  assert.deepEqual(
    KNOWN_TESTS.filter((id) => !ids.includes(id)),
    [],
    `tests of etcd3gw 2.0.0's suite were not run\n${transcript}`,
  );
  assert.equal(report.run, report.outcomes.length, `every test run should have an outcome\n${transcript}`);
  assert.equal(passed, report.run, `pass count\n${transcript}`);
  assert.ok(passed >= KNOWN_TESTS.length, `pass count ${passed} is below the ${KNOWN_TESTS.length} tests of 2.0.0`);
  return report;
}

describe("python3-etcd3gw's own test suite", { timeout: 600_000 }, () => {
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGateway();
  });

  after(async () => {
    await fixture?.close();
  });

  it("passes whole against this gateway on the client's default api_path", { timeout: RUN_TIMEOUT_MS + 20_000 }, async (t) => {
    const defaultPath = await requireEtcd3gw({ modules: SUITE_MODULES, hint: SUITE_INSTALL_HINT });
    await runSuite(t, fixture.url, defaultPath);
  });

  it('passes whole against this gateway on /v3/ too', { timeout: RUN_TIMEOUT_MS + 20_000 }, async (t) => {
    await requireEtcd3gw({ modules: SUITE_MODULES, hint: SUITE_INSTALL_HINT });
    await runSuite(t, fixture.url, '/v3/');
  });

  it("passes whole against etcd's own gateway on /v3/ (the suite's own expectations)", { timeout: RUN_TIMEOUT_MS + 20_000 }, async (t) => {
    await requireEtcd3gw({ modules: SUITE_MODULES, hint: SUITE_INSTALL_HINT });
    // A fresh etcd, so that this run does not start from the keys the first run left behind.
    const etcd = await startTestEtcd();
    try {
      await runSuite(t, etcd.clientUrl, '/v3/');
    } finally {
      await etcd.cleanup();
    }
  });
});
