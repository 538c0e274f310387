// The web console as a newcomer meets it (issue 23): the gateway's address opens it, the page loads
// without a failed request, the status line follows the watch, an edit starts from the value as shown,
// a save's banner does not outlive a conflict, keys have links and the page follows its address, a
// phone-sized screen shows all of it, and a key too long for a URL is read and written all the same.
// A real browser against this gateway and a real etcd; every key checked again through /v3/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page, Response } from 'playwright-core';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { assertAccessible, launchBrowser, openPage, screenshot, type ConsolePage } from '../support/browser';
import { CONSOLE_CSP } from '../../src/api/ops/console';

async function put(gw: GatewayFixture, key: string, value: string): Promise<number> {
  const answer = await gw.post('/v3/kv/put', { key: b64(key), value: b64(value) });
  assert.equal(answer.status, 200, answer.text);
  return Number(answer.body.header.revision);
}

async function get(gw: GatewayFixture, key: string): Promise<string | undefined> {
  const kv = (await gw.post('/v3/kv/range', { key: b64(key) })).body.kvs?.[0];
  return kv && Buffer.from(kv.value ?? '', 'base64').toString();
}

async function openKeys(page: Page, prefix: string): Promise<void> {
  await page.getByLabel('Prefix', { exact: true }).fill(prefix);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('tree', { name: `Keys under “${prefix}”` }).waitFor();
}

