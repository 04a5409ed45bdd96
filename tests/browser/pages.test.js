// Issue 7: /login and /account in headless Chromium (Debian's, driven by playwright-core), each
// test against a `taxgate demo` of its own. Run by tests/e2e/browser.rs, which sets TAXGATE_BIN;
// TAXGATE_SCREENSHOTS=<dir> keeps the screenshots (login.png, account.png, *-360.png) there.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startDemo, smsCode, faceCallback, launchBrowser } = require('./harness');

const ENT_A = '91140100MA0K123488';
const ENT_A_NAME = '太原示例科技有限公司';
const ENT_B = '91140100MA0K70011E';
const AGENCY = '91140100MA0K7002X6';
const WANG = { id: '140105199001011238', account: 'wangfang', password: 'Chang3-Me!now', phone: '13800138000' };
const ZHOU = { id: '310101198808080076', password: 'Zhou-Jie-2026', phone: '13900000006' };
const CHEN = { id: '140102197511110051', password: 'Chen-Jing-01', phone: '13900000004' };
const ZHAO = { id: '110101198001010045', password: '010045', phone: '13900000003' };
const LI = { id: '140105198503150022', password: 'Li-Lei-2026!', phone: '13900000001' };
const ZHANG = { id: '140105199207080036', password: 'Zhang-Wei-99' };

const WAIT_MS = 20000;
const TEST_OPTS = { timeout: 90000 };

let browser;
before(async function () { browser = await launchBrowser(); });
after(async function () { if (browser) await browser.close(); });

