// Swagger UI at /docs, in a real browser (Debian's chromium through playwright-core) in front of a real
// etcd: for every /v1/ and /v3/ operation, what a newcomer does — open it, "Try it out" (on by
// default), "Execute" with what the page pre-fills — must give a success, or the one answer
// test/support/try-it-out.ts lists for it, with the reason. The page is used as a person uses it: its own example pickers, its own
// request; the answer is the one the page shows. Screenshots land in test-results/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startGateway, spec, type GatewayFixture } from '../support/gateway';
import { launchBrowser, RESULTS_DIR, screenshot } from '../support/browser';
import { EXAMPLE_LEASE, EXPECTED_FAILURES } from '../support/try-it-out';

type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Operations whose request and answer, as the page shows them, are saved as screenshots. */
const SHOTS = new Set(['V1_KvPut', 'V1_KvGet', 'V1_LockAcquire', 'KV_Range', 'Election_Campaign']);

/** Streams: the answer's status line and first bytes arrive, the body never ends while the client
 *  stays (Swagger UI shows "Loading" until it is closed). Only the status is checked. */
const STREAMS = new Set(['V1_Watch', 'Watch_Watch', 'Lease_LeaseKeepAlive', 'Election_Observe']);

/** State an operation's example refers to, as a user would have it before trying the operation. */
async function ensureLease(gw: GatewayFixture): Promise<void> {
  await gw.post('/v3/lease/grant', { ID: EXAMPLE_LEASE, TTL: 600 });
}
const SEED: Record<string, (gw: GatewayFixture) => Promise<void>> = {
  V1_LeaseGet: ensureLease,
  V1_LeaseRevoke: ensureLease,
  V1_LeaseKeepAlive: ensureLease,
  V1_LockAcquire: ensureLease,
  Lease_LeaseRevoke: ensureLease,
  Lease_LeaseTimeToLive: ensureLease,
  Lease_LeaseKeepAlive: ensureLease,
};

interface Op {
  operationId: string;
  tag: string;
  method: string;
  path: string;
}

function operations(): Op[] {
  const out: Op[] = [];
  for (const [path, item] of Object.entries(spec().doc.paths as Record<string, Schema>)) {
    if (!/^\/v[13]\//.test(path)) continue;
    for (const method of ['get', 'put', 'post', 'delete']) {
      const op = item[method] as Schema | undefined;
      if (op) out.push({ operationId: op.operationId, tag: op.tags[0], method, path });
    }
  }
  return out;
}

/** Opens the operation, presses Execute, and reads the status the page shows (streams: the status the
 *  browser received, since the page waits for the end of the body). */
async function tryOperation(page: Page, op: Op): Promise<{ status: number; shown: string; body: string }> {
  const block = page.locator(`[id="operations-${op.tag}-${op.operationId}"]`);
  await block.scrollIntoViewIfNeeded();
  if (!(await block.locator('.opblock-body').count())) await block.locator('.opblock-summary').first().click();
  const execute = block.locator('button.execute');
  await execute.waitFor();
  const pattern = new RegExp(`^[^?#]*${op.path.replace(/\{[^}]+\}/g, '[^?#]*').replace(/\//g, '\\/')}([?#].*)?$`);
  const answered = page.waitForResponse((r) => r.request().method() === op.method.toUpperCase() && pattern.test(new URL(r.url()).pathname), { timeout: 10_000 });
  await execute.click();
  // Swagger UI marks an empty required field (or invalid JSON) and sends nothing.
  const refused = block.locator('.invalid').first().waitFor({ timeout: 10_000 }).then(() => undefined, () => undefined);
  const response = await Promise.race([answered.catch(() => undefined), refused]);
  if (!response) {
    const invalid = await block.locator('.invalid').count();
    return { status: 0, shown: invalid ? 'Swagger UI refused to send: a required field is empty or invalid' : 'no request sent', body: '' };
  }
  if (STREAMS.has(op.operationId)) return { status: response.status(), shown: '(stream)', body: '' };
  const status = block.locator('.live-responses-table .response-col_status').first();
  await status.waitFor();
  const body = (await block.locator('.live-responses-table .response-col_description pre').first().textContent()) ?? '';
  const shown = `${((await status.textContent()) ?? '').trim()} ${body.slice(0, 300)}`;
  // What the person sees for the first operation of each face: the pre-filled request and its answer.
  if (SHOTS.has(op.operationId)) {
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    await block.screenshot({ path: path.join(RESULTS_DIR, `swagger-${op.operationId}.png`) });
  }
  // Closes the operation again, so the page stays short and the next one scrolls into view.
  await block.locator('.opblock-summary').first().click();
  return { status: response.status(), shown, body };
}

describe('Swagger UI: "Try it out" → "Execute" with the pre-filled example, on every operation', () => {
  let gw: GatewayFixture;
  let browser: Browser;
  before(async () => {
    [gw, browser] = await Promise.all([startGateway(), launchBrowser()]);
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('answers every /v1/ and /v3/ operation with a success, or the listed expected answer', { timeout: 240_000 }, async (t) => {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.goto(`${gw.url}/docs/`);
    await page.locator('.opblock').first().waitFor();
    const failures: string[] = [];
    // In the page's order (which is the spec's: a key is written before it is read).
    const onPage = await page.locator('.opblock').evaluateAll((blocks) => blocks.map((b) => b.id));
    const ops = operations().sort((a, b) => onPage.indexOf(`operations-${a.tag}-${a.operationId}`) - onPage.indexOf(`operations-${b.tag}-${b.operationId}`));
    assert.ok(ops.every((op) => onPage.includes(`operations-${op.tag}-${op.operationId}`)), 'every operation is on the page');
    for (const op of ops) {
      await SEED[op.operationId]?.(gw);
      const started = Date.now();
      const { status, shown, body } = await tryOperation(page, op);
      t.diagnostic(`${op.operationId}: ${status} in ${Date.now() - started} ms`);
      const expected = EXPECTED_FAILURES[op.operationId];
      const ok = expected === undefined ? status >= 200 && status < 300 : status >= 400 && (expected.status === undefined || status === expected.status) && expected.message.test(body);
      if (!ok) {
        failures.push(`${op.method.toUpperCase()} ${op.path} (${op.operationId}): ${status} ${shown}`);
        await screenshot(page, `swagger-${op.operationId}`);
      }
    }
    await screenshot(page, 'swagger-ui');
    await context.close();
    assert.deepEqual(failures, [], `${failures.length} of ${ops.length} operations fail on the first try:\n${failures.join('\n')}`);
    assert.deepEqual(problems, []);
    assert.ok(ops.length > 50, `only ${ops.length} operations`);
  });
});
