// Issue 19: 安全中心 on /account in headless Chromium — the step-up dialog (face QR and SMS)
// that opens on a 403 step_up_required and retries the refused action, and the session list
// with 结束会话 and 退出其他设备. Run by tests/e2e/browser.rs beside pages.test.js, each test
// against a `taxgate demo` of its own; TAXGATE_SCREENSHOTS=<dir> keeps step-up-face.png,
// step-up-sms.png and sessions.png there.
//
// A session that just logged in has a fresh factor, so the policies would not ask it for a
// step-up for the next 600 s (the refusal itself is tested end to end in tests/e2e/stepup.rs).
// Here the first answer of the sensitive call is the server's own step_up_required body,
// captured from a real refusal shape, and the retry goes to the real gateway after a real step-up.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startDemo, smsCode, faceCallback, launchBrowser } = require('./harness');

const ENT_A = '91140100MA0K123488';
const WANG = { id: '140105199001011238', account: 'wangfang', password: 'Chang3-Me!now', phone: '13800138000' };
const ZHOU = { id: '310101198808080076', password: 'Zhou-Jie-2026', phone: '13900000006' };
const WAIT_MS = 20000;
const TEST_OPTS = { timeout: 90000 };

// The body the gateway answers when a policy asks for a fresh factor (CONTRACT section 10).
const STEP_UP_REQUIRED = {
  error: {
    code: 'step_up_required',
    message: '为保障您的账户安全,办理该业务前请重新验证身份(短信验证码或扫码人脸识别)。',
    message_en: 'For your account\'s safety, verify again (SMS code or face scan) before doing this.',
    step_up: { factors: ['sms', 'face'], max_age_secs: 600 },
  },
};

let browser;
before(async function () { browser = await launchBrowser(); });
after(async function () { if (browser) await browser.close(); });

function shot(demo, name) {
  const dir = process.env.TAXGATE_SCREENSHOTS || demo.dir;
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}

function isResponse(pathname, method) {
  return function (r) {
    return new URL(r.url()).pathname === pathname && r.request().method() === (method || 'POST');
  };
}

async function newPage(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', function (e) { problems.push('uncaught: ' + e.message); });
  page.on('console', function (m) {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push('console: ' + m.text());
  });
  return { page: page, problems: problems };
}

function newContext() {
  return browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
}

function securityTest(name, body) {
  test(name, TEST_OPTS, async function () {
    const demo = await startDemo();
    const context = await newContext();
    context.setDefaultTimeout(WAIT_MS);
    const { page, problems } = await newPage(context);
    try {
      await body({ demo: demo, page: page, context: context });
      assert.deepEqual(problems, [], 'the page reported errors');
    } catch (e) {
      const extra = '\n  page problems: ' + JSON.stringify(problems) + '\n' + demo.logs();
      if (e && typeof e === 'object') {
        e.message += extra;
        if (typeof e.stack === 'string') e.stack += extra;
      }
      throw e;
    } finally {
      await context.close();
      await demo.stop();
    }
  });
}

async function accountLoaded(page) {
  await page.waitForURL(/\/account$/);
  await page.locator('#account-main[aria-busy="false"]').waitFor();
  await page.locator('#sessions-list').waitFor();
}

async function submitCredentials(page, demo, entry, creds) {
  await page.goto(demo.url + '/login');
  await page.locator('#login-submit').waitFor();
  await page.click('#tab-' + entry);
  if (creds.taxpayerId !== undefined) await page.fill('#login-taxpayer-id', creds.taxpayerId);
  await page.fill('#login-account', creds.account);
  await page.fill('#login-password', creds.password);
  const answer = page.waitForResponse(isResponse('/auth/login'));
  await page.click('#login-submit');
  assert.equal((await answer).status(), 200);
  await page.locator('#step-factor').waitFor();
}

