// A real browser for the console's tests: Debian's chromium driven by playwright-core, headless, with
// every Content-Security-Policy violation and page error recorded, axe-core's WCAG checks, and
// screenshots under test-results/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's chromium (.ci/run installs it). */
export const CHROMIUM = '/usr/bin/chromium';
export const RESULTS_DIR = path.join(__dirname, '..', '..', '..', 'test-results');

export function launchBrowser(): Promise<Browser> {
  // No sandbox: CI runs as root, where chromium refuses its sandbox. No background networking: the
  // tests must not depend on (or reach) anything but the loopback gateway.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking'] });
}

export interface ConsolePage {
  page: Page;
  /** Messages that mean the page broke its CSP or threw: each test ends by asserting there are none. */
  problems: string[];
}

export async function openPage(browser: Browser, url: string): Promise<ConsolePage> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const problems: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(url);
  return { page, problems };
}

const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core run inside the page (evaluated through the DevTools protocol, which the page's CSP does not
 *  govern): no WCAG 2.x A or AA violation. */
export async function assertAccessible(page: Page, what: string): Promise<void> {
  await page.evaluate(axeSource);
  const violations = (await page.evaluate(
    `axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } }).then((r) => r.violations.map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary) })))`,
  )) as Array<{ id: string; help: string; nodes: string[] }>;
  assert.deepEqual(violations, [], `${what}: axe-core found WCAG violations:\n${JSON.stringify(violations, null, 2)}`);
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