function shotDir(demo) {
  const dir = process.env.TAXGATE_SCREENSHOTS;
  if (!dir) return demo.dir;
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// One test: its own demo, its own browser context; on failure the error carries the page's URL,
// its uncaught errors and the demo's log tail.
function browserTest(name, body, viewport) {
  test(name, TEST_OPTS, async function () {
    const demo = await startDemo();
    const context = await browser.newContext({
      viewport: viewport || { width: 1280, height: 900 },
      locale: 'zh-CN',
      timezoneId: 'Asia/Shanghai',
      deviceScaleFactor: viewport && viewport.isMobile ? 2 : 1,
      isMobile: !!(viewport && viewport.isMobile),
      hasTouch: !!(viewport && viewport.isMobile),
    });
    context.setDefaultTimeout(WAIT_MS);
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', function (e) { problems.push('uncaught: ' + e.message); });
    page.on('console', function (m) {
      if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push('console: ' + m.text());
    });
    try {
      await body({ demo: demo, page: page, context: context });
      assert.deepEqual(problems, [], 'the page reported errors');
    } catch (e) {
      let where = '';
      try { where = page.url(); } catch (_) { /* closed */ }
      const extra = '\n  page: ' + where + '\n  page problems: ' + JSON.stringify(problems) + '\n' + demo.logs();
      if (e && typeof e === 'object') {
        e.message += extra;
        if (typeof e.stack === 'string') e.stack += extra; // what the reporter prints
      }
      throw e;
    } finally {
      await context.close();
      await demo.stop();
    }
  });
}

// ---- page helpers ---------------------------------------------------------------------------

async function text(page, selector) {
  return (await page.locator(selector).textContent()) || '';
}

// Wait until the element's text contains `want`; fail with what it shows instead.
async function waitText(page, selector, want) {
  try {
    await page.waitForFunction(function (args) {
      const el = document.querySelector(args[0]);
      return !!el && !el.closest('[hidden]') && el.textContent.indexOf(args[1]) >= 0;
    }, [selector, want], { timeout: WAIT_MS });
  } catch (e) {
    const got = await page.locator(selector).first().textContent().catch(function () { return '(absent)'; });
    assert.fail(selector + ' should show "' + want + '" but shows "' + got + '"');
  }
}

function isResponse(pathname, method) {
  return function (r) {
    return new URL(r.url()).pathname === pathname && r.request().method() === (method || 'POST');
  };
}

async function openLogin(page, demo) {
  await page.goto(demo.url + '/login');
  await page.locator('#login-submit').waitFor();
}

// Step 1 of /login: pick the entry, type the credentials, submit; the answer of /auth/login.
async function submitCredentials(page, entry, creds) {
  await page.click('#tab-' + entry);
  assert.equal(await page.getAttribute('#tab-' + entry, 'aria-selected'), 'true');
  if (creds.taxpayerId !== undefined) await page.fill('#login-taxpayer-id', creds.taxpayerId);
  await page.fill('#login-account', creds.account);
  await page.fill('#login-password', creds.password);
  const answer = page.waitForResponse(isResponse('/auth/login'));
  await page.click('#login-submit');
  return answer;
}

// Wait for the account centre to have loaded everything it asked for.
async function accountLoaded(page) {
  await page.waitForURL(/\/account$/);
  await page.locator('#account-main[aria-busy="false"]').waitFor();
  await page.locator('#current-identity').waitFor();
}

// Steps 1 and 2 with the SMS code from the demo's outbox; ends on a loaded /account (or on the
// forced password change when `expectPasswordStep`).
async function loginWithSms(page, demo, entry, creds, phone, expectPasswordStep) {
  const login = await submitCredentials(page, entry, creds);
  assert.equal(login.status(), 200, 'POST /auth/login: ' + (await login.text()));
  await page.locator('#step-factor').waitFor();
  await waitText(page, '#factor-phone', phone.slice(0, 3) + '****' + phone.slice(-4));
  const sent = page.waitForResponse(isResponse('/auth/sms/send'));
  await page.click('#sms-send');
  const sendAnswer = await sent;
  assert.equal(sendAnswer.status(), 200, 'POST /auth/sms/send: ' + (await sendAnswer.text()));
  // The countdown runs on the button.
  await waitText(page, '#sms-send', 's)');
  assert.equal(await page.isDisabled('#sms-send'), true);
  await page.fill('#sms-code', await smsCode(demo, phone));
  const verified = page.waitForResponse(isResponse('/auth/sms/verify'));
  await page.click('#sms-verify');
  assert.equal((await verified).status(), 200);
  if (expectPasswordStep) {
    await page.locator('#step-password').waitFor();
    return;
  }
  await accountLoaded(page);
}

// Start the face step (clicking its tab when both factors are offered), wait for the QR image to
// be loaded, sign the callback for the nonce the page received and let the page's own polling
// reach /account.
async function loginWithFace(page, demo, idNumber, clickTab) {
  const started = page.waitForResponse(isResponse('/auth/face/start'));
  if (clickTab) await page.click('#factor-tab-face');
  const start = await started;
  assert.equal(start.status(), 200);
  const nonce = (await start.json()).nonce;
  assert.ok(nonce, 'the face start answer carries a nonce');
  await page.waitForFunction(function () {
    const img = document.getElementById('face-qr');
    return img && !img.hidden && img.complete && img.naturalWidth > 0 && img.src.indexOf('/auth/face/qr?nonce=') >= 0;
  });
  assert.equal(await page.getAttribute('#face-qr', 'src'), '/auth/face/qr?nonce=' + encodeURIComponent(nonce));
  await waitText(page, '#face-status', '等待扫码验证');
  const cb = await faceCallback(demo, nonce, idNumber, 'pass');
  assert.equal(cb.status, 204, 'face callback: ' + cb.text);
  // No click: the page polls /auth/face/complete and moves on by itself.
  await accountLoaded(page);
  await waitText(page, '#cur-mfa', '扫码验证');
}

// A downstream call from the page, with the page's own cookie.
async function callBackend(page, pathname) {
  return page.evaluate(async function (p) {
    const r = await fetch(p, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    return { status: r.status, body: await r.json() };
  }, pathname);
}

// ---- the tests ------------------------------------------------------------------------------

browserTest('企业业务 with SMS: 王芳 at 91140100MA0K123488 reaches the account centre as 法定代表人', async function ({ demo, page }) {
  await openLogin(page, demo);
  assert.equal(await page.isHidden('#tab-legacy'), false, 'the demo keeps the legacy entry open for 30 days');
  await page.fill('#login-taxpayer-id', ENT_A);
  await page.fill('#login-account', WANG.account);
  await page.fill('#login-password', WANG.password);
  await page.screenshot({ path: path.join(shotDir(demo), 'login.png') });

  await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.phone);
  await waitText(page, '#cur-name', '王芳');
  assert.equal(await text(page, '#cur-person'), '1401**********1238');
  assert.equal(await text(page, '#cur-entry'), '企业业务');
  await waitText(page, '#cur-enterprise', ENT_A_NAME + ' ' + ENT_A);
  assert.equal(await text(page, '#cur-role'), '法定代表人');
  assert.equal(await text(page, '#cur-mfa'), '短信验证');
  // A manager sees the enterprise's personnel: 李雷's binding is still pending.
  await page.locator('#personnel-form').waitFor();
  await waitText(page, '#personnel-list', '李雷');
  await waitText(page, '#personnel-list', '待确认');
  await page.locator('[data-testid="identity-' + ENT_A + '-legal_representative"]').waitFor();
  await page.screenshot({ path: path.join(shotDir(demo), 'account.png'), fullPage: true });

  const r = await callBackend(page, '/api/invoice/issue');
  assert.equal(r.status, 200);
  assert.equal(r.body.called_by.person, WANG.id);
  assert.equal(r.body.called_by.enterprise, ENT_A);
});

browserTest('自然人业务 with SMS: 周杰 reaches the account centre in his own name', async function ({ demo, page }) {
  await openLogin(page, demo);
  await page.click('#tab-person');
  assert.equal(await page.isHidden('#login-taxpayer-id'), true, 'no taxpayer id in the person entry');
  await loginWithSms(page, demo, 'person', { account: ZHOU.id, password: ZHOU.password }, ZHOU.phone);
  await waitText(page, '#cur-name', '周杰');
  assert.equal(await text(page, '#cur-entry'), '自然人业务');
  assert.equal(await text(page, '#cur-enterprise'), '—');
  assert.equal(await page.isHidden('#personnel-section'), true, 'no personnel management without an enterprise');
  await page.locator('#authorizations-section').waitFor();
  await page.locator('#phone-section').waitFor();
  const r = await callBackend(page, '/api/personal/income');
  assert.equal(r.status, 200);
  assert.equal(r.body.called_by.person, ZHOU.id);
  assert.equal(r.body.called_by.entry, 'person');
});

browserTest('代理业务 with SMS: 陈静 of the agency enters client 91140100MA0K123488', async function ({ demo, page }) {
  await openLogin(page, demo);
  await loginWithSms(page, demo, 'agent', { taxpayerId: AGENCY, account: CHEN.id, password: CHEN.password }, CHEN.phone);
  await waitText(page, '#cur-name', '陈静');
  assert.equal(await text(page, '#cur-entry'), '代理业务');
  assert.equal(await text(page, '#cur-role'), '涉税服务人员');
  assert.equal(await text(page, '#cur-agency'), AGENCY);
  assert.equal(await text(page, '#cur-enterprise'), '—');

  const enter = page.locator('[data-testid="switch-' + ENT_A + '-agent"]');
  assert.equal((await enter.textContent()).trim(), '进入');
  const switched = page.waitForResponse(isResponse('/account/switch'));
  await enter.click();
  assert.equal((await switched).status(), 200);
  await waitText(page, '#cur-enterprise', ENT_A);
  await waitText(page, '#account-info', '已切换到');
  await page.locator('[data-testid="identity-' + ENT_A + '-agent"] .badge-current').waitFor();
  const r = await callBackend(page, '/api/query/returns');
  assert.equal(r.status, 200);
  assert.equal(r.body.called_by.enterprise, ENT_A);
  assert.equal(r.body.called_by.agency, AGENCY);
  assert.equal(r.body.called_by.role, 'agent');
});

browserTest('face login: the QR code loads, a signed callback passes, the page reaches /account by itself', async function ({ demo, page }) {
  await openLogin(page, demo);
  const login = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: WANG.id, password: WANG.password });
  assert.equal(login.status(), 200);
  await page.locator('#factor-tabs').waitFor();
  await loginWithFace(page, demo, WANG.id, true);
  await waitText(page, '#cur-name', '王芳');
  assert.equal(await text(page, '#cur-role'), '法定代表人');
});

