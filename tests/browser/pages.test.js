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
const SUN = { id: '140105199502200061', password: 'Sun-Li-2026!' };

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
  assert.equal(await text(page, '#cur-agency'), '山西诚信税务师事务所 ' + AGENCY);
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
  await page.waitForURL(/\/login\?reason=logout$/);
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

// ---- issue 22: every journey at both viewports -----------------------------------------------

const VIEWPORTS = [
  { label: '1280x900', viewport: { width: 1280, height: 900 } },
  { label: '390x844', viewport: { width: 390, height: 844, isMobile: true } },
];

function journey(name, body) {
  VIEWPORTS.forEach(function (v) {
    browserTest(name + ' [' + v.label + ']', function (ctx) {
      return body(Object.assign({ mobile: !!v.viewport.isMobile, label: v.label }, ctx));
    }, v.viewport);
  });
}

// Wait until the element with `id` has the focus (a step may still be loading).
async function waitFocus(page, id) {
  try {
    await page.waitForFunction(function (want) { return document.activeElement && document.activeElement.id === want; }, id, { timeout: WAIT_MS });
  } catch (_) {
    assert.fail('focus should be on #' + id + ' but is on #' + (await focused(page)));
  }
}

async function focused(page) {
  return page.evaluate(function () { return document.activeElement ? document.activeElement.id : null; });
}

// The element shows exactly `want` (the whole message, nothing repeated or left over).
async function exactly(page, selector, want) {
  await waitText(page, selector, want);
  assert.equal((await text(page, selector)).trim(), want, selector);
}

// Every message box of the page that is visible, with its text: a journey step asserts that only
// the expected ones are.
async function visibleMessages(page) {
  return page.evaluate(function () {
    return Array.from(document.querySelectorAll('.alert, [role="status"], .field-error'))
      .filter(function (el) { return !el.hidden && !el.closest('[hidden]') && el.textContent.trim() !== '' && el.id; })
      .map(function (el) { return el.id; });
  });
}

async function startSmsStep(page, entry, creds) {
  const login = await submitCredentials(page, entry, creds);
  assert.equal(login.status(), 200, 'POST /auth/login: ' + (await login.text()));
  await page.locator('#step-factor').waitFor();
  const sent = page.waitForResponse(isResponse('/auth/sms/send'));
  await page.click('#sms-send');
  assert.equal((await sent).status(), 200);
}

journey('a person session offers 以企业身份登录, never 切换, and it opens the pre-filled enterprise login', async function ({ demo, page }) {
  await openLogin(page, demo);
  await page.click('#tab-person');
  await loginWithSms(page, demo, 'person', { account: WANG.account, password: WANG.password }, WANG.phone);
  const item = page.locator('[data-testid="identity-' + ENT_A + '-legal_representative"]');
  await item.waitFor();
  assert.equal(await page.locator('#identities-list [data-testid^="switch-"]').count(), 0, 'no 切换 in a person session');
  const link = page.locator('[data-testid="enterprise-login-' + ENT_A + '-legal_representative"]');
  assert.equal((await link.textContent()).trim(), '以企业身份登录');
  assert.equal(await link.getAttribute('aria-label'), '以企业身份登录 ' + ENT_A_NAME);
  await link.click();
  await page.waitForURL(/\/login\?entry=enterprise&taxpayer_id=/);
  await page.locator('#login-submit').waitFor();
  assert.equal(await page.getAttribute('#tab-enterprise', 'aria-selected'), 'true');
  assert.equal(await page.inputValue('#login-taxpayer-id'), ENT_A);
  await waitFocus(page, 'login-account');
  await page.fill('#login-account', WANG.account);
  await page.fill('#login-password', WANG.password);
  const answer = page.waitForResponse(isResponse('/auth/login'));
  await page.click('#login-submit');
  assert.equal((await answer).status(), 200, 'the enterprise login is not refused with not_linked');
});

