// Run page of a wine run: metadata, and metric charts with the API's point counts. The
// timeline has one bar per step run and shows the step's details on click. The lineage graph
// reaches the CSV dataset by its SHA-256, and the artifacts have download links and previews.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { apiGet, env, gotoReady, launchBrowser, withPage } from './helpers.mjs';

const token = env('RUNLEDGER_UI_VIEWER_TOKEN');
const [runA, runB] = env('RUNLEDGER_UI_RUN_IDS').split(',');

/** The example's CSV, whose SHA-256 is the id of the dataset node at the start of lineage. */
const WINE_CSV = new URL('../../examples/wine-quality/data/winequality-red.csv', import.meta.url);

/** Media types the run page previews inline. */
const PREVIEWABLE = /^(image\/(svg\+xml|png)|text\/)/;

let browser;
let detail;

before(async () => {
  browser = await launchBrowser();
  detail = await apiGet(`/api/v1/runs/${runA}`, token);
});

after(async () => {
  await browser?.close();
});

/** Returns the metric charts' key, drawn points and logged points. */
async function charts(page) {
  return page.locator('[data-testid=metrics] [data-testid=metric-chart]').evaluateAll((nodes) =>
    nodes.map((node) => ({
      key: node.dataset.metric,
      points: Number(node.dataset.points),
      total: Number(node.dataset.totalPoints),
    })),
  );
}

/** Returns the timeline bars' step name, status, cache flag and attempts. */
async function timelineBars(page) {
  return page.locator('[data-testid=timeline] [data-testid=timeline-step]').evaluateAll((nodes) =>
    nodes.map((node) => ({
      step: node.dataset.step,
      status: node.dataset.status,
      cached: node.dataset.cached,
      attempts: node.dataset.attempts,
    })),
  );
}

test('run page shows metadata, params and charts with every logged point', async () => {
  await withPage(browser, 'run', { token }, async (page) => {
    await gotoReady(page, `/runs/${runA}`, 'run');

    const meta = page.locator('[data-testid=run-meta]');
    const metaText = await meta.innerText();
    assert.ok(metaText.includes(runA), `run-meta shows the run id: ${metaText}`);
    assert.ok(metaText.includes(detail.pipeline.name), `run-meta shows the pipeline: ${metaText}`);
    assert.ok(
      metaText.includes(detail.pipeline.digest.slice(0, 8)),
      `run-meta shows the definition digest ${detail.pipeline.digest}: ${metaText}`,
    );
    assert.equal(await meta.getAttribute('data-status'), detail.run.status);
    const params = await page.locator('[data-testid=params]').innerText();
    assert.ok(params.includes('alpha'), `params list alpha: ${params}`);
    assert.ok(params.includes(detail.params.alpha), `params show alpha ${detail.params.alpha}`);

    const drawn = await charts(page);
    assert.ok(drawn.length > 0, 'the run has metric charts');
    assert.ok(
      drawn.some((chart) => chart.key === 'train_loss'),
      `a chart of train_loss: ${JSON.stringify(drawn)}`,
    );
    for (const chart of drawn) {
      const key = encodeURIComponent(chart.key);
      const history = await apiGet(`/api/v1/runs/${runA}/metrics/${key}/history?max_points=4`, token);
      assert.equal(chart.total, history.total_points, `data-total-points of ${chart.key}`);
      assert.ok(chart.points > 0, `chart ${chart.key} draws points`);
      assert.ok(chart.points <= chart.total, `chart ${chart.key} draws at most what was logged`);
    }
  });
});

test('timeline has one bar per step run and opens its details', async () => {
  await withPage(browser, 'run-timeline', { token }, async (page) => {
    await gotoReady(page, `/runs/${runA}`, 'run');

    const bars = await timelineBars(page);
    const expected = detail.steps.map((step) => ({ step: step.name, status: step.status }));
    const drawnBars = bars.map(({ step, status }) => ({ step, status }));
    const byName = (x, y) => x.step.localeCompare(y.step);
    assert.deepEqual(drawnBars.sort(byName), expected.sort(byName), 'bars match the step runs');

    await page.locator('[data-testid=timeline-step][data-step=train]').click();

    const stepDetail = page.locator('[data-testid=step-detail]');
    await stepDetail.waitFor({ state: 'visible', timeout: 10_000 });
    const text = await stepDetail.innerText();
    const train = detail.steps.find((step) => step.name === 'train');
    assert.ok(text.includes('train'), `step detail names the step: ${text}`);
    assert.ok(text.includes('alpha'), `step detail lists the params: ${text}`);
    assert.ok(text.includes(String(train.params.alpha)), `step detail shows alpha: ${text}`);
  });
});

test('timeline marks the cached steps of the second run', async () => {
  const second = await apiGet(`/api/v1/runs/${runB}`, token);
  const cachedSteps = second.steps.filter((step) => step.cached_from !== null);
  assert.ok(cachedSteps.length > 0, 'the second run reused steps of the first');
  await withPage(browser, 'run-cached', { token }, async (page) => {
    await gotoReady(page, `/runs/${runB}`, 'run');

    const bars = await timelineBars(page);
    for (const step of second.steps) {
      const bar = bars.find((item) => item.step === step.name);
      assert.ok(bar, `a bar for step ${step.name}`);
      const cached = step.cached_from !== null;
      assert.equal(bar.cached, String(cached), `data-cached of ${step.name}`);
      assert.equal(bar.attempts, String(step.attempts), `data-attempts of ${step.name}`);
    }
  });
});

test('lineage graph reaches the CSV dataset', async () => {
  const csvDigest = createHash('sha256').update(readFileSync(WINE_CSV)).digest('hex');
  const lineage = await apiGet(`/api/v1/runs/${runA}/lineage`, token);
  await withPage(browser, 'run-lineage', { token }, async (page) => {
    await gotoReady(page, `/runs/${runA}`, 'run');

    const graph = page.locator('[data-testid=run-lineage]');
    const dataset = graph.locator(
      `svg g[data-testid=lineage-node][data-kind=dataset][data-id="${csvDigest}"]`,
    );
    await dataset.waitFor({ state: 'visible', timeout: 10_000 });
    const label = (await dataset.textContent()).trim();
    assert.notEqual(label, '', 'the dataset node has a visible label');
    const nodes = await graph.locator('g[data-testid=lineage-node]').count();
    assert.equal(nodes, lineage.nodes.length, 'one node per node of the API graph');
    const edges = await graph.locator('path[data-testid=lineage-edge]').count();
    assert.equal(edges, lineage.edges.length, 'one edge per edge of the API graph');
  });
});

test('artifacts are listed with download links and previews', async () => {
  await withPage(browser, 'run-artifacts', { token }, async (page) => {
    await gotoReady(page, `/runs/${runA}`, 'run');

    const artifacts = page.locator('[data-testid=artifacts]');
    const hrefs = await artifacts
      .locator('a[data-testid=artifact-download]')
      .evaluateAll((links) => links.map((link) => link.href));
    assert.ok(hrefs.length > 0, 'the run lists artifacts');
    for (const artifact of detail.artifacts) {
      assert.ok(
        hrefs.some((href) => href.includes(artifact.digest)),
        `a download link for ${artifact.name} (${artifact.digest})`,
      );
    }
    const previewable = detail.artifacts.filter((item) => PREVIEWABLE.test(item.media_type));
    const previews = await artifacts.locator('[data-testid=artifact-preview]').count();
    if (previewable.length > 0) {
      assert.ok(previews > 0, `previews of ${previewable.map((item) => item.name)}`);
    }
  });
});
