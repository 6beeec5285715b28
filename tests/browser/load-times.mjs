// Load times of the runs page and of one run's page in Chromium, from navigation start to the
// moment the page sets `data-ready`. `cargo xtask bench ui` runs this file to print them:
//
//   node load-times.mjs   (with the RUNLEDGER_UI_* variables that tests/benches/ui_load.rs sets)
//
// Each page is loaded once in a fresh browser context (cold: nothing cached) and then
// `warmLoads` times in one context (warm: the scripts come from the browser's HTTP cache).

import { baseUrl, env, launchBrowser, openPage, saveScreenshot, waitReady } from './helpers.mjs';

/**
 * Records in `window.__readyAt[NAME]` the time, in milliseconds since navigation start, at
 * which `document.body.dataset.ready` first became NAME.
 */
function recordReadyTimes() {
  window.__readyAt = {};
  const record = () => {
    const name = document.body?.dataset.ready;
    if (name && window.__readyAt[name] === undefined) {
      window.__readyAt[name] = performance.now();
    }
  };
  new MutationObserver(record).observe(document, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ['data-ready'],
  });
}

/** Loads `path` in `page`, waits for `ready`, and returns the milliseconds it took. */
async function timeLoad(page, path, ready) {
  await page.goto(baseUrl() + path);
  await waitReady(page, ready);
  const elapsed = await page.evaluate((name) => window.__readyAt[name], ready);
  if (typeof elapsed !== 'number') {
    throw new Error(`no ready time was recorded for ${path}`);
  }
  return elapsed;
}

/** Opens a page with the token and the ready-time recorder. */
async function timedPage(browser, token) {
  const page = await openPage(browser, { token });
  await page.context().addInitScript(recordReadyTimes);
  return page;
}

/**
 * Measures one page: a cold load in a fresh context, then `warmLoads` loads in another
 * context after one unmeasured load. Calls `inspect(page)` after the last load, so a test can
 * check what the page displayed, and saves a screenshot named `name`.
 */
async function measurePage(browser, { token, path, ready, warmLoads, name, inspect }) {
  const coldPage = await timedPage(browser, token);
  const cold = await timeLoad(coldPage, path, ready);
  await coldPage.context().close();

  const page = await timedPage(browser, token);
  try {
    await timeLoad(page, path, ready);
    const warm = [];
    for (let index = 0; index < warmLoads; index += 1) {
      warm.push(await timeLoad(page, path, ready));
    }
    const content = inspect ? await inspect(page) : undefined;
    return { path, cold, warm, content };
  } finally {
    await saveScreenshot(page, name).catch(() => {});
    await page.context().close();
  }
}

/** Returns the middle value of `values` (the upper one of the two middle values). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Reads what the runs page shows: its rows and whether it offers a next page. */
async function inspectRuns(page) {
  return {
    rows: await page.locator('[data-testid=runs-table] tr[data-run-id]').count(),
    nextPage: await page.locator('[data-testid=next-page]').isEnabled(),
  };
}

/** Reads what the run page shows: each metric chart's drawn and logged points. */
async function inspectRun(page) {
  return page.locator('[data-testid=metric-chart]').evaluateAll((nodes) =>
    nodes.map((node) => ({
      key: node.dataset.metric,
      points: Number(node.dataset.points),
      total: Number(node.dataset.totalPoints),
    })),
  );
}

/**
 * Measures the runs page and the page of the run `runId` (the one with the long series), and
 * returns their cold and warm load times with what each page showed.
 */
export async function measureLoadTimes({ token, runId, warmLoads }) {
  const browser = await launchBrowser();
  try {
    const runs = await measurePage(browser, {
      token,
      path: '/runs',
      ready: 'runs',
      warmLoads,
      name: 'load-runs',
      inspect: inspectRuns,
    });
    const run = await measurePage(browser, {
      token,
      path: `/runs/${runId}`,
      ready: 'run',
      warmLoads,
      name: 'load-run',
      inspect: inspectRun,
    });
    return { runs, run, browser: browser.version() };
  } finally {
    await browser.close();
  }
}

/** Formats one page's figures as a line of text. */
export function describe(label, figures) {
  const warm = figures.warm.map((ms) => ms.toFixed(0)).join(', ');
  return (
    `${label}: cold ${figures.cold.toFixed(0)} ms, warm median ${median(figures.warm).toFixed(0)} ms ` +
    `(max ${Math.max(...figures.warm).toFixed(0)} ms; all: ${warm})`
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const figures = await measureLoadTimes({
    token: env('RUNLEDGER_UI_ADMIN_TOKEN'),
    runId: env('RUNLEDGER_UI_LONG_RUN_ID'),
    warmLoads: Number(process.env.RUNLEDGER_UI_WARM_LOADS ?? 10),
  });
  console.log(JSON.stringify(figures));
}