journey('wrong passwords: one message with the tries left, cleared while retyping, then the lock with its length', async function ({ demo, page }) {
  await openLogin(page, demo);
  for (let left = 4; left >= 1; left -= 1) {
    const r = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: 'Wrong-Pass-' + left });
    assert.equal(r.status(), 401);
    await exactly(page, '#login-password-error', '账号或密码错误,请重新输入。还可尝试 ' + left + ' 次。');
    assert.deepEqual(await visibleMessages(page), ['login-password-error'], 'one message, not a banner as well');
    assert.equal(await focused(page), 'login-password');
  }
  await page.type('#login-password', 'x');
  assert.equal(await page.isHidden('#login-password-error'), true, 'retyping clears the stale message');
  // The fifth wrong password locks: the lock and how long it lasts, in the banner.
  const fifth = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: 'Wrong-Pass-0' });
  assert.equal(fifth.status(), 423);
  await exactly(page, '#login-alert', '密码错误次数过多,账号已锁定,请稍后再试。请 30 分钟后再试,或使用"忘记密码"重置密码。');
  assert.equal(await page.isHidden('#login-password-error'), true);
  assert.deepEqual(await visibleMessages(page), ['login-alert']);
});

journey('wrong SMS codes: the tries left each time, and after the fifth the right reason with the form gone', async function ({ demo, page }) {
  await openLogin(page, demo);
  await startSmsStep(page, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password });
  await waitText(page, '#login-info', '验证码已发送');
  const right = await smsCode(demo, WANG.phone);
  const wrong = right === '000000' ? '111111' : '000000';
  for (let left = 4; left >= 1; left -= 1) {
    await page.fill('#sms-code', wrong);
    const v = page.waitForResponse(isResponse('/auth/sms/verify'));
    await page.click('#sms-verify');
    assert.equal((await v).status(), 401);
    await exactly(page, '#sms-code-error', '短信验证码错误或已过期。还可尝试 ' + left + ' 次。');
    assert.deepEqual(await visibleMessages(page), ['sms-code-error'], '验证码已发送 is gone once a code was wrong');
    assert.equal(await focused(page), 'sms-code');
  }
  await page.fill('#sms-code', wrong);
  const v = page.waitForResponse(isResponse('/auth/sms/verify'));
  await page.click('#sms-verify');
  assert.equal((await v).status(), 401);
  await exactly(page, '#login-alert', '验证码错误次数过多,本次登录已失效。请返回重新登录。');
  assert.deepEqual(await visibleMessages(page), ['login-alert']);
  assert.equal(await page.isHidden('#sms-form'), true, 'no code form for a dead challenge');
  assert.equal(await page.isDisabled('#sms-send'), true, 'no countdown or resend');
  assert.equal(await focused(page), 'factor-back');
  await page.click('#factor-back');
  assert.deepEqual(await visibleMessages(page), [], 'nothing stale on the first step');
});

journey('an ended session goes to the login with 登录已失效 and comes back; next is honoured only when safe', async function ({ demo, page }) {
  await page.goto(demo.url + '/account');
  await page.waitForURL(/\/login\?next=%2Faccount&reason=expired$/);
  await exactly(page, '#login-info', '登录已失效,请重新登录;登录后将返回您刚才所在的页面。');
  await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.phone);
  await page.click('#logout');
  await page.waitForURL(/\/login\?reason=logout$/);
  await exactly(page, '#login-info', '您已安全退出。');

  // An open redirect is not a way back: these land at home_url.
  for (const bad of ['//evil.example/x', '/\\evil.example', '/%2F%2Fevil.example', 'https://evil.example/', '/%5Cevil']) {
    await page.goto(demo.url + '/login?next=' + encodeURIComponent(bad));
    await page.locator('#login-submit').waitFor();
    const ok = await page.evaluate(function (b) { return window.TG.safeReturnPath(new URLSearchParams(location.search).get('next')); }, bad);
    assert.equal(ok, null, bad);
  }
  // A safe next: back there after the login (周杰: 王芳's number just had a code).
  await page.goto(demo.url + '/login?next=' + encodeURIComponent('/api/personal/income?year=2026'));
  await page.locator('#login-submit').waitFor();
  await startSmsStep(page, 'person', { account: ZHOU.id, password: ZHOU.password });
  await page.fill('#sms-code', await smsCode(demo, ZHOU.phone));
  await page.click('#sms-verify');
  await page.waitForURL(/\/api\/personal\/income\?year=2026$/);
});

