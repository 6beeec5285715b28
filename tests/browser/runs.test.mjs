// Runs page: the table lists the wine runs, and the filter narrows them to the run with alpha
// 0.5 as the API does. An invalid filter shows the parser's error. Headers sort, a metric
// column can be added and sorted by, and the selected runs open the compare page.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  apiGet,
  apiGetRaw,
  env,
  errorText,
  eventually,
  gotoReady,
  launchBrowser,
  runRowIds,
  waitReady,
  withPage,
} from './helpers.mjs';

const token = env('RUNLEDGER_UI_VIEWER_TOKEN');
const [runA, runB] = env('RUNLEDGER_UI_RUN_IDS').split(',');

let browser;
let details;

before(async () => {
  browser = await launchBrowser();
  details = {
    [runA]: await apiGet(`/api/v1/runs/${runA}`, token),
    [runB]: await apiGet(`/api/v1/runs/${runB}`, token),
  };
});

after(async () => {
  await browser?.close();
});

/** Types `text` into the filter box and applies it with Enter. */
async function applyFilter(page, text) {
  const filter = page.locator('[data-testid=filter]');
  await filter.fill(text);
  await filter.press('Enter');
}

/** Returns the ids of the API's runs for a filter, in the API's order. */
async function apiRunIds(filter) {
  const query = new URLSearchParams({ filter, page_size: '1000' });
  const list = await apiGet(`/api/v1/runs?${query}`, token);
  return list.items.map((run) => run.id);
}

/** Returns the latest value of metric `key` of a run detail. */
function latestMetric(detail, key) {
  const metric = detail.metrics.find((item) => item.key === key);
  assert.ok(metric, `run ${detail.run.id} has no metric ${key}: ${JSON.stringify(detail.metrics)}`);
  return metric.value;
}

/**
 * Clicks the header `th[data-sort=KEY]` twice and checks that the rows of runs A and B appear
 * in one order after the first click and in the other after the second.
 */
async function checkSortToggles(page, key, ascending) {
  const header = page.locator(`th[data-sort="${key}"]`);
  const descending = [...ascending].reverse();
  const pairOrder = async () => (await runRowIds(page)).filter((id) => id === runA || id === runB);

  await header.click();
  const first = await eventually(async () => {
    const order = await pairOrder();
    assert.ok(
      JSON.stringify(order) === JSON.stringify(ascending) ||
        JSON.stringify(order) === JSON.stringify(descending),
      `after one click on ${key}, rows ${JSON.stringify(order)} are in neither order`,
    );
    return order;
  });
  const expected = JSON.stringify(first) === JSON.stringify(ascending) ? descending : ascending;

  await header.click();
  await eventually(async () => {
    assert.deepEqual(await pairOrder(), expected, `a second click on ${key} reverses the order`);
  });
}

test('runs table lists both wine runs', async () => {
  await withPage(browser, 'runs', { token }, async (page) => {
    await gotoReady(page, '/runs', 'runs');

    const ids = await runRowIds(page);
    assert.ok(ids.includes(runA), `run ${runA} is listed: ${ids}`);
    assert.ok(ids.includes(runB), `run ${runB} is listed: ${ids}`);
    const listed = await apiRunIds('');
    assert.equal(ids.length, listed.length, 'one row per run of the API');
    const count = await page.locator('[data-testid=runs-count]').innerText();
    assert.match(count, new RegExp(`\\b${listed.length}\\b`), `runs-count "${count}"`);
  });
});

test('filter on alpha narrows the table as the API does', async () => {
  await withPage(browser, 'runs-filtered', { token }, async (page) => {
    await gotoReady(page, '/runs', 'runs');
    const alphaA = details[runA].params.alpha;
    const alphaB = details[runB].params.alpha;
    assert.notEqual(alphaA, alphaB, 'the fixture runs have different alpha');
    const filter = `params.alpha = '${alphaB}'`;
    const expected = await apiRunIds(filter);
    assert.deepEqual(expected, [runB], `the API lists only run B for ${filter}`);

    await applyFilter(page, filter);

    await eventually(async () => {
      assert.deepEqual(await runRowIds(page), expected, `rows after filter ${filter}`);
    });
    assert.equal(await errorText(page), '', 'a valid filter shows no error');
  });
});

test('invalid filter shows the parser error with its column', async () => {
  await withPage(browser, 'runs-invalid-filter', { token }, async (page) => {
    await gotoReady(page, '/runs', 'runs');
    const filter = "params.alpha ~ '0.5'";
    const { status, body } = await apiGetRaw(
      `/api/v1/runs?${new URLSearchParams({ filter })}`,
      token,
    );
    assert.equal(status, 400, `the API rejects ${filter}`);
    const column = /column (\d+)/.exec(body.error.message)?.[1];
    assert.ok(column, `the API error names a column: ${body.error.message}`);

    await applyFilter(page, filter);

    const message = await eventually(async () => {
      const text = await errorText(page);
      assert.notEqual(text, '', 'an error is shown');
      return text;
    });
    assert.match(message, /filter/i, `the error says the filter is at fault: ${message}`);
    assert.match(message, new RegExp(`column ${column}\\b`), `the error names column ${column}`);
    assert.ok(await page.locator('[data-testid=filter]').isVisible(), 'the filter stays usable');
  });
});

test('start time header toggles the order', async () => {
  await withPage(browser, 'runs-sorted', { token }, async (page) => {
    await gotoReady(page, '/runs', 'runs');
    const ascending = [runA, runB].sort(
      (x, y) => details[x].run.started_at - details[y].run.started_at,
    );
    assert.notEqual(
      details[runA].run.started_at,
      details[runB].run.started_at,
      'the runs started at different times',
    );

    await checkSortToggles(page, 'start_time', ascending);
  });
});

test('added metric column sorts by its values', async () => {
  await withPage(browser, 'runs-metric-column', { token }, async (page) => {
    await gotoReady(page, '/runs', 'runs');
    const input = page.locator('[data-testid=add-column]');

    await input.fill('metrics.test_rmse');
    await input.press('Enter');

    const header = page.locator('th[data-sort="metrics.test_rmse"]');
    await header.waitFor({ state: 'visible', timeout: 10_000 });
    const rmseA = latestMetric(details[runA], 'test_rmse');
    const rmseB = latestMetric(details[runB], 'test_rmse');
    assert.notEqual(rmseA, rmseB, 'alpha 0.1 and 0.5 give different test_rmse');
    const ascending = rmseA < rmseB ? [runA, runB] : [runB, runA];
    await checkSortToggles(page, 'metrics.test_rmse', ascending);
  });
});

test('selected runs open the compare page', async () => {
  await withPage(browser, 'runs-selected', { token }, async (page) => {
    await gotoReady(page, '/runs', 'runs');

    for (const id of [runA, runB]) {
      await page.locator(`tr[data-run-id="${id}"] input[data-testid=select-run]`).check();
    }
    await page.locator('[data-testid=compare-selected]').click();

    await waitReady(page, 'compare');
    const url = new URL(page.url());
    assert.equal(url.pathname, '/compare');
    const compared = (url.searchParams.get('runs') ?? '').split(',');
    assert.deepEqual([...compared].sort(), [runA, runB].sort(), `compare URL ${url}`);
  });
});
