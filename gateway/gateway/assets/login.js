// /login: entry tabs and credentials -> second factor (SMS or face) -> forced password change for
// migrated users -> `next` (a safe path on this origin) or [pages] home_url. Phone recovery
// (找回手机号码) hangs off the factor step, the forgotten password (忘记密码) off the credentials.
'use strict';

document.addEventListener('DOMContentLoaded', function () {
  const TG = window.TG;
  const $ = function (id) { return document.getElementById(id); };

  const alertBox = $('login-alert');
  const infoBox = $('login-info');
  const inputs = {
    taxpayer_id: $('login-taxpayer-id'),
    account: $('login-account'),
    password: $('login-password'),
  };

  const ENTRIES = {
    enterprise: {
      hint: { zh: '使用办税人员本人的身份证号码、手机号码或用户名及个人用户密码登录企业。', en: 'Log in for an enterprise with your own ID number, phone number or username and your personal password.' },
      taxpayer: { zh: '统一社会信用代码/纳税人识别号', en: 'Unified social credit code / taxpayer ID' },
      password: { zh: '个人用户密码', en: 'Personal password' },
      showTaxpayer: true,
      showAccount: true,
    },
    person: {
      hint: { zh: '使用居民身份证号码、手机号码或用户名及个人用户密码登录,办理个人涉税业务、确认企业授权。', en: 'Log in with your ID number, phone number or username and personal password for your own tax matters and to confirm enterprise authorizations.' },
      password: { zh: '个人用户密码', en: 'Personal password' },
      showTaxpayer: false,
      showAccount: true,
    },
    agent: {
      hint: { zh: '涉税服务人员使用代理机构的统一社会信用代码及本人账号密码登录,登录后在账户中心选择委托企业。', en: 'Agency staff log in with the agency\'s credit code and their own account; pick a client in the account centre afterwards.' },
      taxpayer: { zh: '代理机构统一社会信用代码/纳税人识别号', en: 'Agency\'s unified social credit code / taxpayer ID' },
      password: { zh: '个人用户密码', en: 'Personal password' },
      showTaxpayer: true,
      showAccount: true,
    },
    enterprise_legacy: {
      hint: { zh: '旧版登录:使用纳税人识别号和企业密码,验证码发送至企业登记的手机号码。该方式将停用,请尽快改用企业业务登录。', en: 'Legacy login: taxpayer ID and enterprise password; the code goes to the enterprise\'s registered phone. It is being retired: switch to the Enterprise entry soon.' },
      taxpayer: { zh: '纳税人识别号', en: 'Taxpayer ID' },
      password: { zh: '企业密码', en: 'Enterprise password' },
      showTaxpayer: true,
      showAccount: false,
    },
  };

  const SEND = { zh: '获取验证码', en: 'Send code' };
  const POLL_MS = 2000;

  // Where a completed login goes: `next` only when it is a path on this origin, else home_url.
  const params = new URLSearchParams(window.location.search);
  const homeMeta = document.querySelector('meta[name="taxgate-home"]');
  const home = TG.safeReturnPath(homeMeta ? homeMeta.content : null) || '/account';
  const next = TG.safeReturnPath(params.get('next'));
  const demo = (document.querySelector('meta[name="taxgate-demo"]') || {}).content === '1';
  function landing() { return next || home; }

  const state = {
    entry: 'enterprise',
    account: '',
    challenge: null,
    factors: [],
    phoneMasked: null,
    smsTimer: null,
    faceTimer: null,
    faceExpiresAt: 0,
    recoverChallenge: null,
    session: null,
  };

  // ---- steps ------------------------------------------------------------------------------
  const STEPS = ['credentials', 'factor', 'recover', 'reset', 'password'];

  function showStep(name) {
    STEPS.forEach(function (s) { $('step-' + s).hidden = s !== name; });
    TG.setMsg(alertBox, null);
    TG.setMsg(infoBox, null);
    if (name === 'credentials') {
      const first = [inputs.taxpayer_id, inputs.account, inputs.password].find(function (el) {
        return !el.closest('[hidden]') && !el.value;
      });
      (first || $('login-submit')).focus();
    } else {
      const heading = $(name + '-heading');
      if (heading) heading.focus();
    }
  }

  function info(pair) { TG.setMsg(infoBox, pair); }

  // ---- entry tabs -------------------------------------------------------------------------
  const legacyAllowed =
    document.body.dataset.legacy === '1' ||
    (document.querySelector('meta[name="taxgate-legacy"]') || {}).content === '1';
  $('tab-legacy').hidden = !legacyAllowed;

  function selectEntry(entry, focus) {
    const cfg = ENTRIES[entry];
    if (!cfg) return;
    state.entry = entry;
    document.querySelectorAll('#entry-tabs [role="tab"]').forEach(function (tab) {
      const on = tab.dataset.entry === entry;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      if (on) {
        $('login-form').setAttribute('aria-labelledby', tab.id);
        if (focus) tab.focus();
      }
    });
    $('field-taxpayer-id').hidden = !cfg.showTaxpayer;
    $('field-account').hidden = !cfg.showAccount;
    TG.setMsg($('entry-hint'), cfg.hint);
    if (cfg.taxpayer) TG.setMsg($('login-taxpayer-id-label'), cfg.taxpayer);
    TG.setMsg($('login-password-label'), cfg.password);
    inputs.password.autocomplete = entry === 'enterprise_legacy' ? 'off' : 'current-password';
    TG.clearErrors($('login-form'));
    TG.setMsg(alertBox, null);
  }

  tabKeys($('entry-tabs'), function (tab) { selectEntry(tab.dataset.entry, true); });
  document.querySelectorAll('#entry-tabs [role="tab"]').forEach(function (tab) {
    tab.addEventListener('click', function () { selectEntry(tab.dataset.entry, false); });
  });

  // Arrow keys, Home and End move between the visible tabs of a tablist (WAI-ARIA tabs pattern).
  function tabKeys(list, activate) {
    list.addEventListener('keydown', function (ev) {
      const tabs = Array.from(list.querySelectorAll('[role="tab"]')).filter(function (el) { return !el.hidden; });
      const i = tabs.indexOf(document.activeElement);
      if (i < 0) return;
      let next = null;
      if (ev.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      else if (ev.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (ev.key === 'Home') next = tabs[0];
      else if (ev.key === 'End') next = tabs[tabs.length - 1];
      if (!next) return;
      ev.preventDefault();
      activate(next);
    });
  }

  // ---- step 1: credentials ----------------------------------------------------------------
  // Check every visible field, show each problem beside its field, focus the first one.
  function checkFields(checks) {
    let first = null;
    checks.forEach(function (c) {
      if (c.input.closest('[hidden]')) return;
      const problem = c.check(c.input.value);
      TG.fieldError(c.input, problem);
      if (problem && !first) first = c.input;
    });
    if (first) first.focus();
    return !first;
  }

  const required = function (v) { return v ? null : { zh: '请填写此项', en: 'this field is required' }; };

  $('login-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    info(null);
    const cfg = ENTRIES[state.entry];
    const ok = checkFields([
      { input: inputs.taxpayer_id, check: TG.checkTaxpayerId },
      { input: inputs.account, check: TG.checkAccount },
      { input: inputs.password, check: required },
    ]);
    if (!ok) return;

    const body = { entry: state.entry, password: inputs.password.value };
    if (cfg.showTaxpayer) body.taxpayer_id = inputs.taxpayer_id.value.trim().toUpperCase();
    if (cfg.showAccount) body.account = inputs.account.value.trim();
    state.account = body.account || '';

    const res = await TG.busy($('login-submit'), function () { return TG.api('POST', '/auth/login', body); });
    if (!res.ok) {
      if (res.error.code === 'invalid_credentials') inputs.password.value = '';
      TG.showError(res.error, inputs, alertBox, { invalid_credentials: 'password' });
      return;
    }
    inputs.password.value = '';
    state.challenge = res.data.challenge;
    state.factors = Array.isArray(res.data.factors) ? res.data.factors : [];
    state.phoneMasked = res.data.phone_masked || null;
    showFactorStep();
  });

  // ---- step 2: second factor --------------------------------------------------------------
  function showFactorStep() {
    const hasSms = state.factors.indexOf('sms') >= 0;
    const hasFace = state.factors.indexOf('face') >= 0;
    $('factor-tab-sms').hidden = !hasSms;
    $('factor-tab-face').hidden = !hasFace;
    $('factor-tabs').hidden = !(hasSms && hasFace);
    $('sms-unavailable').hidden = hasSms;
    $('factor-sms').hidden = true;
    $('factor-face').hidden = true;
    TG.setMsg($('factor-phone'), state.phoneMasked
      ? { zh: '验证码将发送至 ' + state.phoneMasked, en: 'The code will be sent to ' + state.phoneMasked }
      : null);
    $('sms-code').value = '';
    $('sms-form').hidden = false;
    state.attemptsLeft = null;
    TG.clearErrors($('step-factor'));
    stopSmsCountdown();
    showStep('factor');
    if (hasSms) selectFactor('sms', false);
    else if (hasFace) selectFactor('face', false);
  }

  function selectFactor(factor, focus) {
    info(null);
    ['sms', 'face'].forEach(function (f) {
      const tab = $('factor-tab-' + f);
      const on = f === factor;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      $('factor-' + f).hidden = !on;
      if (on && focus) tab.focus();
    });
    if (factor === 'face') {
      if (!state.faceTimer) startFace();
    } else {
      stopFace();
    }
  }

  tabKeys($('factor-tabs'), function (tab) { selectFactor(tab.dataset.factor, true); });
  ['sms', 'face'].forEach(function (f) {
    $('factor-tab-' + f).addEventListener('click', function () { selectFactor(f, false); });
  });

  $('factor-back').addEventListener('click', function () {
    stopFace();
    stopSmsCountdown();
    state.challenge = null;
    showStep('credentials');
  });

  // SMS: send with a resend countdown, then verify the 6-digit code.
  function stopSmsCountdown() {
    if (state.smsTimer) clearInterval(state.smsTimer);
    state.smsTimer = null;
    $('sms-send').disabled = false;
    TG.setMsg($('sms-send'), SEND);
  }

  function startSmsCountdown(secs) {
    stopSmsCountdown();
    let left = Math.max(1, Math.round(secs));
    const button = $('sms-send');
    button.disabled = true;
    const render = function () {
      TG.setMsg(button, { zh: '重新发送(' + left + 's)', en: 'Resend (' + left + ' s)' });
    };
    render();
    state.smsTimer = setInterval(function () {
      left -= 1;
      if (left <= 0) stopSmsCountdown();
      else render();
    }, 1000);
  }

  $('sms-send').addEventListener('click', async function () {
    const button = $('sms-send');
    TG.setMsg(alertBox, null);
    TG.fieldError($('sms-code'), null);
    button.disabled = true;
    const res = await TG.api('POST', '/auth/sms/send', { challenge: state.challenge });
    button.disabled = false;
    if (!res.ok) {
      if (res.error.code === 'challenge_expired') { challengeDead(false); return; }
      TG.showError(res.error, { code: $('sms-code') }, alertBox);
      if (res.error.code === 'phone_missing') $('sms-unavailable').hidden = false;
      if (res.error.retry_after_secs) startSmsCountdown(res.error.retry_after_secs);
      return;
    }
    startSmsCountdown(res.data && res.data.resend_after_secs ? res.data.resend_after_secs : 60);
    info({ zh: '验证码已发送,5 分钟内有效。', en: 'The code was sent; it is valid for 5 minutes.' });
    $('sms-code').focus();
  });

  $('sms-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const code = $('sms-code');
    if (!checkFields([{ input: code, check: TG.checkCode }])) return;
    const res = await TG.busy($('sms-verify'), function () {
      return TG.api('POST', '/auth/sms/verify', { challenge: state.challenge, code: code.value.trim() });
    });
    if (!res.ok) {
      info(null);
      if (res.error.code === 'challenge_expired') {
        challengeDead(state.attemptsLeft === 1);
        return;
      }
      if (typeof res.error.attempts_left === 'number') state.attemptsLeft = res.error.attempts_left;
      TG.showError(res.error, { code: code }, alertBox, { invalid_code: 'code' });
      return;
    }
    onSession(res.data);
  });

  // The challenge is over: after the last allowed wrong code that is the reason, not a
  // time-out. The code form and the countdown go; the way back is focused.
  const TOO_MANY_CODES = { zh: '验证码错误次数过多,本次登录已失效。请返回重新登录。', en: 'Too many wrong codes: this login attempt has ended. Go back and log in again.' };
  function challengeDead(tooManyCodes) {
    stopSmsCountdown();
    stopFace();
    $('sms-send').disabled = true;
    $('sms-form').hidden = true;
    $('face-qr').hidden = true;
    TG.fieldError($('sms-code'), null);
    TG.setMsg(alertBox, tooManyCodes ? TOO_MANY_CODES : {
      zh: '验证已超时或已失效,请返回重新登录。', en: 'This login step has expired: go back and log in again.',
    });
    $('factor-back').focus();
  }

  // Face: show the QR code, poll /auth/face/complete every 2 s while it answers face_pending.
  function stopFace() {
    if (state.faceTimer) clearTimeout(state.faceTimer);
    state.faceTimer = null;
  }

  function faceStatus(pair) { TG.setMsg($('face-status'), pair); }

  function offerFaceRestart(restartLogin) {
    const button = $('face-restart');
    button.dataset.mode = restartLogin ? 'login' : 'face';
    TG.setMsg(button, restartLogin
      ? { zh: '返回重新登录', en: 'Back to log in again' }
      : { zh: '刷新二维码', en: 'Refresh QR code' });
    button.hidden = false;
  }

  async function startFace() {
    stopFace();
    $('face-restart').hidden = true;
    const img = $('face-qr');
    img.hidden = true;
    faceStatus({ zh: '正在生成二维码…', en: 'Preparing the QR code…' });
    const res = await TG.api('POST', '/auth/face/start', { challenge: state.challenge });
    if (!res.ok) {
      faceStatus(null);
      TG.showError(res.error, null, alertBox);
      offerFaceRestart(res.error.code === 'challenge_expired');
      return;
    }
    img.src = '/auth/face/qr?nonce=' + encodeURIComponent(res.data.nonce);
    img.hidden = false;
    faceExtras('face', res.data, function () { return state.challenge; });
    state.faceExpiresAt = Date.now() + (res.data.expires_in || 120) * 1000;
    showFaceWaiting();
    state.faceTimer = setTimeout(pollFace, POLL_MS);
  }

  function showFaceWaiting() {
    const left = Math.max(0, Math.round((state.faceExpiresAt - Date.now()) / 1000));
    faceStatus({
      zh: '等待扫码验证…二维码 ' + left + ' 秒后失效。',
      en: 'Waiting for the scan… the QR code expires in ' + left + ' s.',
    });
  }

  async function pollFace() {
    state.faceTimer = null;
    if ($('step-factor').hidden || $('factor-face').hidden) return;
    const res = await TG.api('POST', '/auth/face/complete', { challenge: state.challenge });
    if ($('step-factor').hidden || $('factor-face').hidden) return;
    if (res.ok) {
      faceStatus({ zh: '验证通过,正在登录…', en: 'Verified, logging in…' });
      onSession(res.data);
      return;
    }
    if (res.status === 409 && res.error.code === 'face_pending') {
      if (Date.now() >= state.faceExpiresAt) {
        $('face-qr').hidden = true;
        faceStatus({ zh: '二维码已失效,请刷新后重新扫码。', en: 'The QR code has expired: refresh it and scan again.' });
        offerFaceRestart(false);
        return;
      }
      showFaceWaiting();
      state.faceTimer = setTimeout(pollFace, POLL_MS);
      return;
    }
    $('face-qr').hidden = true;
    faceStatus(null);
    TG.showError(res.error, null, alertBox);
    offerFaceRestart(res.error.code === 'challenge_expired');
  }

  $('face-restart').addEventListener('click', function () {
    TG.setMsg(alertBox, null);
    if ($('face-restart').dataset.mode === 'login') {
      $('factor-back').click();
    } else {
      startFace();
    }
  });

  // On a phone the QR code is on the very screen that would scan it: the app link opens the
  // tax app on this device instead (shown on small screens by the style sheet). In `taxgate
  // demo` only, 模拟扫码 asks the gateway to sign the app backend's callback with the demo secret
  // and posts it, as the app backend would.
  function faceExtras(prefix, started, challenge) {
    const app = $(prefix + '-app');
    if (app) {
      if (typeof started.qr === 'string' && started.qr.indexOf('taxgate-face://') === 0) {
        app.href = started.qr;
        app.hidden = false;
      } else {
        app.hidden = true;
      }
    }
    const sim = $(prefix + '-simulate');
    if (!sim) return;
    sim.hidden = !demo;
    sim.onclick = async function () {
      const status = $(prefix + '-status');
      const res = await TG.busy(sim, async function () {
        const signed = await TG.api('POST', '/auth/face/demo-sign', { challenge: challenge() });
        if (!signed.ok) return signed;
        try {
          const r = await fetch('/auth/face/callback', {
            method: 'POST',
            credentials: 'omit',
            headers: {
              'Content-Type': 'application/json',
              'x-taxgate-timestamp': signed.data.timestamp,
              'x-taxgate-signature': signed.data.signature,
            },
            body: signed.data.body,
          });
          return r.status === 204 ? { ok: true } : { ok: false, error: (await r.json()).error };
        } catch (_) {
          return { ok: false, error: { code: 'network_error', message: '网络连接失败', message_en: 'network error' } };
        }
      });
      if (!res.ok) { TG.showError(res.error, null, alertBox); return; }
      TG.setMsg(status, { zh: '已模拟扫码,正在确认…', en: 'Scan simulated, confirming…' });
    };
  }

  // ---- after the second factor ------------------------------------------------------------
  function onSession(session) {
    stopFace();
    stopSmsCountdown();
    state.challenge = null;
    state.session = session;
    if (session && session.must_change_password) {
      showPasswordStep();
    } else {
      window.location.assign(landing());
    }
  }

  // ---- forced password change -------------------------------------------------------------
  function showPasswordStep() {
    ['pw-old', 'pw-new', 'pw-repeat'].forEach(function (id) { $(id).value = ''; });
    TG.clearErrors($('password-form'));
    showStep('password');
  }

  $('password-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const oldPw = $('pw-old');
    const newPw = $('pw-new');
    const repeat = $('pw-repeat');
    const avoid = [state.session && state.session.person, state.account];
    const ok = checkFields([
      { input: oldPw, check: required },
      {
        input: newPw,
        check: function (v) {
          if (v && v === oldPw.value) return { zh: '新密码不能与原密码相同', en: 'the new password must differ from the current one' };
          return TG.checkNewPassword(v, avoid);
        },
      },
      {
        input: repeat,
        check: function (v) { return v === newPw.value ? null : { zh: '两次输入的新密码不一致', en: 'the two new passwords differ' }; },
      },
    ]);
    if (!ok) return;
    const res = await TG.busy($('pw-submit'), function () {
      return TG.api('POST', '/auth/password', { old_password: oldPw.value, new_password: newPw.value });
    });
    if (!res.ok) {
      TG.showError(res.error, { old_password: oldPw, new_password: newPw }, alertBox, {
        weak_password: 'new_password',
        invalid_credentials: 'old_password',
      }, {
        invalid_credentials: { zh: '原密码错误', en: 'The current password is wrong' },
      });
      return;
    }
    info({ zh: '密码已修改,正在进入…', en: 'Password changed; opening…' });
    window.location.assign(landing());
  });

  // A migrated user who cannot (or will not) change the password now has a way out.
  $('pw-logout').addEventListener('click', async function () {
    await TG.busy($('pw-logout'), function () { return TG.api('POST', '/auth/logout'); });
    window.location.assign('/login?reason=logout');
  });

  // ---- phone recovery (找回手机号码) --------------------------------------------------------
  const recoverInputs = {
    account: $('recover-account'),
    password: $('recover-password'),
    phone: $('recover-phone'),
    code: $('recover-code'),
  };

  $('recover-link').addEventListener('click', function () {
    stopFace();
    recoverInputs.account.value = inputs.account.value;
    recoverInputs.password.value = '';
    recoverInputs.phone.value = '';
    recoverInputs.code.value = '';
    stopRecoverFace();
    $('recover-face').hidden = true;
    $('recover-verify-form').hidden = true;
    TG.clearErrors($('step-recover'));
    showStep('recover');
  });

  $('recover-back').addEventListener('click', function () {
    stopRecoverFace();
    state.recoverChallenge = null;
    state.challenge = null;
    showStep('credentials');
  });

  $('recover-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const ok = checkFields([
      { input: recoverInputs.account, check: TG.checkAccount },
      { input: recoverInputs.password, check: required },
      { input: recoverInputs.phone, check: TG.checkPhone },
    ]);
    if (!ok) return;
    const res = await TG.busy($('recover-send'), function () {
      return TG.api('POST', '/auth/phone/recover', {
        account: recoverInputs.account.value.trim(),
        password: recoverInputs.password.value,
        phone: TG.normalizePhone(recoverInputs.phone.value.trim()),
      });
    });
    if (!res.ok) {
      TG.showError(res.error, recoverInputs, alertBox, { invalid_credentials: 'password' });
      return;
    }
    // Nothing is sent yet: the face scan comes first, then the code goes to the new number.
    state.recoverChallenge = res.data.challenge;
    startRecoverFace();
  });

  let recoverFaceTimer = null;
  let recoverFaceUntil = 0;
  function stopRecoverFace() {
    if (recoverFaceTimer) clearTimeout(recoverFaceTimer);
    recoverFaceTimer = null;
  }
  function recoverFaceStatus(pair) { TG.setMsg($('recover-face-status'), pair); }

  async function startRecoverFace() {
    stopRecoverFace();
    $('recover-face').hidden = false;
    const img = $('recover-face-qr');
    img.hidden = true;
    recoverFaceStatus({ zh: '正在生成二维码…', en: 'Preparing the QR code…' });
    const res = await TG.api('POST', '/auth/face/start', { challenge: state.recoverChallenge });
    if (!res.ok) {
      recoverFaceStatus(null);
      TG.showError(res.error, null, alertBox);
      return;
    }
    img.src = '/auth/face/qr?nonce=' + encodeURIComponent(res.data.nonce);
    img.hidden = false;
    faceExtras('recover-face', res.data, function () { return state.recoverChallenge; });
    recoverFaceUntil = Date.now() + (res.data.expires_in || 120) * 1000;
    recoverFaceStatus({ zh: '等待扫码验证…', en: 'Waiting for the scan…' });
    recoverFaceTimer = setTimeout(pollRecoverFace, POLL_MS);
  }

  async function pollRecoverFace() {
    recoverFaceTimer = null;
    if ($('step-recover').hidden || !state.recoverChallenge) return;
    const res = await TG.api('POST', '/auth/face/complete', { challenge: state.recoverChallenge });
    if (res.ok) {
      $('recover-face').hidden = true;
      $('recover-verify-form').hidden = false;
      info({ zh: '人脸识别通过,验证码已发送至新手机号码。', en: 'Face scan passed: the code was sent to the new number.' });
      recoverInputs.code.focus();
      return;
    }
    if (res.status === 409 && res.error.code === 'face_pending' && Date.now() < recoverFaceUntil) {
      recoverFaceTimer = setTimeout(pollRecoverFace, POLL_MS);
      return;
    }
    $('recover-face-qr').hidden = true;
    recoverFaceStatus(null);
    if (res.status === 409) {
      recoverFaceStatus({ zh: '二维码已失效,请重新提交。', en: 'The QR code has expired: submit again.' });
      return;
    }
    TG.showError(res.error, null, alertBox);
  }

  $('recover-verify-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    if (!checkFields([{ input: recoverInputs.code, check: TG.checkCode }])) return;
    const res = await TG.busy($('recover-verify'), function () {
      return TG.api('POST', '/auth/phone/recover/verify', {
        challenge: state.recoverChallenge,
        code: recoverInputs.code.value.trim(),
      });
    });
    if (!res.ok) {
      TG.showError(res.error, recoverInputs, alertBox, { invalid_code: 'code' });
      return;
    }
    state.recoverChallenge = null;
    state.challenge = null;
    showStep('credentials');
    info({ zh: '手机号码已绑定,请重新登录。', en: 'The phone number is bound to your account: please log in again.' });
  });

  // ---- forgotten password (忘记密码) ---------------------------------------------------------
  const reset = { challenge: null, timer: null, faceTimer: null, faceUntil: 0, attemptsLeft: null };

  function resetStatus(pair) { TG.setMsg($('reset-face-status'), pair); }

  function stopReset() {
    if (reset.timer) clearInterval(reset.timer);
    if (reset.faceTimer) clearTimeout(reset.faceTimer);
    reset.timer = null;
    reset.faceTimer = null;
    $('reset-send').disabled = false;
    TG.setMsg($('reset-send'), SEND);
  }

  $('forgot-link').addEventListener('click', function () {
    stopReset();
    reset.challenge = null;
    $('reset-account').value = inputs.account.value;
    $('reset-form').hidden = false;
    $('reset-verify').hidden = true;
    $('reset-password-form').hidden = true;
    ['reset-code', 'reset-new', 'reset-repeat'].forEach(function (id) { $(id).value = ''; });
    TG.clearErrors($('step-reset'));
    showStep('reset');
  });

  $('reset-back').addEventListener('click', function () {
    stopReset();
    reset.challenge = null;
    showStep('credentials');
  });

  $('reset-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const account = $('reset-account');
    if (!checkFields([{ input: account, check: TG.checkAccount }])) return;
    const res = await TG.busy($('reset-start'), function () {
      return TG.api('POST', '/auth/password/reset', { account: account.value.trim() });
    });
    if (!res.ok) { TG.showError(res.error, { account: account }, alertBox); return; }
    reset.challenge = res.data.challenge;
    reset.attemptsLeft = null;
    $('reset-form').hidden = true;
    $('reset-verify').hidden = false;
    selectResetFactor('sms', false);
    $('reset-send').focus();
  });

  function selectResetFactor(factor, focus) {
    ['sms', 'face'].forEach(function (f) {
      const tab = $('reset-tab-' + f);
      const on = f === factor;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      $('reset-' + f).hidden = !on;
      if (on && focus) tab.focus();
    });
    if (factor === 'face') startResetFace();
    else if (reset.faceTimer) { clearTimeout(reset.faceTimer); reset.faceTimer = null; }
  }
  tabKeys($('reset-tabs'), function (tab) { selectResetFactor(tab.dataset.factor, true); });
  ['sms', 'face'].forEach(function (f) {
    $('reset-tab-' + f).addEventListener('click', function () { selectResetFactor(f, false); });
  });

  function resetCountdown(secs) {
    if (reset.timer) clearInterval(reset.timer);
    let left = Math.max(1, Math.round(secs));
    const b = $('reset-send');
    b.disabled = true;
    const render = function () { TG.setMsg(b, { zh: '重新发送(' + left + 's)', en: 'Resend (' + left + ' s)' }); };
    render();
    reset.timer = setInterval(function () {
      left -= 1;
      if (left > 0) { render(); return; }
      clearInterval(reset.timer);
      reset.timer = null;
      b.disabled = false;
      TG.setMsg(b, SEND);
    }, 1000);
  }

  // The reset is over (too many codes, time-out, a failed scan): start again from the account.
  function resetDead(pair) {
    stopReset();
    reset.challenge = null;
    $('reset-verify').hidden = true;
    $('reset-password-form').hidden = true;
    $('reset-form').hidden = false;
    TG.setMsg(alertBox, pair);
    $('reset-start').focus();
  }
  const RESET_EXPIRED = { zh: '本次验证已失效,请重新提交账号。', en: 'This verification has ended: submit your account again.' };
  const RESET_TOO_MANY = { zh: '验证码错误次数过多,本次验证已失效,请重新提交账号。', en: 'Too many wrong codes: this verification has ended. Submit your account again.' };

  $('reset-send').addEventListener('click', async function () {
    TG.setMsg(alertBox, null);
    TG.fieldError($('reset-code'), null);
    const b = $('reset-send');
    b.disabled = true;
    const res = await TG.api('POST', '/auth/sms/send', { challenge: reset.challenge });
    b.disabled = false;
    if (!res.ok) {
      if (res.error.code === 'challenge_expired') { resetDead(RESET_EXPIRED); return; }
      TG.showError(res.error, { code: $('reset-code') }, alertBox);
      if (res.error.retry_after_secs) resetCountdown(res.error.retry_after_secs);
      return;
    }
    resetCountdown(res.data && res.data.resend_after_secs ? res.data.resend_after_secs : 60);
    // The server answers alike whether or not the account has a phone: so does the page.
    info({ zh: '如该账号已登记手机号码,验证码已发送至该号码,5 分钟内有效。', en: 'If the account has a registered phone, the code was sent to it; it is valid for 5 minutes.' });
    $('reset-code').focus();
  });

  function showResetPassword() {
    stopReset();
    $('reset-verify').hidden = true;
    $('reset-password-form').hidden = false;
    info({ zh: '身份已验证,请设置新密码。', en: 'Identity verified: choose a new password.' });
    $('reset-new').focus();
  }

  $('reset-sms').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const code = $('reset-code');
    if (!checkFields([{ input: code, check: TG.checkCode }])) return;
    const res = await TG.busy($('reset-verify-code'), function () {
      return TG.api('POST', '/auth/sms/verify', { challenge: reset.challenge, code: code.value.trim() });
    });
    if (!res.ok) {
      info(null);
      if (res.error.code === 'challenge_expired') { resetDead(reset.attemptsLeft === 1 ? RESET_TOO_MANY : RESET_EXPIRED); return; }
      if (typeof res.error.attempts_left === 'number') reset.attemptsLeft = res.error.attempts_left;
      TG.showError(res.error, { code: code }, alertBox, { invalid_code: 'code' });
      return;
    }
    showResetPassword();
  });

  async function startResetFace() {
    if (reset.faceTimer) clearTimeout(reset.faceTimer);
    const img = $('reset-face-qr');
    img.hidden = true;
    resetStatus({ zh: '正在生成二维码…', en: 'Preparing the QR code…' });
    const res = await TG.api('POST', '/auth/face/start', { challenge: reset.challenge });
    if (!res.ok) {
      resetStatus(null);
      if (res.error.code === 'challenge_expired' || res.error.code === 'face_failed') { resetDead(TG.errorPair(res.error)); return; }
      TG.showError(res.error, null, alertBox);
      return;
    }
    img.src = '/auth/face/qr?nonce=' + encodeURIComponent(res.data.nonce);
    img.hidden = false;
    faceExtras('reset-face', res.data, function () { return reset.challenge; });
    reset.faceUntil = Date.now() + (res.data.expires_in || 120) * 1000;
    resetStatus({ zh: '等待扫码验证…', en: 'Waiting for the scan…' });
    reset.faceTimer = setTimeout(pollResetFace, POLL_MS);
  }

  async function pollResetFace() {
    reset.faceTimer = null;
    if ($('step-reset').hidden || $('reset-face').hidden || !reset.challenge) return;
    const res = await TG.api('POST', '/auth/face/complete', { challenge: reset.challenge });
    if ($('step-reset').hidden || $('reset-face').hidden) return;
    if (res.ok) { resetStatus(null); showResetPassword(); return; }
    if (res.status === 409 && res.error.code === 'face_pending' && Date.now() < reset.faceUntil) {
      reset.faceTimer = setTimeout(pollResetFace, POLL_MS);
      return;
    }
    $('reset-face-qr').hidden = true;
    resetStatus(null);
    if (res.status === 409) {
      resetStatus({ zh: '二维码已失效,请切换验证方式后重试。', en: 'The QR code has expired: switch the method and try again.' });
      return;
    }
    resetDead(TG.errorPair(res.error));
  }

  $('reset-password-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    info(null);
    const newPw = $('reset-new');
    const repeat = $('reset-repeat');
    const ok = checkFields([
      { input: newPw, check: function (v) { return TG.checkNewPassword(v, [$('reset-account').value.trim()]); } },
      { input: repeat, check: function (v) { return v === newPw.value ? null : { zh: '两次输入的新密码不一致', en: 'the two new passwords differ' }; } },
    ]);
    if (!ok) return;
    const res = await TG.busy($('reset-submit'), function () {
      return TG.api('POST', '/auth/password/reset/complete', { challenge: reset.challenge, new_password: newPw.value });
    });
    if (!res.ok) {
      if (res.error.code === 'challenge_expired') { resetDead(RESET_EXPIRED); return; }
      TG.showError(res.error, { new_password: newPw }, alertBox, { weak_password: 'new_password' });
      return;
    }
    reset.challenge = null;
    inputs.account.value = $('reset-account').value.trim();
    inputs.password.value = '';
    showStep('credentials');
    info({ zh: '密码已重置,您的所有登录会话已注销。请使用新密码登录。', en: 'Your password was reset and every session of yours was logged out. Log in with the new password.' });
    inputs.password.focus();
  });

  // ---- start ------------------------------------------------------------------------------
  selectEntry('enterprise', false);
  TG.setMsg($('sms-send'), SEND);
  TG.setMsg($('reset-send'), SEND);

  // 以企业身份登录 from the account centre: the enterprise entry with the firm filled in.
  const wanted = params.get('entry');
  if (wanted && ENTRIES[wanted] && wanted !== 'enterprise_legacy') {
    selectEntry(wanted, false);
    const tid = (params.get('taxpayer_id') || '').trim().toUpperCase();
    if (tid && ENTRIES[wanted].showTaxpayer && !TG.checkTaxpayerId(tid)) {
      inputs.taxpayer_id.value = tid;
      inputs.account.focus();
    }
  }

  // Why the person is here: logged out, or a session that ended (with the way back).
  const reason = params.get('reason');
  if (reason === 'logout') {
    info({ zh: '您已安全退出。', en: 'You have logged out.' });
  } else if (reason === 'expired') {
    info(next
      ? { zh: '登录已失效,请重新登录;登录后将返回您刚才所在的页面。', en: 'Your session has ended: log in again to return to the page you were on.' }
      : { zh: '登录已失效,请重新登录。', en: 'Your session has ended: please log in again.' });
  }

  // The account centre sends a session that still must change its password here.
  if (window.location.hash === '#password') {
    TG.api('GET', '/auth/session').then(function (res) {
      if (res.ok && res.data && res.data.must_change_password) {
        state.session = res.data;
        showPasswordStep();
      }
    });
  }
});
