// Access control in the UI: without a token the page shows the token form instead of data, and
// shows it again after a wrong token. A viewer sees the pending promotion but cannot approve.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  apiGet,
  baseUrl,
  env,
  eventually,
  gotoReady,
  launchBrowser,
  withPage,
} from './helpers.mjs';

const viewerToken = env('RUNLEDGER_UI_VIEWER_TOKEN');
const model = env('RUNLEDGER_UI_MODEL');
const viewerPromotion = env('RUNLEDGER_UI_VIEWER_PROMOTION');

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

test('page without a token shows the token form', async () => {
  const response = await fetch(`${baseUrl()}/api/v1/runs`);
  assert.equal(response.status, 401, 'the API requires a token');
  await withPage(browser, 'token-form', {}, async (page) => {
    await page.goto(`${baseUrl()}/runs`);

    const form = page.locator('[data-testid=token-form]');
    await form.waitFor({ state: 'visible' });
    assert.ok(await form.locator('input[name=token]').isVisible(), 'the form has a token input');
    assert.equal(await page.locator('tr[data-run-id]').count(), 0, 'no run is shown');
  });
});

test('wrong token is asked for again', async () => {
  await withPage(browser, 'token-form-rejected', {}, async (page) => {
    await page.goto(`${baseUrl()}/runs`);
    const form = page.locator('[data-testid=token-form]');
    await form.waitFor({ state: 'visible' });

    await form.locator('input[name=token]').fill('not-a-valid-token');
    await form.locator('button[type=submit], input[type=submit]').first().click();

    await eventually(async () => {
      assert.ok(await form.isVisible(), 'the token form is shown again');
      assert.equal(await page.locator('tr[data-run-id]').count(), 0, 'no run is shown');
    });
  });
});

test('viewer sees the pending promotion without an approve button', async () => {
  const pending = await apiGet(`/api/v1/promotions/${viewerPromotion}`, viewerToken);
  assert.equal(pending.status, 'pending', 'the canary promotion waits for approvals');
  await withPage(browser, 'model-viewer', { token: viewerToken }, async (page) => {
    await gotoReady(page, `/models/${model}`, 'model');

    const whoami = await page.locator('[data-testid=whoami]').innerText();
    assert.match(whoami, /carol/, `whoami names the viewer: ${whoami}`);
    assert.match(whoami, /viewer/, `whoami names the role: ${whoami}`);
    const item = page.locator(
      `[data-testid=pending-promotions] [data-promotion-id="${viewerPromotion}"]`,
    );
    assert.match(await item.innerText(), /canary/, 'the pending canary promotion is listed');
    const buttons = page.locator('button[data-testid=approve]');
    const count = await buttons.count();
    for (let index = 0; index < count; index += 1) {
      const button = buttons.nth(index);
      const usable = (await button.isVisible()) && (await button.isEnabled());
      assert.ok(!usable, 'a viewer has no usable approve button');
    }
  });
});
