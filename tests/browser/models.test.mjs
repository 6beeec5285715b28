// Models pages: an approver signs in through the token form, finds the pending production
// promotion with the approval it still needs, approves it, and the promotion completes: the
// alias points at the version on the page and in the API.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  apiGet,
  env,
  eventually,
  baseUrl,
  launchBrowser,
  saveScreenshot,
  waitReady,
  withPage,
} from './helpers.mjs';

const approverToken = env('RUNLEDGER_UI_APPROVER_TOKEN');
const viewerToken = env('RUNLEDGER_UI_VIEWER_TOKEN');
const model = env('RUNLEDGER_UI_MODEL');
const promotionId = env('RUNLEDGER_UI_PENDING_PROMOTION');

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Enters `token` in the token form, which the page shows when the API returns 401. */
async function signIn(page, token) {
  const form = page.locator('[data-testid=token-form]');
  await form.waitFor({ state: 'visible', timeout: 10_000 });
  await form.locator('input[name=token]').fill(token);
  await form.locator('button[type=submit], input[type=submit]').first().click();
}

test('approver approves the pending promotion from the model page', async () => {
  const pending = await apiGet(`/api/v1/promotions/${promotionId}`, viewerToken);
  assert.equal(pending.status, 'pending', 'the fixture promotion waits');
  assert.equal(pending.alias, 'production');
  // A stored promotion keeps what a pending policy still needs only in its decision's reason.
  const waiting = pending.decisions.find((decision) => decision.decision === 'pending');
  assert.match(waiting?.reason ?? '', /\b1 more approval/, 'one more approval is needed');
  const version = String(pending.version);

  await withPage(browser, 'model-approved', {}, async (page) => {
    await page.goto(`${baseUrl()}/models`);
    await signIn(page, approverToken);
    await waitReady(page, 'models');
    await saveScreenshot(page, 'models');
    const stored = await page.evaluate(() => window.sessionStorage.getItem('runledger.token'));
    assert.equal(stored, approverToken, 'the token is kept in sessionStorage');
    const whoami = await page.locator('[data-testid=whoami]').innerText();
    assert.match(whoami, /bob/, `whoami names the approver: ${whoami}`);
    assert.match(whoami, /approver/, `whoami names the role: ${whoami}`);

    await page.locator(`[data-testid=models-list] a[data-model="${model}"]`).click();
    await waitReady(page, 'model');
    await saveScreenshot(page, 'model-pending');
    const item = page.locator(
      `[data-testid=pending-promotions] [data-promotion-id="${promotionId}"]`,
    );
    const text = await item.innerText();
    assert.match(text, /production/, `the promotion names the alias: ${text}`);
    assert.match(text, new RegExp(`\\b${version}\\b`), `the promotion names the version: ${text}`);
    assert.match(text, /alice|1\s*(of|\/)\s*2/, `the promotion shows alice's approval: ${text}`);
    assert.match(text, /need|more|missing/i, `the promotion shows what is still needed: ${text}`);
    const button = item.locator('button[data-testid=approve]');
    assert.ok(await button.isEnabled(), 'an approver can approve');

    await item.locator('[data-testid=approve-comment]').fill('metrics look right in the UI test');
    await button.click();

    await eventually(async () => {
      assert.equal(await item.count(), 0, 'the completed promotion leaves the pending list');
    }, 15_000);
    const alias = page.locator('[data-testid=aliases] [data-alias=production]');
    await eventually(async () => {
      assert.match(await alias.innerText(), new RegExp(`\\b${version}\\b`), 'production alias');
    }, 15_000);
    const auditRows = await page.locator('[data-testid=audit-log] tr').allInnerTexts();
    assert.ok(
      auditRows.some((row) => row.includes('bob') && row.includes('approval.recorded')),
      `the audit log lists bob's approval: ${auditRows.length} rows`,
    );
  });

  const aliases = await apiGet(`/api/v1/models/${model}/aliases`, viewerToken);
  assert.equal(aliases.aliases.production, pending.version, 'the API has the alias moved');
  const done = await apiGet(`/api/v1/promotions/${promotionId}`, viewerToken);
  assert.equal(done.status, 'completed', 'the promotion completed');
  const approvers = done.approvals.map((approval) => approval.approver);
  assert.ok(approvers.includes('bob'), `bob's approval is recorded: ${approvers}`);
});
