// Run page for ids that name no run: a well-formed UUID that is not recorded and a text that is
// not a UUID. Both must show a clear error that names the id, never a blank page.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { apiGetRaw, env, errorText, gotoReady, launchBrowser, withPage } from './helpers.mjs';

const token = env('RUNLEDGER_UI_VIEWER_TOKEN');

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Opens the run page of `id` and returns the error it shows. */
async function errorFor(page, id) {
  await gotoReady(page, `/runs/${encodeURIComponent(id)}`, 'run');
  const message = await errorText(page);
  assert.notEqual(message, '', `the page of run ${id} shows an error`);
  assert.ok(message.includes(id), `the error names the id ${id}: ${message}`);
  return message;
}

test('unknown run id shows a not-found error', async () => {
  const id = randomUUID();
  const { status } = await apiGetRaw(`/api/v1/runs/${id}`, token);
  assert.equal(status, 404, 'the API has no such run');
  await withPage(browser, 'run-unknown', { token }, async (page) => {
    const message = await errorFor(page, id);

    assert.match(message, /no run|not found/i, `the error says the run is missing: ${message}`);
    assert.equal(await page.locator('[data-testid=timeline-step]').count(), 0, 'no timeline');
    const links = await page.locator('a[href="/runs"]').count();
    assert.ok(links > 0, 'a link leads back to the runs list');
  });
});

test('malformed run id shows an invalid-id error', async () => {
  const id = 'not-a-uuid';
  const { status } = await apiGetRaw(`/api/v1/runs/${id}`, token);
  assert.equal(status, 400, 'the API rejects the id');
  await withPage(browser, 'run-invalid-id', { token }, async (page) => {
    const message = await errorFor(page, id);

    assert.match(message, /not a run id|invalid|uuid/i, `the error explains the id: ${message}`);
  });
});