async function loginSms(page, demo, entry, creds, phone) {
  await submitCredentials(page, demo, entry, creds);
  const sent = page.waitForResponse(isResponse('/auth/sms/send'));
  await page.click('#sms-send');
  assert.equal((await sent).status(), 200);
  await page.fill('#sms-code', await smsCode(demo, phone));
  const verified = page.waitForResponse(isResponse('/auth/sms/verify'));
  await page.click('#sms-verify');
  assert.equal((await verified).status(), 200);
  await accountLoaded(page);
}

async function loginFace(page, demo, entry, creds, idNumber) {
  await submitCredentials(page, demo, entry, creds);
  const started = page.waitForResponse(isResponse('/auth/face/start'));
  await page.click('#factor-tab-face');
  const nonce = (await (await started).json()).nonce;
  const cb = await faceCallback(demo, nonce, idNumber, 'pass');
  assert.equal(cb.status, 204, cb.text);
  await accountLoaded(page);
}

async function sessionCookie(context) {
  const cookies = await context.cookies();
  const c = cookies.find(function (k) { return k.name === 'taxgate_session'; });
  return c ? c.value : null;
}

// The first `times` calls to `pathname` (default 1) answer the server's step_up_required body;
// later ones go on to the gateway. Returns the count of calls the browser made.
async function refuseOnceForStepUp(page, pathname, times) {
  const calls = { n: 0 };
  await page.route(function (url) { return url.pathname === pathname; }, async function (route) {
    calls.n += 1;
    if (calls.n <= (times || 1)) {
      await route.fulfill({ status: 403, contentType: 'application/json; charset=utf-8', body: JSON.stringify(STEP_UP_REQUIRED) });
    } else {
      await route.continue();
    }
  });
  return calls;
}

securityTest('step-up by face: adding a tax handler opens the dialog, the QR scan passes, the add goes through on the same session', async function ({ demo, page, context }) {
  await loginSms(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.phone);
  const before = await sessionCookie(context);
  const calls = await refuseOnceForStepUp(page, '/account/personnel');

  await page.fill('#personnel-id-number', ZHOU.id);
  const stepUp = page.waitForResponse(isResponse('/auth/step-up'));
  await page.click('#personnel-submit');
  const opened = await stepUp;
  assert.equal(opened.status(), 200);
  assert.deepEqual((await opened.json()).factors, ['sms', 'face']);
  await page.locator('#step-up-dialog').waitFor();
  assert.match(await page.textContent('#step-up-dialog'), /重新验证身份/);

  const started = page.waitForResponse(isResponse('/auth/face/start'));
  await page.click('#step-up-by-face');
  const nonce = (await (await started).json()).nonce;
  await page.waitForFunction(function () {
    const img = document.getElementById('step-up-qr');
    return img && img.complete && img.naturalWidth > 0;
  });
  await page.screenshot({ path: shot(demo, 'step-up-face.png') });

  const completed = page.waitForResponse(function (r) { return isResponse('/auth/face/complete')(r) && r.status() === 200; });
  const retried = page.waitForResponse(function (r) { return isResponse('/account/personnel')(r) && r.status() === 201; });
  const cb = await faceCallback(demo, nonce, WANG.id, 'pass');
  assert.equal(cb.status, 204, cb.text);
  const view = await (await completed).json();
  assert.ok(view.face_at, 'the session now has a face time');
  await retried;
  assert.equal(calls.n, 2, 'the refused call was sent once more');
  await page.locator('#step-up-dialog').waitFor({ state: 'detached' });
  await page.waitForFunction(function () {
    return document.getElementById('personnel-list').textContent.indexOf('周杰') >= 0;
  });
  assert.equal(await sessionCookie(context), before, 'a step-up keeps the session token');
});