describe('web console: what a newcomer meets', () => {
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
    for (const cp of pages) await cp.page.context().close();
    await browser?.close();
    await gw?.close();
  });

  it('is where the gateway’s address goes; with UI=off that is Swagger UI', async () => {
    const root = await fetch(`${gw.url}/`, { redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/ui/');
    const off = await startGateway({ etcd: gw.etcd, ui: false });
    try {
      const r = await fetch(`${off.url}/`, { redirect: 'manual' });
      assert.equal(r.headers.get('location'), '/docs/');
    } finally {
      await off.close();
    }
    assert.equal((await fetch(`${gw.url}/docs/`)).status, 200, 'Swagger UI stays at /docs/');
  });

  it('loads without one failed request, and names an icon it serves (no /favicon.ico 404)', async () => {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const failed: string[] = [];
    page.on('response', (r: Response) => {
      if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => failed.push(`failed ${r.url()}`));
    await page.goto(`${gw.url}/ui/`);
    await page.getByRole('tree').or(page.getByText('No keys under this prefix.')).waitFor();
    // A browser asks for /favicon.ico (twice, in Chrome) unless the page names its icon; headless
    // chromium asks for none, so the icon the page names is fetched here, as a browser would.
    const icon = (await page.evaluate(`(async () => {
      const link = document.querySelector('link[rel~="icon"]');
      if (!link) return { status: 0, type: 'no icon named' };
      const r = await fetch(link.href);
      return { status: r.status, type: r.headers.get('content-type') };
    })()`)) as { status: number; type: string };
    await context.close();
    assert.deepEqual(failed, []);
    assert.equal(icon.status, 200, icon.type);
    assert.match(icon.type, /^image\/svg\+xml/);
    const served = await fetch(`${gw.url}/ui/favicon.svg`);
    assert.equal(served.headers.get('content-security-policy'), CONSOLE_CSP);
  });

  it('keeps the count and the revision of the status line current while the watch is live', async () => {
    for (const k of ['a', 'b', 'c']) await put(gw, `count/${k}`, k);
    const listed = Number((await send(gw.url, '/v3/kv/range', { key: b64('x') })).body.header.revision);
    const { page, problems } = await open();
    await openKeys(page, 'count/');
    await page.getByText(`3 keys loaded at revision ${listed}`).waitFor();
    await page.getByText('watch: live').waitFor();
    const added = await put(gw, 'count/d', 'd');
    await page.getByText(`4 keys loaded at revision ${added}`).waitFor();
    const deleted = Number((await gw.post('/v3/kv/deleterange', { key: b64('count/a') })).body.header.revision);
    await page.getByText(`3 keys loaded at revision ${deleted}`).waitFor();
    assert.deepEqual(problems, []);
  });

  it('edits a JSON value formatted as the view shows it', async () => {
    const compact = '{"replicas":3,"image":"web:1.5","ports":[80,443]}';
    await put(gw, 'edit/config.json', compact);
    const { page, problems } = await open();
    await openKeys(page, 'edit/');
    await page.getByRole('treeitem', { name: 'config.json', exact: true }).click();
    const value = page.getByLabel(/Value of edit\/config\.json as JSON/);
    await value.waitFor();
    const formatted = JSON.stringify(JSON.parse(compact), null, 2);
    assert.equal(await value.textContent(), formatted);
    await page.getByRole('button', { name: 'Edit' }).click();
    const editor = page.getByLabel('New value of “edit/config.json”');
    assert.equal(await editor.inputValue(), formatted, 'the editor opens with the text the view showed');
    await editor.fill(formatted.replace('3', '4'));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText(/Saved “edit\/config\.json” at revision \d+/).waitFor();
    assert.equal(await get(gw, 'edit/config.json'), formatted.replace('3', '4'), 'saved as written');
    assert.deepEqual(problems, []);
  });

  it('takes back a save’s "Saved … at revision" banner when the next save meets a conflict', async () => {
    await put(gw, 'edit/note', 'one');
    const { page, problems } = await open();
    await openKeys(page, 'edit/');
    await page.getByRole('treeitem', { name: 'note', exact: true }).click();
    const editor = page.getByLabel('New value of “edit/note”');
    await page.getByRole('button', { name: 'Edit' }).click();
    await editor.fill('two');
    await page.getByRole('button', { name: 'Save' }).click();
    const saved = page.getByText(/Saved “edit\/note” at revision \d+/);
    await saved.waitFor();
    await page.getByRole('button', { name: 'Edit' }).click();
    await editor.fill('three');
    const theirs = await put(gw, 'edit/note', 'theirs');
    await page.getByText(new RegExp(`Someone else changed this key at revision ${theirs}`)).waitFor();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: /Conflict: “edit\/note” was changed/ }).waitFor();
    assert.equal(await saved.count(), 0, 'the earlier "Saved … at revision" banner is gone');
    await screenshot(page, 'console-newcomer-conflict');
    assert.deepEqual(problems, []);
  });

  it('links to a key, and follows the address when it changes', async () => {
    await put(gw, 'link/a', 'first');
    await put(gw, 'link/b', 'second');
    await put(gw, 'other/c', 'third');
    const { page, problems } = await open('#key=link/a');
    await page.getByRole('heading', { name: 'link/a' }).waitFor();
    assert.equal(await page.getByLabel(/Value of link\/a/).textContent(), 'first');
    assert.equal(await page.getByLabel('Prefix', { exact: true }).inputValue(), 'link/', 'a key alone opens its folder');
    const link = page.getByRole('link', { name: 'Link to this key' });
    assert.equal(await link.getAttribute('href'), '#prefix=link%2F&key=link%2Fa');
    // Another key by its address (as a pasted link or the back button would change it).
    await page.evaluate('location.hash = "#prefix=link%2F&key=link%2Fb"');
    await page.getByRole('heading', { name: 'link/b' }).waitFor();
    assert.equal(await page.getByLabel(/Value of link\/b/).textContent(), 'second');
    await page.goBack();
    await page.getByRole('heading', { name: 'link/a' }).waitFor();
    // Another prefix and key.
    await page.evaluate('location.hash = "#key=other/c"');
    await page.getByRole('heading', { name: 'other/c' }).waitFor();
    await page.getByRole('tree', { name: 'Keys under “other/”' }).waitFor();
    assert.equal(await page.getByLabel('Prefix', { exact: true }).inputValue(), 'other/');
    // Choosing a key in the tree puts it in the address.
    await openKeys(page, 'link/');
    await page.getByRole('treeitem', { name: 'b', exact: true }).click();
    await page.waitForFunction(() => (globalThis as unknown as { location: { hash: string } }).location.hash === '#prefix=link%2F&key=link%2Fb');
    assert.deepEqual(problems, []);
  });

  it('fits a 390 px wide screen: nothing sideways, the header whole', async () => {
    await put(gw, 'phone/settings.json', JSON.stringify({ theme: 'dark', notifications: { email: true, push: false }, tags: ['a', 'b', 'c'] }));
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    try {
      await page.goto(`${gw.url}/ui/`);
      await openKeys(page, 'phone/');
      await page.getByRole('treeitem', { name: 'settings.json', exact: true }).click();
      await page.getByLabel(/Value of phone\/settings\.json/).waitFor();
      const fits = async (what: string): Promise<void> => {
        const width = (await page.evaluate('document.documentElement.scrollWidth')) as number;
        assert.ok(width <= 390, `${what}: the page is ${width} px wide on a 390 px screen`);
        for (const part of [page.getByRole('heading', { name: 'etcd console' }), ...(await page.getByRole('navigation', { name: 'Views' }).getByRole('button').all())]) {
          const box = await part.boundingBox();
          assert.ok(box && box.x >= 0 && box.x + box.width <= 390 && box.y >= 0, `${what}: ${await part.textContent()} is inside the screen (${JSON.stringify(box)})`);
        }
      };
      await fits('a key');
      await screenshot(page, 'console-390-key');
      await page.getByRole('button', { name: 'History' }).click();
      await page.locator('.history table').waitFor();
      await fits('its history');
      await page.getByRole('button', { name: 'Cluster' }).click();
      await page.locator('table.members').waitFor();
      await fits('the cluster');
      await screenshot(page, 'console-390-cluster');
      await page.getByRole('button', { name: 'Leases' }).click();
      await fits('the leases');
      await assertAccessible(page, '390 px');
    } finally {
      await context.close();
    }
  });

  it('reads, edits and deletes a key longer than a URL may be (over 16 KiB), through /v3/ bodies', async () => {
    const long = `big/${'k'.repeat(17 * 1024)}`;
    await put(gw, long, 'a long key');
    const { page, problems } = await open();
    await openKeys(page, 'big/');
    await page.locator('.tree .key').first().click();
    const value = page.getByLabel(/^Value of big\//);
    await value.waitFor();
    assert.equal(await value.textContent(), 'a long key');
    await page.getByRole('button', { name: 'Edit' }).click();
    await page.locator('#value-editor').fill('changed');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText(/^Saved “big\/k+” at revision \d+\.$/).waitFor();
    assert.equal(await get(gw, long), 'changed');
    await page.getByRole('button', { name: 'Delete…' }).click();
    await page.getByRole('button', { name: 'Delete the key' }).click();
    await page.getByText(/^Deleted “big\/k+”\.$/).waitFor();
    assert.equal(await get(gw, long), undefined);
    assert.deepEqual(problems, []);
  });
});
