// Compare page of the two wine runs, which differ only in alpha: the alpha row is marked as
// differing and the seed row is not, the metrics are overlaid in charts, and the artifacts
// that changed are listed as differing.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiGet, env, gotoReady, launchBrowser, withPage } from './helpers.mjs';

const token = env('RUNLEDGER_UI_VIEWER_TOKEN');
const [runA, runB] = env('RUNLEDGER_UI_RUN_IDS').split(',');

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Returns the class list and `data-differs` of the params row of `key`. */
async function paramRow(page, key) {
  const row = page.locator(`[data-testid=compare-params] tr[data-param="${key}"]`);
  assert.equal(await row.count(), 1, `one params row for ${key}`);
  return {
    classes: (await row.getAttribute('class')) ?? '',
    differs: await row.getAttribute('data-differs'),
    text: await row.innerText(),
  };
}

/** Returns the `STEP.OUTPUT` names of outputs whose digests differ between two run details. */
function changedOutputs(first, second) {
  const digests = (detail) =>
    new Map(
      detail.steps.flatMap((step) => step.outputs.map((out) => [`${step.name}.${out.name}`, out.digest])),
    );
  const a = digests(first);
  const b = digests(second);
  return [...a.keys()].filter((name) => b.has(name) && a.get(name) !== b.get(name));
}

test('compare marks alpha as the differing param', async () => {
  const [detailA, detailB] = await Promise.all([
    apiGet(`/api/v1/runs/${runA}`, token),
    apiGet(`/api/v1/runs/${runB}`, token),
  ]);
  assert.notEqual(detailA.params.alpha, detailB.params.alpha, 'the fixture differs in alpha');
  assert.equal(detailA.params.seed, detailB.params.seed, 'the fixture shares the seed');
  await withPage(browser, 'compare', { token }, async (page) => {
    await gotoReady(page, `/compare?runs=${runA},${runB}`, 'compare');

    const alpha = await paramRow(page, 'alpha');
    assert.ok(alpha.classes.split(/\s+/).includes('diff'), `alpha row class "${alpha.classes}"`);
    assert.equal(alpha.differs, 'true', 'alpha row data-differs');
    assert.ok(alpha.text.includes(detailA.params.alpha), `alpha row shows run A's value`);
    assert.ok(alpha.text.includes(detailB.params.alpha), `alpha row shows run B's value`);
    const seed = await paramRow(page, 'seed');
    assert.ok(!seed.classes.split(/\s+/).includes('diff'), `seed row class "${seed.classes}"`);
    assert.notEqual(seed.differs, 'true', 'seed row data-differs');

    const metrics = page.locator('[data-testid=compare-metrics]');
    const drawn = await metrics.locator('canvas, svg').count();
    assert.ok(drawn > 0, 'the metrics are drawn as charts');

    const changed = changedOutputs(detailA, detailB);
    assert.ok(changed.includes('train.model'), `the model changed: ${changed}`);
    const differing = page.locator('[data-testid=compare-digests] [data-differs=true]');
    const rows = await differing.allInnerTexts();
    assert.ok(rows.length > 0, 'the digests table lists differing rows');
    assert.ok(
      rows.some((text) => text.includes('model')),
      `a differing row is the train step's model: ${JSON.stringify(rows)}`,
    );
  });
});