journey('忘记密码 by SMS: the new password works, every session ended, one message per step', async function ({ demo, page, context }) {
  // A session elsewhere, to be ended by the reset.
  // (By face: the demo's 60 s resend interval keeps the phone for the reset's code.)
  const other = await context.newPage();
  await openLogin(other, demo);
  const first = await submitCredentials(other, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password });
  assert.equal(first.status(), 200);
  await loginWithFace(other, demo, WANG.id, true);
  await other.close();

  await openLogin(page, demo);
  await page.fill('#login-account', WANG.account);
  await page.click('#forgot-link');
  await page.locator('#step-reset').waitFor();
  assert.equal(await focused(page), 'reset-heading');
  assert.equal(await page.inputValue('#reset-account'), WANG.account);
  const started = page.waitForResponse(isResponse('/auth/password/reset'));
  await page.click('#reset-start');
  assert.equal((await started).status(), 200);
  await waitFocus(page, 'reset-send');
  const sent = page.waitForResponse(isResponse('/auth/sms/send'));
  await page.click('#reset-send');
  assert.equal((await sent).status(), 200);
  await exactly(page, '#login-info', '如该账号已登记手机号码,验证码已发送至该号码,5 分钟内有效。');
  assert.equal(await focused(page), 'reset-code');
  await page.fill('#reset-code', await smsCode(demo, WANG.phone));
  await page.click('#reset-verify-code');
  await page.locator('#reset-password-form').waitFor();
  await exactly(page, '#login-info', '身份已验证,请设置新密码。');
  assert.equal(await focused(page), 'reset-new');
  // The server's zxcvbn rules: a guessable password is refused beside its field.
  await page.fill('#reset-new', 'Password1!');
  await page.fill('#reset-repeat', 'Password1!');
  const weak = page.waitForResponse(isResponse('/auth/password/reset/complete'));
  await page.click('#reset-submit');
  assert.equal((await weak).status(), 400);
  await page.locator('#reset-new-error').waitFor();
  assert.deepEqual(await visibleMessages(page), ['reset-new-error']);
  const fresh = 'Brand-New-Pass-2026';
  await page.fill('#reset-new', fresh);
  await page.fill('#reset-repeat', fresh);
  const done = page.waitForResponse(isResponse('/auth/password/reset/complete'));
  await page.click('#reset-submit');
  assert.equal((await done).status(), 204);
  await exactly(page, '#login-info', '密码已重置,您的所有登录会话已注销。请使用新密码登录。');
  assert.deepEqual(await visibleMessages(page), ['login-info']);
  assert.equal(await focused(page), 'login-password');
  const notice = fs.readFileSync(demo.outbox, 'utf8').trim().split('\n').map(JSON.parse).pop();
  assert.equal(notice.purpose, 'password_changed');
  const again = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: fresh });
  assert.equal(again.status(), 200, 'the new password works');
  await loginWithFace(page, demo, WANG.id, true);
  await waitText(page, '#cur-name', '王芳');
});

journey('migrated user: the old password is the last 6 of the ID, a wrong one says 原密码错误, and 退出登录 is a way out', async function ({ demo, page }) {
  await openLogin(page, demo);
  await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: ZHAO.id, password: ZHAO.password }, ZHAO.phone, true);
  assert.equal(await focused(page), 'password-heading');
  await waitText(page, '#pw-initial', '居民身份证号码的后 6 位');
  await page.fill('#pw-old', '999999');
  await page.fill('#pw-new', 'Zhao-Min-2026!');
  await page.fill('#pw-repeat', 'Zhao-Min-2026!');
  const changed = page.waitForResponse(isResponse('/auth/password'));
  await page.click('#pw-submit');
  assert.equal((await changed).status(), 401);
  await exactly(page, '#pw-old-error', '原密码错误。还可尝试 4 次。');
  assert.deepEqual(await visibleMessages(page), ['pw-old-error']);
  assert.equal(await focused(page), 'pw-old');
  await page.click('#pw-logout');
  await page.waitForURL(/\/login\?reason=logout$/);
  await exactly(page, '#login-info', '您已安全退出。');
});