browserTest('migrated user: forced password change, then the account centre and an identity switch', async function ({ demo, page }) {
  await openLogin(page, demo);
  await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: ZHAO.id, password: ZHAO.password }, ZHAO.phone, true);
  await waitText(page, '#password-heading', '修改初始密码');

  // The page refuses a weak password before asking the server.
  let posted = 0;
  page.on('request', function (r) { if (new URL(r.url()).pathname === '/auth/password') posted += 1; });
  await page.fill('#pw-old', ZHAO.password);
  await page.fill('#pw-new', 'short');
  await page.fill('#pw-repeat', 'short');
  await page.click('#pw-submit');
  await waitText(page, '#pw-new-error', '8–20');
  assert.equal(posted, 0);

  const fresh = 'Zhao-Min-2026!';
  await page.fill('#pw-new', fresh);
  await page.fill('#pw-repeat', fresh);
  const changed = page.waitForResponse(isResponse('/auth/password'));
  await page.click('#pw-submit');
  assert.equal((await changed).status(), 204);
  await accountLoaded(page);
  await waitText(page, '#cur-name', '赵敏');
  await waitText(page, '#cur-enterprise', ENT_A);
  assert.equal(await text(page, '#cur-role'), '财务负责人');
  // Now the account works: a manager's personnel list and a downstream call.
  await page.locator('#personnel-form').waitFor();
  const before = await callBackend(page, '/api/declare/vat');
  assert.equal(before.status, 200);
  assert.equal(before.body.called_by.enterprise, ENT_A);

  const target = page.locator('[data-testid="switch-' + ENT_B + '-tax_handler"]');
  assert.equal((await target.textContent()).trim(), '切换');
  const switched = page.waitForResponse(isResponse('/account/switch'));
  await target.click();
  assert.equal((await switched).status(), 200);
  await waitText(page, '#cur-enterprise', '晋阳贸易有限公司 ' + ENT_B);
  await waitText(page, '#cur-role', '办税员');
  await page.locator('[data-testid="identity-' + ENT_B + '-tax_handler"] .badge-current').waitFor();
  await page.locator('[data-testid="switch-' + ENT_A + '-finance_manager"]').waitFor();

  // The switch is the session's, not the page's: a reload shows it and the backend sees it.
  await page.reload();
  await accountLoaded(page);
  await waitText(page, '#cur-enterprise', ENT_B);
  const after = await callBackend(page, '/api/declare/vat');
  assert.equal(after.status, 200);
  assert.equal(after.body.called_by.enterprise, ENT_B);
  assert.equal(after.body.called_by.role, 'tax_handler');
});

