// The web console at /ui/, in a real browser (Debian's chromium through playwright-core) against this
// gateway and a real etcd: what a person sees and does, checked on the page, with the keys checked
// again through /v3/ so nothing is taken on the page's word. Every page is checked by axe-core and
// must not break its Content-Security-Policy. Screenshots land in test-results/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { assertAccessible, launchBrowser, openPage, screenshot, type ConsolePage } from '../support/browser';
import { startTestEtcdCluster, type TestEtcdCluster } from '../support/etcd';
import { AccessPolicy } from '../../src/core/security/access';
import { CONSOLE_CSP, CONSOLE_DIR } from '../../src/api/ops/console';
import { ROOT_AND_PUB_READER } from '../support/etcd-users';

const JS_BUDGET = 150 * 1024;
const DOCS_SCREENSHOT = path.join(__dirname, '..', '..', '..', 'docs', 'console.png');

async function put(gw: GatewayFixture, key: string, value: string | Buffer): Promise<void> {
  const answer = await gw.post('/v3/kv/put', { key: b64(key), value: Buffer.from(value).toString('base64') });
  assert.equal(answer.status, 200, answer.text);
}

async function get(gw: GatewayFixture, key: string): Promise<{ value: string; version: number } | undefined> {
  const answer = await gw.post('/v3/kv/range', { key: b64(key) });
  const kv = answer.body.kvs?.[0];
  return kv && { value: Buffer.from(kv.value ?? '', 'base64').toString(), version: Number(kv.version) };
}

/** Many keys in few requests: one txn of up to 100 puts at a time. */
async function seed(gw: GatewayFixture, keys: string[], value: (k: string) => string): Promise<void> {
  for (let i = 0; i < keys.length; i += 100) {
    const success = keys.slice(i, i + 100).map((k) => ({ request_put: { key: b64(k), value: b64(value(k)) } }));
    const answer = await gw.post('/v3/kv/txn', { success });
    assert.equal(answer.status, 200, answer.text);
  }
}

async function openKeys(cp: ConsolePage, prefix: string): Promise<void> {
  await cp.page.getByLabel('Prefix', { exact: true }).fill(prefix);
  await cp.page.getByRole('button', { name: 'Open', exact: true }).click();
  // The tree of that prefix, or the word that it has no keys.
  await cp.page.getByRole('tree', { name: `Keys under “${prefix}”` }).or(cp.page.getByText('No keys under this prefix.')).waitFor();
}

/** Waits until the focused tree row is the one for `path` (focus moves once the rows are rendered). */
async function focusReaches(page: Page, path: string): Promise<void> {
  await page.waitForFunction((p) => (globalThis as unknown as { document: { activeElement: { getAttribute(n: string): string | null } | null } }).document.activeElement?.getAttribute('data-path') === p, path);
}

function treeItem(page: Page, label: string) {
  return page.getByRole('treeitem', { name: label, exact: true });
}