journey('personnel: an expired 办税员 is extended (修改), a widening waits for the person, buttons name their person', async function ({ demo, page, mobile }) {
  await openLogin(page, demo);
  await loginWithSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.phone);
  await page.locator('#personnel-form').waitFor();
  const zhang = page.locator('#personnel-list [data-testid^="personnel-"]', { hasText: '张伟' });
  await zhang.locator('.badge-expired').waitFor();
  const edit = zhang.locator('[data-testid^="edit-"]');
  assert.equal(await edit.getAttribute('aria-label'), '修改 张伟 的权限或有效期');
  assert.equal(await zhang.locator('[data-testid^="revoke-"]').getAttribute('aria-label'), '解除 张伟');
  const li = page.locator('#personnel-list [data-testid^="personnel-"]', { hasText: '李雷' });
  assert.equal(await li.locator('[data-testid^="revoke-"]').getAttribute('aria-label'), '撤回对 李雷 的授权');
  await edit.click();
  const form = zhang.locator('.edit-form');
  await form.waitFor();
  assert.match(await focused(page), /^edit-.*-declare$/);
  await form.locator('input[type="date"]').fill('2099-12-31');
  const saved = page.waitForResponse(function (r) { return /\/account\/personnel\/[^/]+\/update$/.test(new URL(r.url()).pathname); });
  await form.locator('button[type="submit"]').click();
  const answer = await saved;
  assert.equal(answer.status(), 200, await answer.text());
  await exactly(page, '#account-info', '已保存,立即生效。');
  await page.locator('#personnel-list [data-testid^="personnel-"]', { hasText: '张伟' }).locator('.badge-active').waitFor();
  await waitFocus(page, await page.locator('#personnel-list [data-testid^="personnel-"]', { hasText: '张伟' }).locator('[data-testid^="edit-"]').getAttribute('id'));

  const sun = page.locator('#personnel-list [data-testid^="personnel-"]', { hasText: '孙丽' });
  await sun.locator('[data-testid^="edit-"]').click();
  await sun.locator('.edit-form input[value="invoice"]').check();
  const widened = page.waitForResponse(function (r) { return /\/account\/personnel\/[^/]+\/update$/.test(new URL(r.url()).pathname); });
  await sun.locator('.edit-form button[type="submit"]').click();
  assert.equal((await widened).status(), 200);
  await exactly(page, '#account-info', '已保存。新增的权限须 孙丽 在企业授权管理中重新确认。');
  await page.locator('#personnel-list [data-testid^="personnel-"]', { hasText: '孙丽' }).locator('.badge-pending').waitFor();
  if (!mobile) await page.locator('#personnel-section').screenshot({ path: path.join(shotDir(demo), 'personnel.png') });

  // 张伟 can log in again.
  await page.click('#logout');
  await page.waitForURL(/\/login\?reason=logout$/);
  const again = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: ZHANG.id, password: ZHANG.password });
  assert.equal(again.status(), 200, 'the extended binding admits 张伟');
});

journey('a 办税员 by face (模拟扫码 in the demo, the app link on a phone) sees his permission groups and no personnel card', async function ({ demo, page, mobile }) {
  await openLogin(page, demo);
  const login = await submitCredentials(page, 'enterprise', { taxpayerId: ENT_A, account: SUN.id, password: SUN.password });
  assert.equal(login.status(), 200);
  const started = await page.waitForResponse(isResponse('/auth/face/start'));
  const qr = (await started.json()).qr;
  await page.locator('#face-simulate').waitFor();
  assert.equal(await page.getAttribute('#face-app', 'href'), qr);
  assert.equal(await page.isVisible('#face-app'), mobile, 'the app link is for small screens');
  const demoSign = page.waitForResponse(isResponse('/auth/face/demo-sign'));
  await page.click('#face-simulate');
  assert.equal((await demoSign).status(), 200);
  await accountLoaded(page);
  await waitText(page, '#cur-mfa', '扫码验证');
  assert.equal(await text(page, '#cur-role'), '办税员');
  await exactly(page, '#cur-groups', '申报缴税、涉税查询、涉税办理');
  await exactly(page, '#cur-groups-note', '权限为该身份类型的默认权限。');
  assert.equal(await page.isHidden('#personnel-section'), true, 'no card holding only a refusal');
  assert.deepEqual(await visibleMessages(page), []);
  // In English too.
  await page.click('#lang-toggle');
  await exactly(page, '#cur-groups', 'Declare and pay, Tax queries, Tax affairs');
  await exactly(page, '#cur-groups-note', 'These are the default permissions of the role.');
});