browserTest('pending authorization: 李雷 confirms it in 自然人业务, then his enterprise login succeeds', async function ({ demo, page }) {
  // Before: the enterprise entry is refused with binding_pending.
  await openLogin(page, demo);
  const refused = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: LI.id, password: LI.password });
  assert.equal(refused.status(), 403);
  const pending = (await refused.json()).error;
  assert.equal(pending.code, 'binding_pending');
  await waitText(page, '#login-alert', pending.message);

  await loginWithSms(page, demo, 'person', { account: LI.id, password: LI.password }, LI.phone);
  await waitText(page, '#cur-name', '李雷');
  const item = page.locator('#authorizations-list [data-testid^="authorization-"]', { hasText: ENT_A });
  await item.waitFor();
  assert.match(await item.textContent(), /待确认/);
  const confirmed = page.waitForResponse(function (r) { return /\/account\/authorizations\/[^/]+\/confirm$/.test(new URL(r.url()).pathname); });
  await item.locator('[data-testid^="confirm-"]').click();
  assert.equal((await confirmed).status(), 204);
  await waitText(page, '#account-info', '已确认');
  // The list re-renders after the confirmation: wait for the item's status badge itself, since
  // "有效期至" is on every item and the info message is shown before the list reloads.
  await page.locator('#authorizations-list [data-testid^="authorization-"]', { hasText: ENT_A }).locator('.badge-active').waitFor();
  await page.locator('#authorizations-list [data-testid^="confirm-"]').waitFor({ state: 'detached' });
  assert.equal(await page.locator('#authorizations-list [data-testid^="confirm-"]').count(), 0);

  // Log out, then the enterprise entry lets him in (face: his phone just had a code).
  await page.click('#logout');
  await page.waitForURL(/\/login$/);
  await page.locator('#login-submit').waitFor();
  const login = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: LI.id, password: LI.password });
  assert.equal(login.status(), 200, 'enterprise login after the confirmation: ' + (await login.text()));
  await page.locator('#step-factor').waitFor();
  await loginWithFace(page, demo, LI.id, true);
  await waitText(page, '#cur-enterprise', ENT_A);
  assert.equal(await text(page, '#cur-role'), '办税员');
});

browserTest('expired binding: 张伟 sees the server\'s Chinese message for binding_expired', async function ({ demo, page }) {
  await openLogin(page, demo);
  const refused = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: ZHANG.id, password: ZHANG.password });
  assert.equal(refused.status(), 403);
  const error = (await refused.json()).error;
  assert.equal(error.code, 'binding_expired');
  assert.match(error.message, /[\u4e00-\u9fff]/, 'the server message is Chinese');
  await waitText(page, '#login-alert', error.message);
  assert.equal(await page.getAttribute('#login-alert', 'role'), 'alert');
  assert.equal(await page.isVisible('#step-credentials'), true, 'still on the credentials step');
  assert.equal(await page.isHidden('#step-factor'), true);
  // English on request: the same banner in the server's English words.
  await page.click('#lang-toggle');
  await waitText(page, '#login-alert', error.message_en);
});

