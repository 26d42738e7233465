// Shared by the dashboard's browser tests (run by tests/api/browser.rs): launching the
// system's Chromium through puppeteer-core, deadlines on every wait, screenshots, and the
// one JSON line of results each script prints last on stdout. Progress goes to stderr.
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

export const env = (name, fallback) => {
  const v = process.env[name];
  if (v == null || v === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`environment variable ${name} is not set`);
  }
  return v;
};

export const log = (...args) => console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A failed step: `step` names what was being checked, `message` what was wrong. */
export class StepError extends Error {
  constructor(step, message) {
    super(`${step}: ${message}`);
    this.step = step;
  }
}

/**
 * Runs `body(ctx)` with a browser (Chromium's own switches in `args`) and a 1280x800
 * page, the whole under `deadlineMs`.
 * Prints `{"ok": true, ...results}` or `{"ok": false, "step", "error", ...results}` as the
 * last stdout line and exits 0 / 1. ctx: {browser, page, results, step(name), shot(name),
 * fail(msg), pageErrors, consoleErrors}.
 */
export async function run(name, body, { deadlineMs = 60000, args = [] } = {}) {
  const started = Date.now();
  const results = { test: name, steps: [] };
  const artifacts = env('ARTIFACTS');
  fs.mkdirSync(artifacts, { recursive: true });
  let browser = null;
  let current = 'launch';
  const finish = (ok, error) => {
    results.ok = ok;
    if (!ok) { results.step = current; results.error = String(error?.message || error); }
    results.elapsed_ms = Date.now() - started;
    process.stdout.write(JSON.stringify(results) + '\n');
  };
  // Never hang: past the deadline the browser is killed and the script fails.
  const watchdog = setTimeout(() => {
    log(`deadline of ${deadlineMs} ms passed during step "${current}"`);
    try { browser?.process()?.kill('SIGKILL'); } catch { /* gone */ }
    finish(false, `deadline of ${deadlineMs} ms passed`);
    process.exit(1);
  }, deadlineMs);
  const pageErrors = [], consoleErrors = [];
  try {
    browser = await puppeteer.launch({
      executablePath: env('CHROMIUM', '/usr/bin/chromium'),
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', ...args],
      protocolTimeout: 30000,
    });
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    page.setDefaultTimeout(10000);
    page.on('pageerror', (e) => { pageErrors.push(String(e.message || e)); log('page error:', e.message || e); });
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    const ctx = {
      browser, page, results, pageErrors, consoleErrors,
      step(s) { current = s; results.steps.push(s); log('step:', s); },
      async shot(label, p = page) {
        const file = path.join(artifacts, `${name}-${label}.png`);
        await p.screenshot({ path: file, fullPage: false });
        (results.screenshots ||= []).push(file);
      },
      fail(message) { throw new StepError(current, message); },
    };
    await body(ctx);
    results.page_errors = pageErrors;
    results.console_errors = consoleErrors;
    finish(true);
  } catch (e) {
    log('FAILED in step', current, '-', e.message || e);
    results.page_errors = pageErrors;
    results.console_errors = consoleErrors;
    try {
      const pages = browser ? await browser.pages() : [];
      if (pages.length) await pages[pages.length - 1].screenshot({ path: path.join(artifacts, `${name}-FAILED.png`) });
    } catch { /* best effort */ }
    finish(false, e);
  } finally {
    clearTimeout(watchdog);
    try { await Promise.race([browser?.close(), sleep(5000)]); } catch { /* closing */ }
    try { browser?.process()?.kill('SIGKILL'); } catch { /* closed */ }
  }
  process.exit(results.ok ? 0 : 1);
}

/** Waits until `fn(...args)` is truthy in the page; a timeout names `what`. */
export async function until(page, what, fn, { timeout = 10000, polling = 100, args = [] } = {}) {
  try {
    const handle = await page.waitForFunction(fn, { timeout, polling }, ...args);
    const value = await handle.jsonValue().catch(() => true);
    await handle.dispose();
    return value;
  } catch (e) {
    if (/timeout|Waiting failed/i.test(e.message)) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    throw e;
  }
}

/** The text of the first element matching `selector`, or null. */
export const text = (page, selector) => page.$eval(selector, (el) => el.textContent.trim()).catch(() => null);

/** Waits for the dashboard's page `name` (body[data-page]) after a navigation. */
export async function onPage(page, name, timeout = 10000) {
  await until(page, `the ${name} page`, (n) => window.synopticonReady === true && document.body.dataset.page === n, { timeout, args: [name] });
}

/** REST from the test itself (Node's fetch), with an optional token. Throws on a network error. */
export async function rest(base, method, p, body, token) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10000) });
  const t = await res.text();
  let json = null;
  try { json = t ? JSON.parse(t) : null; } catch { json = t; }
  return { status: res.status, body: json };
}