journey('phone change: the current number, a warning before taking one, and the truth about it', async function ({ demo, page }) {
  await openLogin(page, demo);
  await page.click('#tab-person');
  await loginWithSms(page, demo, 'person', { account: ZHOU.id, password: ZHOU.password }, ZHOU.phone);
  await page.locator('#phone-section').waitFor();
  await exactly(page, '#phone-current', '当前手机号码:139****0006');
  const change = async function (number, taken) {
    await page.fill('#phone-new', number);
    await page.click('#phone-send');
    await page.locator('#confirm-dialog[open]').waitFor();
    assert.match(await text(page, '#confirm-dialog-text'), /若该号码目前属于他人的账户,将从其账户中解除/);
    const sent = page.waitForResponse(isResponse('/account/phone'));
    await page.click('#confirm-dialog-ok');
    assert.equal((await sent).status(), 200);
    await exactly(page, '#account-info', '验证码已发送至新手机号码。');
    assert.equal(await focused(page), 'phone-code');
    await page.fill('#phone-code', await smsCode(demo, number));
    const verified = page.waitForResponse(isResponse('/account/phone/verify'));
    await page.click('#phone-verify');
    assert.equal((await verified).status(), 204);
    await exactly(page, '#account-info', taken
      ? '手机号码已修改。按"一号一人"规则,该号码已从原持有人的账户中解除,原持有人已收到通知。'
      : '手机号码已修改。');
  };
  // A number nobody held: no claim that it was taken.
  await change('13700137000', false);
  await exactly(page, '#phone-current', '当前手机号码:137****7000');
  // 王芳's number: taken from her, and the page says so. (A reload ends the resend countdown.)
  await page.reload();
  await accountLoaded(page);
  await change(WANG.phone, true);
  await exactly(page, '#phone-current', '当前手机号码:138****8000');
});

journey('keyboard and names: the focus ring shows on the blue bar, a pending authorisation is 拒绝, an agent leaves a client', async function ({ demo, page }) {
  await openLogin(page, demo);
  await page.focus('#lang-toggle');
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Tab');
  const ring = await page.evaluate(function () {
    const s = getComputedStyle(document.getElementById('lang-toggle'));
    return { style: s.outlineStyle, color: s.outlineColor, width: s.outlineWidth };
  });
  assert.deepEqual(ring, { style: 'solid', color: 'rgb(255, 255, 255)', width: '3px' });

  await page.click('#tab-person');
  await loginWithSms(page, demo, 'person', { account: LI.id, password: LI.password }, LI.phone);
  const item = page.locator('#authorizations-list [data-testid^="authorization-"]', { hasText: ENT_A });
  await item.waitFor();
  const decline = item.locator('[data-testid^="unbind-"]');
  assert.equal((await decline.textContent()).trim(), '拒绝');
  assert.equal(await decline.getAttribute('aria-label'), '拒绝 ' + ENT_A_NAME + ' 的授权');
  assert.equal(await item.locator('[data-testid^="confirm-"]').getAttribute('aria-label'), '确认 ' + ENT_A_NAME + ' 的授权');
  await page.click('#logout');
  await page.waitForURL(/\/login\?reason=logout$/);

  await loginWithSms(page, demo, 'agent', { taxpayerId: AGENCY, account: CHEN.id, password: CHEN.password }, CHEN.phone);
  const enter = page.locator('[data-testid="switch-' + ENT_A + '-agent"]');
  assert.equal(await enter.getAttribute('aria-label'), '进入 ' + ENT_A_NAME);
  await enter.click();
  await waitText(page, '#cur-enterprise', ENT_A);
  await waitText(page, '#cur-groups-note', '代理协议范围:申报缴税、涉税查询');
  const left = page.waitForResponse(isResponse('/account/switch/leave'));
  await page.click('#leave-client');
  assert.equal((await left).status(), 200);
  await exactly(page, '#account-info', '已返回代理机构,请选择委托企业。');
  await exactly(page, '#cur-enterprise', '—');
  await waitFocus(page, 'identities-heading');
});
