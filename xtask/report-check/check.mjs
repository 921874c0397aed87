// Opens a Brisk profile report in headless Chromium, fails on any console error, page error
// or network request, checks that the charts are there and that hovering a task shows its
// details, and saves a full-page screenshot.
//
// node check.mjs REPORT.html SCREENSHOT.png   (CHROMIUM overrides /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [report, shot] = process.argv.slice(2);
if (!report || !shot) {
  console.error('usage: node check.mjs REPORT.html SCREENSHOT.png');
  process.exit(2);
}
const problems = [];
const userData = mkdtempSync(join(tmpdir(), 'brisk-report-check-'));
const context = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith('file:')) problems.push(`network request (the report must be self-contained): ${r.url()}`);
  });
  const url = pathToFileURL(resolve(report)).href;
  await page.goto(url, { waitUntil: 'load' });

  const count = async (sel) => page.locator(sel).count();
  const charts = await count('svg.chart');
  const boxes = await count('rect.t');
  const rows = await count('table tbody tr');
  if (charts < 4) problems.push(`expected 4 charts (tasks, CPU, memory, results held), found ${charts}`);
  if (boxes < 1) problems.push('no task boxes in the timeline');
  if (rows < 1) problems.push('empty summary table');
  // Every chart must actually be laid out (not zero-sized).
  for (const box of await page.locator('svg.chart').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().height))) {
    if (!(box > 50)) problems.push(`a chart is ${box}px high`);
  }
  // Hovering a task shows its details.
  const first = page.locator('rect.t').first();
  const expected = await first.getAttribute('data-tip');
  await first.hover({ force: true });
  const tip = page.locator('#tip');
  const shown = await tip.isVisible();
  const text = shown ? await tip.textContent() : '';
  if (!shown || text !== expected) problems.push(`hover tooltip: visible=${shown} text=${JSON.stringify(text)} expected ${JSON.stringify(expected)}`);
  await page.mouse.move(2, 2);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`report-check: ${charts} charts, ${boxes} task boxes, ${rows} task names; screenshot ${shot}`);
} finally {
  await context.close();
  rmSync(userData, { recursive: true, force: true });
}
if (problems.length) {
  for (const p of problems) console.error(`report-check: ${p}`);
  process.exit(1);
}