securityTest('step-up by SMS in English: the phone change asks for a code, then goes on; cancelling changes nothing', async function ({ demo, page }) {
  await loginFace(page, demo, 'person', { account: ZHOU.id, password: ZHOU.password }, ZHOU.id);
  await page.click('#lang-toggle');
  await page.waitForFunction(function () { return document.documentElement.lang === 'en'; });

  // Cancelled first: nothing is sent, the page says the action was refused.
  const calls = await refuseOnceForStepUp(page, '/account/phone', 2);
  await page.fill('#phone-new', '13700000077');
  // The page warns before a code goes to a number (一号一人), then asks the server.
  const sendAfterWarning = async function () {
    await page.click('#phone-send');
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.click('#confirm-dialog-ok');
  };
  await sendAfterWarning();
  await page.locator('#step-up-dialog').waitFor();
  await page.click('#step-up-cancel');
  await page.locator('#step-up-dialog').waitFor({ state: 'detached' });
  assert.equal(calls.n, 1);

  await sendAfterWarning();
  await page.locator('#step-up-dialog').waitFor();
  assert.match(await page.textContent('#step-up-title'), /Verify it is you/);
  await page.click('#step-up-by-sms');
  const sent = page.waitForResponse(isResponse('/auth/sms/send'));
  await page.click('#step-up-send');
  assert.equal((await sent).status(), 200);
  await page.fill('#step-up-code', await smsCode(demo, ZHOU.phone));
  await page.screenshot({ path: shot(demo, 'step-up-sms.png') });
  const retried = page.waitForResponse(function (r) { return isResponse('/account/phone')(r) && r.status() === 200; });
  await page.click('#step-up-verify');
  await retried;
  assert.equal(calls.n, 3);
  await page.locator('#phone-verify-form:not([hidden])').waitFor();
  const outbox = fs.readFileSync(demo.outbox, 'utf8').split('\n').filter(Boolean).map(JSON.parse);
  assert.ok(outbox.some(function (m) { return m.to === ZHOU.phone && m.purpose === 'step_up'; }));
  assert.ok(outbox.some(function (m) { return m.to === '13700000077' && m.purpose === 'bind_phone'; }));
});

securityTest('the session list: 结束会话 logs another browser out, 退出其他设备 leaves only this one', async function ({ demo, page }) {
  // Two more sessions of 王芳 in browsers of their own.
  const others = [];
  for (let i = 0; i < 2; i += 1) {
    const context = await newContext();
    const p = await context.newPage();
    await loginFace(p, demo, 'person', { account: WANG.id, password: WANG.password }, WANG.id);
    others.push({ context: context, page: p });
  }
  await loginFace(page, demo, 'enterprise', { taxpayerId: ENT_A, account: WANG.account, password: WANG.password }, WANG.id);
  await page.waitForFunction(function () { return document.querySelectorAll('[data-testid="session-item"]').length === 3; });
  assert.match(await page.textContent('#sessions-list'), /当前会话/);
  assert.match(await page.textContent('#sessions-list'), /127\.0\.0\.\*/);
  assert.match(await page.textContent('#sessions-section'), /退出其他设备/);
  await page.screenshot({ path: shot(demo, 'sessions.png'), fullPage: true });

  // 结束会话 on one of the others (confirmed in the dialog).
  const ended = page.waitForResponse(function (r) { return /\/account\/sessions\/[0-9a-f]+\/revoke$/.test(new URL(r.url()).pathname); });
  await page.locator('[data-testid="session-end"]').first().click();
  await page.click('#confirm-dialog-ok');
  assert.equal((await ended).status(), 204);
  await page.waitForFunction(function () { return document.querySelectorAll('[data-testid="session-item"]').length === 2; });
  let alive = 0;
  for (const o of others) {
    const r = await o.page.evaluate(async function () { return (await fetch('/auth/session')).status; });
    if (r === 200) alive += 1;
  }
  assert.equal(alive, 1, 'exactly one other browser was logged out');

  // 退出其他设备.
  const all = page.waitForResponse(isResponse('/account/sessions/revoke-others'));
  await page.click('#sessions-end-others');
  await page.click('#confirm-dialog-ok');
  assert.equal((await all).status(), 204);
  await page.waitForFunction(function () { return document.querySelectorAll('[data-testid="session-item"]').length === 1; });
  for (const o of others) {
    const r = await o.page.evaluate(async function () { return (await fetch('/auth/session')).status; });
    assert.equal(r, 401);
    await o.context.close();
  }
  // A manager also sees the sessions acting for the enterprise: its own.
  await page.locator('[data-testid="personnel-session-item"]').first().waitFor();
});
