// Shared helpers of the browser scenarios: settings from the environment that
// tests/tests/web_ui.rs sets, Chromium through playwright-core, pages that wait for the UI's
// `data-ready` marker, screenshots, and calls of the native API for the expected values.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Debian's Chromium; playwright-core never downloads a browser here. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Flags this machine needs: no sandbox (tests run as root), no GPU, and no traffic to Google's
 * services (QUIC, component updates, sync, background fetches). playwright-core adds
 * `--headless` and a fresh `--user-data-dir` itself.
 */
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Maximum wait for a page to load its data and set `data-ready`, in milliseconds. */
export const READY_TIMEOUT_MS = 20_000;

/** Maximum wait for one page action, such as a click or reading an element's text, in milliseconds. */
export const ACTION_TIMEOUT_MS = 15_000;

/** Returns the environment variable `name`, or throws naming who sets it. */
export function env(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(
      `${name} is not set: run the browser tests through ` +
        '`cargo test -p runledger-tests --test web_ui`, which starts the server and sets it',
    );
  }
  return value;
}

/** Returns the server's base URL, such as `http://127.0.0.1:40123`. */
export function baseUrl() {
  return env('RUNLEDGER_UI_BASE_URL');
}

/** Starts headless Chromium. */
export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
}

/**
 * Opens a page in a fresh browser context. With `token`, the page starts with the token in
 * sessionStorage under `runledger.token`, as if the user had entered it in the token form.
 * The page records uncaught errors and console errors in `page.problems` for failure messages.
 */
export async function openPage(browser, { token } = {}) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  if (token) {
    await context.addInitScript((value) => {
      window.sessionStorage.setItem('runledger.token', value);
    }, token);
  }
  context.setDefaultTimeout(ACTION_TIMEOUT_MS);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(`console: ${message.text()}`);
  });
  return page;
}

/**
 * Opens a page, runs `body(page)`, and saves a full-page screenshot named `name` whether the
 * body passed or failed, so a failure can be seen.
 */
export async function withPage(browser, name, options, body) {
  const page = await openPage(browser, options);
  try {
    await body(page);
  } finally {
    await saveScreenshot(page, name).catch((error) => {
      console.error(`screenshot ${name} failed: ${error.message}`);
    });
    await page.context().close();
  }
}

/** Saves a full-page screenshot as `NAME.png` in RUNLEDGER_UI_SCREENSHOT_DIR. */
export async function saveScreenshot(page, name) {
  const dir = env('RUNLEDGER_UI_SCREENSHOT_DIR');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}

/** Navigates to `path` on the server and waits until the page sets `data-ready` to `ready`. */
export async function gotoReady(page, path, ready) {
  await page.goto(baseUrl() + path);
  await waitReady(page, ready);
}

/**
 * Waits until `document.body.dataset.ready` is `ready`. On timeout, throws with what the page
 * shows instead: its `data-ready`, its error element, its uncaught errors and its text.
 */
export async function waitReady(page, ready, timeout = READY_TIMEOUT_MS) {
  try {
    await page.waitForFunction(
      (name) => document.body !== null && document.body.dataset.ready === name,
      ready,
      { timeout, polling: 'raf' },
    );
  } catch (error) {
    const state = await describePage(page);
    throw new Error(`${page.url()} did not set data-ready="${ready}" within ${timeout} ms; ${state}`, {
      cause: error,
    });
  }
}

/** Returns a one-line description of the page's state for failure messages. */
export async function describePage(page) {
  const state = await page
    .evaluate(() => ({
      ready: document.body?.dataset.ready ?? null,
      error: document.querySelector('[data-testid=error]')?.textContent?.trim() ?? null,
      text: (document.body?.innerText ?? '').replace(/\s+/g, ' ').slice(0, 400),
    }))
    .catch((error) => ({ evaluateFailed: error.message }));
  return `page state ${JSON.stringify(state)}, page problems ${JSON.stringify(page.problems ?? [])}`;
}

/**
 * Calls `check()` until it returns without throwing, and rethrows its last error after
 * `timeout` milliseconds.
 */
export async function eventually(check, timeout = 10_000, interval = 100) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** Sends `GET PATH` to the native API with `token` and returns the JSON body. */
export async function apiGet(path, token) {
  const response = await fetch(baseUrl() + path, {
    headers: { Authorization: `Bearer ${token}` },
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`GET ${path} returned ${response.status}: ${text}`);
  }
  return JSON.parse(text);
}

/** Sends `GET PATH` with `token` and returns the status and the JSON body, for error cases. */
export async function apiGetRaw(path, token) {
  const response = await fetch(baseUrl() + path, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

/** Returns the `data-run-id` of every row of the runs table, top to bottom. */
export async function runRowIds(page) {
  return page.locator('[data-testid=runs-table] tr[data-run-id]').evaluateAll((rows) =>
    rows.map((row) => row.dataset.runId),
  );
}

/** Returns the text of the page's `[data-testid=error]` elements, joined. */
export async function errorText(page) {
  const texts = await page.locator('[data-testid=error]').allInnerTexts();
  return texts.join(' ').trim();
}