describe('web console', () => {
  let gw: GatewayFixture;
  let browser: Browser;
  const pages: ConsolePage[] = [];
  const open = async (hash = ''): Promise<ConsolePage> => {
    const cp = await openPage(browser, `${gw.url}/ui/${hash}`);
    pages.push(cp);
    return cp;
  };

  before(async () => {
    [gw, browser] = await Promise.all([startGateway(), launchBrowser()]);
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('is served under /ui/ with a strict Content-Security-Policy, and UI=off leaves it out', async () => {
    const page = await fetch(`${gw.url}/ui/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(page.headers.get('content-security-policy'), CONSOLE_CSP);
    assert.doesNotMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval/);
    const html = await page.text();
    assert.doesNotMatch(html, /<script>|<script [^>]*>[^<]|style=/, 'no inline script or style in the page');
    assert.match(html, /src="console\.js"/);
    const redirect = await fetch(`${gw.url}/ui`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/ui/');
    const js = await fetch(`${gw.url}/ui/console.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.equal(js.headers.get('content-security-policy'), CONSOLE_CSP);

    const off = await startGateway({ etcd: gw.etcd, ui: false });
    try {
      assert.equal((await fetch(`${off.url}/ui/`)).status, 404);
      assert.equal((await fetch(`${off.url}/ui/console.js`)).status, 404);
      assert.equal((await send(off.url, '/v3/kv/range', { key: b64('x') })).status, 200, 'the API is still served');
    } finally {
      await off.close();
    }
  });

  it('keeps its JavaScript under 150 KiB gzipped, with nothing loaded from elsewhere', () => {
    const scripts = fs.readdirSync(CONSOLE_DIR).filter((f) => f.endsWith('.js'));
    assert.ok(scripts.length > 0, `no JavaScript in ${CONSOLE_DIR}: was npm run build run?`);
    let total = 0;
    for (const f of scripts) {
      const text = fs.readFileSync(path.join(CONSOLE_DIR, f));
      total += gzipSync(text, { level: 9 }).length;
      assert.doesNotMatch(text.toString(), /https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\//i, `${f} names no outside URL to load`);
    }
    assert.ok(total < JS_BUDGET, `console JavaScript is ${total} bytes gzipped, over the ${JS_BUDGET}-byte budget`);
  });

  it('browses a tree of 3,000 keys page by page, with the keyboard, and filters it', async () => {
    const keys: string[] = [];
    for (const region of ['east', 'north', 'south', 'west', 'zone']) for (let h = 0; h < 600; h++) keys.push(`tree/${region}/host-${String(h).padStart(3, '0')}`);
    await seed(gw, keys, (k) => `{"name": "${k}", "up": true}`);
    const cp = await open();
    const { page } = cp;
    await openKeys(cp, 'tree/');
    // Two pages of 1,000 are read at once, the third when asked for.
    await page.getByText('2,000 keys loaded').waitFor();
    assert.equal(await treeItem(page, 'west/ 200+').count(), 1, 'a folder cut by the page end says it may hold more');
    await page.getByRole('button', { name: 'Load more keys' }).click();
    await page.getByText('3,000 keys loaded').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Load more keys' }).count(), 0, 'nothing more to load');
    assert.equal(await page.getByRole('treeitem').count(), 5, 'five folders, closed');
    assert.match((await treeItem(page, 'zone/ 600').getAttribute('aria-expanded')) ?? '', /false/);

    // ARIA tree keyboard pattern: Down to the second folder, Right opens it, Right again enters it,
    // Down twice, Enter opens the key.
    await treeItem(page, 'east/ 600').focus();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowRight');
    assert.equal(await treeItem(page, 'north/ 600').getAttribute('aria-expanded'), 'true');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'tree/north/host-002' }).waitFor();
    assert.equal(await treeItem(page, 'host-002').getAttribute('aria-selected'), 'true');
    await focusReaches(page, 'tree/north/host-002');
    await assertAccessible(page, 'tree');
    await screenshot(page, 'console-tree');
    // Left goes to the folder, Left again closes it.
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('ArrowLeft');
    assert.equal(await treeItem(page, 'north/ 600').getAttribute('aria-expanded'), 'false');
    await page.keyboard.press('End');
    await focusReaches(page, 'tree/zone/');

    await page.getByLabel('Filter').fill('host-599');
    await page.getByRole('treeitem', { name: 'host-599' }).first().waitFor();
    assert.equal(await page.getByRole('treeitem', { name: 'host-599' }).count(), 5, 'one match in each folder, folders opened');

    // Another separator splits the same keys differently.
    await page.getByLabel('Filter').fill('');
    await page.getByLabel('Separator').fill('-');
    await treeItem(page, 'north/host- 600').waitFor();
    await page.getByLabel('Separator').fill('/');
    assert.deepEqual(cp.problems, []);
  });

  it('shows a JSON value pretty, as YAML and as hex, with its revisions', async () => {
    await put(gw, 'app/config.json', '{"replicas":3,"image":"web:1.4","ports":[80,443],"tls":{"enabled":true}}');
    await put(gw, 'app/config.json', '{"replicas":3,"image":"web:1.5","ports":[80,443],"tls":{"enabled":true}}');
    await put(gw, 'app/blob', Buffer.from([0, 1, ...Buffer.from('binary'), 0xff]));
    const cp = await open();
    const { page } = cp;
    await openKeys(cp, 'app/');
    await treeItem(page, 'config.json').click();
    const value = page.getByLabel(/Value of app\/config\.json/);
    await value.waitFor();
    assert.equal(await value.textContent(), JSON.stringify(JSON.parse('{"replicas":3,"image":"web:1.5","ports":[80,443],"tls":{"enabled":true}}'), null, 2));
    const meta = await page.locator('.detail .meta').textContent();
    assert.match(meta ?? '', /Version2/);
    await page.getByRole('radio', { name: 'YAML' }).check();
    assert.match((await value.textContent()) ?? '', /^replicas: 3\nimage: "web:1\.5"|^replicas: 3\nimage: web:1\.5/);
    assert.match((await value.textContent()) ?? '', /tls:\n {2}enabled: true/);
    await page.getByRole('radio', { name: 'Hex' }).check();
    assert.match((await value.textContent()) ?? '', /^00000000 {2}7b 22 72 65/);
    await page.getByRole('radio', { name: 'JSON' }).check();
    await assertAccessible(page, 'JSON value');
    await screenshot(page, 'console-json');

    await page.getByLabel('Filter').fill('');
    await treeItem(page, 'blob').click();
    const hex = page.getByLabel(/Value of app\/blob as Hex/);
    assert.match((await hex.textContent()) ?? '', /^00000000 {2}00 01 62 69 6e 61 72 79 ff +\.\.binary\.$/);
    assert.equal(await page.getByRole('button', { name: 'Edit' }).isDisabled(), true, 'binary values are not edited as text');
    assert.deepEqual(cp.problems, []);
  });

  it('edits with If-Match: a change by another client meanwhile opens the conflict view, and nothing is lost', async () => {
    await put(gw, 'app/edit.json', '{"replicas":3}');
    const cp = await open();
    const { page } = cp;
    await openKeys(cp, 'app/');
    await treeItem(page, 'edit.json').click();
    await page.getByRole('button', { name: 'Edit' }).click();
    const editor = page.getByLabel('New value of “app/edit.json”');
    await editor.fill('{\n  "replicas": 4\n}');
    // Another client changes the key while the editor is open: the watch warns at once.
    await put(gw, 'app/edit.json', '{"replicas":5,"by":"someone else"}');
    await page.getByText(/Someone else changed this key at revision \d+ while you were editing/).waitFor();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: /Conflict: “app\/edit\.json” was changed/ }).waitFor();
    assert.match((await page.getByLabel('Their value').textContent()) ?? '', /"by":"someone else"/);
    assert.equal(await page.getByLabel('Your value').textContent(), '{\n  "replicas": 4\n}');
    const diff = (await page.locator('figure.diff pre').textContent()) ?? '';
    // Both are JSON: compared as formatted JSON, only the changed members differ.
    assert.match(diff, /^ {2}\{\n− {3}"replicas": 5,\n− {3}"by": "someone else"\n\+ {3}"replicas": 4\n {2}\}\n$/);
    assert.deepEqual(await get(gw, 'app/edit.json'), { value: '{"replicas":5,"by":"someone else"}', version: 2 }, 'the failed save wrote nothing');
    await assertAccessible(page, 'conflict view');
    await screenshot(page, 'console-conflict');

    await page.getByRole('button', { name: 'Keep mine' }).click();
    await page.getByText(/Saved “app\/edit\.json” at revision/).waitFor();
    assert.deepEqual(await get(gw, 'app/edit.json'), { value: '{\n  "replicas": 4\n}', version: 3 });

    // History: their version is still there to read and diff, and restoring it is one more CAS write.
    await page.getByRole('button', { name: 'History' }).click();
    await page.getByRole('button', { name: 'Restore version 2' }).waitFor();
    // Versions are read one revision after another: the oldest row comes one read after version 2's.
    await page.locator('.history tbody tr').nth(2).waitFor();
    assert.equal(await page.locator('.history tbody tr').count(), 3);
    const historyDiff = (await page.locator('.history figure.diff pre').textContent()) ?? '';
    assert.match(historyDiff, /− {3}"by": "someone else"/);
    await assertAccessible(page, 'history');
    await page.getByRole('button', { name: 'Restore version 2' }).click();
    await page.getByText('Restored version 2 of “app/edit.json”.').waitFor();
    assert.deepEqual(await get(gw, 'app/edit.json'), { value: '{"replicas":5,"by":"someone else"}', version: 4 });
    assert.deepEqual(cp.problems, []);
  });

  it('watches the open prefix: new and changed keys flash, the log shows them, the open value follows', async () => {
    await put(gw, 'live/a', 'one');
    const cp = await open();
    const { page } = cp;
    await openKeys(cp, 'live/');
    await treeItem(page, 'a').click();
    const value = page.getByLabel(/Value of live\/a/);
    assert.equal(await value.textContent(), 'one');
    await page.getByText('watch: live').waitFor();
    await put(gw, 'live/a', 'two');
    await put(gw, 'live/b', 'new key');
    await page.getByRole('log').getByText('live/b').waitFor();
    await page.waitForFunction(() => (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector('pre.value')?.textContent === 'two');
    assert.equal(await treeItem(page, 'b').count(), 1, 'the new key is in the tree');
    const log = (await page.getByRole('log').textContent()) ?? '';
    assert.match(log, /put live\/a rev \d+/);
    assert.match(log, /put live\/b rev \d+/);
    assert.ok((await page.locator('.tree .flash').count()) >= 1, 'changed keys flash');
    await screenshot(page, 'console-live');
    await send(gw.url, '/v3/kv/deleterange', { key: b64('live/b') });
    await page.getByRole('log').getByText('delete').waitFor();
    await treeItem(page, 'b').waitFor({ state: 'detached' });
    assert.deepEqual(cp.problems, []);
  });

  it('creates a key with a TTL whose lease counts down and expires, and lists leases', async () => {
    const cp = await open();
    const { page } = cp;
    await openKeys(cp, 'ttl/');
    await page.getByRole('button', { name: 'New key…' }).click();
    const dialog = page.getByRole('dialog', { name: 'New key' });
    await dialog.getByLabel('Key', { exact: true }).fill('ttl/session');
    await dialog.getByLabel('Value', { exact: true }).fill('short-lived');
    await dialog.getByLabel(/TTL in seconds/).fill('6');
    await assertAccessible(page, 'new key dialog');
    await dialog.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'ttl/session' }).waitFor();
    const ttl = page.locator('.detail .ttl');
    await ttl.waitFor();
    const first = Number(/(\d+) s left/.exec((await ttl.textContent()) ?? '')?.[1]);
    assert.ok(first >= 1 && first <= 6, `TTL shown: ${first}`);
    await page.waitForFunction((n) => {
      const text = (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector('.detail .ttl')?.textContent ?? '';
      const m = /(\d+) s left/.exec(text);
      return m !== null && Number(m[1]) < n;
    }, first);
    await screenshot(page, 'console-lease');
    // Expiry deletes the key: the watch says so, and the page shows it is gone.
    await page.getByText('The key “ttl/session” does not exist (any more).').waitFor();
    assert.equal(await get(gw, 'ttl/session'), undefined);

    // The leases view: a lease with a key, kept alive once, then revoked.
    const grant = await gw.post('/v3/lease/grant', { TTL: 120 });
    const id: string = grant.body.ID;
    await gw.post('/v3/kv/put', { key: b64('ttl/held'), value: b64('x'), lease: id });
    await page.getByRole('button', { name: 'Leases' }).click();
    const row = page.locator(`tr[data-lease="${id}"]`);
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /ttl\/held/);
    await row.getByRole('button', { name: /Keep alive/ }).click();
    await page.getByText(`Lease ${id} renewed: 120 s.`).waitFor();
    await assertAccessible(page, 'leases');
    await row.getByRole('button', { name: /Revoke/ }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal(await get(gw, 'ttl/held'), undefined, 'revoking deleted the lease’s key');
    assert.deepEqual(cp.problems, []);
  });

  it('deletes a prefix only after a confirmation naming the count', async () => {
    await seed(gw, Array.from({ length: 42 }, (_, i) => `gone/k${i}`), () => 'x');
    const cp = await open();
    const { page } = cp;
    await openKeys(cp, 'gone/');
    await page.getByRole('button', { name: 'Delete prefix…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete every key under “gone/”?' });
    await dialog.waitFor();
    assert.match((await dialog.textContent()) ?? '', /This deletes 42 keys under “gone\/”/);
    await assertAccessible(page, 'delete prefix dialog');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    assert.notEqual(await get(gw, 'gone/k0'), undefined, 'cancel deleted nothing');
    await page.getByRole('button', { name: 'Delete prefix…' }).click();
    await dialog.getByRole('button', { name: 'Delete 42 keys' }).click();
    await page.getByText('Deleted 42 keys under “gone/”.').waitFor();
    const left = await gw.post('/v3/kv/range', { key: b64('gone/'), range_end: b64('gone0'), count_only: true });
    assert.equal(left.body.count, undefined, 'no key left under the prefix');
    assert.deepEqual(cp.problems, []);
  });

  it('makes the README screenshot: every key, a folder open, a JSON value, a live event', async () => {
    const cp = await open('#prefix=');
    const { page } = cp;
    await page.setViewportSize({ width: 1280, height: 760 });
    await page.getByRole('tree', { name: 'Keys under “”' }).waitFor();
    await page.getByRole('treeitem', { name: /^app\// }).click();
    await treeItem(page, 'config.json').click();
    await page.getByLabel(/Value of app\/config\.json/).waitFor();
    await put(gw, 'app/feature-flags', '{"dark-mode":true}');
    await page.getByRole('log').getByText('app/feature-flags').waitFor();
    await treeItem(page, 'feature-flags').waitFor();
    fs.mkdirSync(path.dirname(DOCS_SCREENSHOT), { recursive: true });
    await page.screenshot({ path: DOCS_SCREENSHOT });
    assert.deepEqual(cp.problems, []);
  });

  after(async () => {
    for (const cp of pages) await cp.page.context().close();
  });
});

describe('web console: cluster panel on a three-member cluster', () => {
  let cluster: TestEtcdCluster;
  let gw: GatewayFixture;
  let browser: Browser;
  before(async () => {
    cluster = await startTestEtcdCluster(3);
    [gw, browser] = await Promise.all([startGateway({ endpoints: cluster.endpoints }), launchBrowser()]);
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
    await cluster?.cleanup();
  });

  it('lists the members with their URLs, the leader and each member’s own status', async () => {
    const cp = await openPage(browser, `${gw.url}/ui/`);
    const { page } = cp;
    await page.getByRole('button', { name: 'Cluster' }).click();
    const rows = page.locator('table.members tbody tr');
    await page.getByText('3 members,').waitFor();
    assert.equal(await rows.count(), 3);
    const table = (await page.locator('table.members').textContent()) ?? '';
    for (const url of cluster.endpoints) assert.ok(table.includes(url), `client URL ${url} listed`);
    assert.equal(await page.locator('table.members .role.leader').count(), 1, 'exactly one leader');
    const status = (await send(gw.url, '/v3/maintenance/status', {})).body;
    const members = (await send(gw.url, '/v3/cluster/member/list', {})).body.members as Array<{ ID: string; name: string }>;
    const leader = members.find((m) => m.ID === status.leader);
    assert.equal(await page.locator('.leader-name').textContent(), leader?.name);
    // Every member's own status: each row shows its version and its raft term, none a missing status.
    for (const url of cluster.endpoints) {
      const own = (await send(url, '/v3/maintenance/status', {})).body;
      const row = rows.filter({ hasText: own.header.member_id });
      assert.equal(await row.count(), 1, `a row for member ${own.header.member_id}`);
      const text = (await row.textContent()) ?? '';
      assert.ok(text.includes(own.version) && !text.includes('no status'), `${url}: its version in "${text}"`);
    }
    await assertAccessible(page, 'cluster');
    await screenshot(page, 'console-cluster');
    assert.deepEqual(cp.problems, []);
    await page.context().close();
  });
});

describe('web console: who am I, and a token limited to another prefix', () => {
  let dir: string;
  let policy: AccessPolicy;
  let gw: GatewayFixture;
  let browser: Browser;
  const sha = (t: string): string => crypto.createHash('sha256').update(t).digest('hex');
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-access-'));
    const file = path.join(dir, 'access.yaml');
    fs.writeFileSync(
      file,
      [
        'clients:',
        '  - name: billing',
        `    token_sha256: ${sha('billing-token')}`,
        '    grants:',
        '      - { prefix: "billing/", rights: [read, write, watch] }',
        '  - name: ops',
        `    token_sha256: ${sha('ops-token')}`,
        '    grants:',
        '      - { prefix: "", rights: [read, write, watch, lease, admin] }',
        '',
      ].join('\n'),
    );
    policy = new AccessPolicy(file, { info: () => undefined, error: () => undefined });
    [gw, browser] = await Promise.all([startGateway({ access: policy }), launchBrowser()]);
    const answer = await send(gw.url, '/v3/kv/put', { key: b64('billing/invoice-1'), value: b64('42') }, { headers: { Authorization: 'Bearer ops-token' } });
    assert.equal(answer.status, 200, answer.text);
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
    policy?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sends the token from session storage, and shows the gateway’s 403 message', async () => {
    const cp = await openPage(browser, `${gw.url}/ui/`);
    const { page } = cp;
    await page.getByRole('button', { name: 'Who am I' }).click();
    await page.getByLabel('Bearer token').fill('billing-token');
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.locator('header .who').getByText('gateway token set').waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("etcd-console.gateway-token")'), 'billing-token');
    await assertAccessible(page, 'who am I');

    await page.getByRole('button', { name: 'Keys' }).click();
    await openKeys(cp, 'billing/');
    await treeItem(page, 'invoice-1').waitFor();

    await page.getByLabel('Prefix', { exact: true }).fill('payroll/');
    await page.getByRole('button', { name: 'Open', exact: true }).click();
    const refused = page.getByText(/The gateway refused this listing: 403: .*billing.*may not read/);
    await refused.waitFor();
    await screenshot(page, 'console-403');

    await page.getByRole('button', { name: 'Cluster' }).click();
    await page.getByText(/The gateway refused: 403: gateway: client "billing" may not admin/).waitFor();
    // A CSP report or page error would show here; 403s are answers, not page errors.
    assert.deepEqual(cp.problems, []);
    await page.context().close();
  });
});