browserTest('client-side check: a wrong check character in the credit code is flagged without a request', async function ({ demo, page }) {
  await openLogin(page, demo);
  const sent = [];
  page.on('request', function (r) {
    const p = new URL(r.url()).pathname;
    if (p.startsWith('/auth/') || p.startsWith('/account/')) sent.push(r.method() + ' ' + p);
  });
  await page.fill('#login-taxpayer-id', '91140100MA0K123487'); // the right check character is 8
  await page.fill('#login-account', WANG.account);
  await page.fill('#login-password', WANG.password);
  await page.click('#login-submit');
  await waitText(page, '#login-taxpayer-id-error', '统一社会信用代码校验位不正确');
  assert.equal(await page.getAttribute('#login-taxpayer-id', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(function () { return document.activeElement.id; }), 'login-taxpayer-id');
  assert.equal(await page.isHidden('#login-account-error'), true);
  assert.equal(await page.isVisible('#step-credentials'), true);
  // An ID number with a wrong check character is flagged too; the right values clear both.
  await page.fill('#login-account', '140105199001011239');
  await page.click('#login-submit');
  await waitText(page, '#login-account-error', '居民身份证号码不正确');
  assert.deepEqual(sent, [], 'no request may leave the page for input it rejects');

  await page.fill('#login-taxpayer-id', ENT_A);
  await page.fill('#login-account', WANG.account);
  const answer = page.waitForResponse(isResponse('/auth/login'));
  await page.click('#login-submit');
  assert.equal((await answer).status(), 200);
  assert.equal(await page.isHidden('#login-taxpayer-id-error'), true);
  await page.locator('#step-factor').waitFor();
});

browserTest('360 px wide: the login page and the account centre fit without sideways scrolling', async function ({ demo, page }) {
  const overflow = function () {
    return page.evaluate(function () {
      const doc = document.documentElement;
      const wide = Array.from(document.querySelectorAll('body *')).filter(function (el) {
        const r = el.getBoundingClientRect();
        return r.width > 0 && !el.closest('[hidden]') && (r.right > doc.clientWidth + 1 || r.left < -1);
      }).map(function (el) { return el.id || el.tagName.toLowerCase() + '.' + el.className; });
      return { scroll: doc.scrollWidth, client: doc.clientWidth, wide: wide.slice(0, 10) };
    });
  };
  await openLogin(page, demo);
  let o = await overflow();
  assert.ok(o.scroll <= o.client, '/login at 360 px: ' + JSON.stringify(o));
  assert.deepEqual(o.wide, [], 'elements past the right edge of /login at 360 px');
  await page.screenshot({ path: path.join(shotDir(demo), 'login-360.png'), fullPage: true });

  await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.phone);
  await page.locator('#personnel-form').waitFor();
  await waitText(page, '#personnel-list', '李雷');
  o = await overflow();
  assert.ok(o.scroll <= o.client, '/account at 360 px: ' + JSON.stringify(o));
  assert.deepEqual(o.wide, [], 'elements past the right edge at 360 px');
  await page.screenshot({ path: path.join(shotDir(demo), 'account-360.png'), fullPage: true });
}, { width: 360, height: 740, isMobile: true });

// Page bug, reported with issue 7's browser tests: the account centre shows 企业授权管理 and 手机号码
// to every session that has a person, but the policies (person.cedar) allow list_authorizations
// and change_phone in the person entry only. A legal representative in 企业业务 thus sees "您没有
// 办理该业务的权限,请联系企业的法定代表人…" and a phone form the server refuses (403 not_permitted).
// Fix in gateway/gateway/assets/account.js loadAll(): `if (s.person)` -> `if (s.person && s.entry === 'person')`.
test('enterprise entry: no person-only sections (企业授权管理, 手机号码) in the account centre', { timeout: 90000 }, async function () {
  const demo = await startDemo();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  try {
    await openLogin(page, demo);
    await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.phone);
    await page.locator('#personnel-form').waitFor();
    assert.equal(await page.isHidden('#authorizations-section'), true, '企业授权管理 is for the person entry');
    assert.equal(await page.isHidden('#phone-section'), true, '手机号码 is for the person entry');
  } finally {
    await context.close();
    await demo.stop();
  }
});