describe('web console: signed in as an etcd user', () => {
  let gw: GatewayFixture;
  let browser: Browser;
  before(async () => {
    [gw, browser] = await Promise.all([startGateway(), launchBrowser()]);
    const steps: Array<[string, object]> = [
      ['/v3/kv/put', { key: b64('pub/notice'), value: b64('open to readers') }],
      ['/v3/kv/put', { key: b64('secret/key'), value: b64('root only') }],
      ...ROOT_AND_PUB_READER,
    ];
    for (const [p, body] of steps) {
      const answer = await gw.post(p, body);
      assert.equal(answer.status, 200, `${p}: ${answer.text}`);
    }
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('signs in through /v3/auth/authenticate and reads with that user’s permissions', async () => {
    const cp = await openPage(browser, `${gw.url}/ui/`);
    const { page } = cp;
    await page.getByRole('button', { name: 'Who am I' }).click();
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText(/authentication failed, invalid user ID or password/).waitFor();
    await page.getByLabel('Password').fill('alicepw');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('header .who').getByText('etcd user alice').waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("etcd-console.etcd-user")'), 'alice');

    await page.getByRole('button', { name: 'Keys' }).click();
    await openKeys(cp, 'pub/');
    await treeItem(page, 'notice').click();
    assert.equal(await page.getByLabel(/Value of pub\/notice/).textContent(), 'open to readers');
    await page.getByLabel('Prefix', { exact: true }).fill('secret/');
    await page.getByRole('button', { name: 'Open', exact: true }).click();
    await page.getByText(/The gateway refused this listing: 403: .*permission denied/).waitFor();
    assert.deepEqual(cp.problems, []);
    await page.context().close();
  });
});
