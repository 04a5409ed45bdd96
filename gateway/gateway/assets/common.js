// Shared by both pages: the JSON API call, messages shown in either language, field errors and
// the identifier checks. The page checks input to help the user; the server stays the authority.
'use strict';

(function () {
  const t = window.I18N.t;

  // ---- messages ---------------------------------------------------------------------------
  // Every message is a {zh, en} pair kept beside its element, so switching language re-renders
  // what is already on screen (server messages included).
  const shown = new Map();

  function setMsg(el, pair) {
    if (!el) return;
    if (pair) {
      shown.set(el, pair);
      el.textContent = t(pair);
      el.hidden = false;
    } else {
      shown.delete(el);
      el.textContent = '';
      el.hidden = true;
    }
  }

  window.I18N.onChange(function () {
    shown.forEach(function (pair, el) { el.textContent = t(pair); });
  });

  // One message per error: the server's own words (they name the step to take), plus what the
  // error body says about trying again (attempts_left, locked_for_secs, retry_after_secs).
  // `override` replaces the server's words where the page knows better what happened (a wrong
  // *old* password is 原密码错误, not 账号或密码错误).
  function duration(secs) {
    const s = Math.max(1, Math.round(secs));
    if (s < 120) return { zh: s + ' 秒', en: s + ' s' };
    const m = Math.ceil(s / 60);
    return { zh: m + ' 分钟', en: m + ' min' };
  }

  function errorPair(error, override) {
    const base = override || {
      zh: error.message || '操作失败,请稍后再试',
      en: error.message_en || error.message || 'the request failed',
    };
    const extra = [];
    if (typeof error.attempts_left === 'number') {
      extra.push(error.attempts_left > 0
        ? { zh: '还可尝试 ' + error.attempts_left + ' 次。', en: error.attempts_left + ' attempt(s) left.' }
        : { zh: '已无剩余尝试次数。', en: 'No attempts left.' });
    }
    if (typeof error.locked_for_secs === 'number') {
      const d = duration(error.locked_for_secs);
      extra.push({ zh: '请 ' + d.zh + '后再试,或使用"忘记密码"重置密码。', en: 'Try again in ' + d.en + ', or reset your password with "Forgot password".' });
    }
    if (typeof error.retry_after_secs === 'number') {
      const d = duration(error.retry_after_secs);
      extra.push({ zh: '请 ' + d.zh + '后再试。', en: 'Try again in ' + d.en + '.' });
    }
    if (!extra.length) return base;
    const sepZh = /[。!?]$/.test(base.zh) ? '' : '。';
    const sepEn = /[.!?]$/.test(base.en) ? ' ' : '. ';
    return {
      zh: base.zh + sepZh + extra.map(function (p) { return p.zh; }).join(''),
      en: base.en + sepEn + extra.map(function (p) { return p.en; }).join(' '),
    };
  }

  // A path a login may return to: on this origin, one leading "/", never "//" or "/\", no
  // backslash, encoded slash, backslash or percent, no dot segment (the server's
  // web::safe_return_path applies the same rule to [pages] home_url).
  function safeReturnPath(p) {
    if (typeof p !== 'string' || p.length === 0 || p.length > 512) return null;
    if (p[0] !== '/' || p[1] === '/' || p[1] === '\\') return null;
    if (!/^[A-Za-z0-9\-._~\/?=&%+,:@]+$/.test(p)) return null;
    const lower = p.toLowerCase();
    if (['%2f', '%5c', '%25', '%00', '%2e'].some(function (e) { return lower.indexOf(e) >= 0; })) return null;
    if (p.split(/[/?]/).some(function (seg) { return seg === '.' || seg === '..'; })) return null;
    try {
      if (new URL(p, window.location.origin).origin !== window.location.origin) return null;
    } catch (_) {
      return null;
    }
    return p;
  }

  // ---- API --------------------------------------------------------------------------------
  // Resolves to {ok, status, data} or {ok: false, status, error}; never throws.
  // A 403 step_up_required is handed to window.taxgateStepUp (security.js) when the page has it:
  // once the person verified again it resolves true and the call is sent once more.
  async function api(method, path, body, retried) {
    const opts = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (_) {
      return { ok: false, status: 0, error: { code: 'network_error', message: '网络连接失败,请检查网络后重试', message_en: 'network error: check the connection and try again' } };
    }
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch (_) { data = null; }
    }
    if (res.ok) return { ok: true, status: res.status, data: data, headers: res.headers };
    if (!retried && data && data.error && data.error.code === 'step_up_required' && typeof window.taxgateStepUp === 'function') {
      if (await window.taxgateStepUp(data.error)) return api(method, path, body, true);
    }
    const error = data && data.error && data.error.code ? data.error : {
      code: 'http_' + res.status,
      message: '请求失败(' + res.status + '),请稍后再试',
      message_en: 'the request failed (' + res.status + ')',
    };
    return { ok: false, status: res.status, error: error };
  }

  // ---- forms ------------------------------------------------------------------------------
  function fieldError(input, pair) {
    if (!input) return;
    setMsg(document.getElementById(input.id + '-error'), pair);
    if (pair) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  function clearErrors(root) {
    root.querySelectorAll('[aria-invalid]').forEach(function (el) { fieldError(el, null); });
    root.querySelectorAll('.field-error').forEach(function (el) { setMsg(el, null); });
  }

  // Show an API error next to the field the server named (fields maps API field names to
  // inputs), else in the banner: in one place only, never both. Focus goes to the field at fault.
  // byCode names the field for codes the server may answer without one (e.g. invalid_code);
  // overrides replaces the server's words for some codes (see errorPair).
  function showError(error, fields, banner, byCode, overrides) {
    const pair = errorPair(error, overrides ? overrides[error.code] : null);
    const name = error.field || (byCode ? byCode[error.code] : null);
    const input = name && fields ? fields[name] : null;
    if (input && !input.closest('[hidden]')) {
      setMsg(banner, null);
      fieldError(input, pair);
      input.focus();
    } else {
      setMsg(banner, pair);
      if (banner) banner.scrollIntoView({ block: 'nearest' });
    }
  }

  // A field's error (and the page's banner) go as soon as the user edits the field: an error
  // stays only while it is still true.
  document.addEventListener('input', function (ev) {
    const input = ev.target;
    if (!input || !input.id) return;
    const own = document.getElementById(input.id + '-error');
    if (own && !own.hidden) fieldError(input, null);
    document.querySelectorAll('.alert[role="alert"]').forEach(function (banner) {
      if (!banner.hidden) setMsg(banner, null);
    });
  });

  // Disable a button while its request runs, so a double click sends once.
  async function busy(button, work) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      return await work();
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  // ---- identifiers ------------------------------------------------------------------------
  // GB 32100-2015 unified social credit code: 17 characters and a check character.
  const CREDIT_CHARS = '0123456789ABCDEFGHJKLMNPQRTUWXY';
  const CREDIT_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

  function creditCodeValid(code) {
    if (!/^[0-9A-HJ-NPQRTUWXY]{18}$/.test(code)) return false;
    let sum = 0;
    for (let i = 0; i < 17; i += 1) sum += CREDIT_CHARS.indexOf(code[i]) * CREDIT_WEIGHTS[i];
    return CREDIT_CHARS[(31 - (sum % 31)) % 31] === code[17];
  }

  // GB 11643-1999 resident ID number: birth date in positions 7-14 and a check character.
  const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const ID_CHECK = '10X98765432';

  function idNumberValid(id) {
    if (!/^\d{17}[\dX]$/.test(id)) return false;
    const y = Number(id.slice(6, 10));
    const m = Number(id.slice(10, 12));
    const d = Number(id.slice(12, 14));
    const date = new Date(Date.UTC(y, m - 1, d));
    if (y < 1900 || date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) return false;
    if (date.getTime() > Date.now()) return false;
    let sum = 0;
    for (let i = 0; i < 17; i += 1) sum += Number(id[i]) * ID_WEIGHTS[i];
    return ID_CHECK[sum % 11] === id[17];
  }

  function normalizePhone(raw) {
    return raw.replace(/[\s-]/g, '').replace(/^(\+86|0086)/, '');
  }

  const MSG = {
    required: { zh: '请填写此项', en: 'this field is required' },
    taxpayerFormat: { zh: '纳税人识别号应为 15、17、18 或 20 位字母或数字', en: 'a taxpayer ID has 15, 17, 18 or 20 letters or digits' },
    creditCheck: { zh: '统一社会信用代码校验位不正确,请核对', en: 'the unified social credit code\'s check character is wrong' },
    idCheck: { zh: '居民身份证号码不正确(出生日期或校验位有误),请核对', en: 'the ID number is not valid (birth date or check character)' },
    phone: { zh: '手机号码格式不正确', en: 'not a valid mobile number' },
    code: { zh: '请输入 6 位数字验证码', en: 'enter the 6-digit code' },
  };

  // Returns null when acceptable, else the message pair. Normalises case in place of the user.
  function checkTaxpayerId(value) {
    const v = value.trim().toUpperCase();
    if (!v) return MSG.required;
    if (v.length === 18) {
      if (!/^[0-9A-Z]{18}$/.test(v)) return MSG.taxpayerFormat;
      return creditCodeValid(v) ? null : MSG.creditCheck;
    }
    if ([15, 17, 20].indexOf(v.length) >= 0 && /^[0-9A-Z]+$/.test(v)) return null;
    return MSG.taxpayerFormat;
  }

  // An account is an ID number, a phone number or a username. Only what looks like the first two
  // is checked; a migrated user's first account is the enterprise's taxpayer ID, so an 18-character
  // value that is a valid credit code passes too.
  function checkAccount(value) {
    const v = value.trim();
    if (!v) return MSG.required;
    if (/^\d{17}[\dXx]$/.test(v)) {
      const up = v.toUpperCase();
      return idNumberValid(up) || creditCodeValid(up) ? null : MSG.idCheck;
    }
    const phone = normalizePhone(v);
    if (/^1\d{10}$/.test(phone)) return /^1[3-9]\d{9}$/.test(phone) ? null : MSG.phone;
    return null;
  }

  function checkIdNumber(value) {
    const v = value.trim().toUpperCase();
    if (!v) return MSG.required;
    return idNumberValid(v) ? null : MSG.idCheck;
  }

  function checkPhone(value) {
    const v = normalizePhone(value.trim());
    if (!v) return MSG.required;
    return /^1[3-9]\d{9}$/.test(v) ? null : MSG.phone;
  }

  function checkCode(value) {
    return /^\d{6}$/.test(value.trim()) ? null : MSG.code;
  }

  // 8-20 characters, three of four character classes, not containing the ID number or username.
  function checkNewPassword(pw, avoid) {
    if (pw.length < 8 || pw.length > 20) return { zh: '密码长度应为 8–20 位', en: 'the password must have 8–20 characters' };
    const classes = [/[A-Z]/, /[a-z]/, /\d/, /[^A-Za-z\d]/].filter(function (re) { return re.test(pw); }).length;
    if (classes < 3) return { zh: '密码须至少包含大写字母、小写字母、数字、符号中的三种', en: 'use at least three of: upper-case, lower-case, digits, symbols' };
    const lower = pw.toLowerCase();
    for (const word of avoid) {
      if (word && word.length >= 3 && lower.indexOf(String(word).toLowerCase()) >= 0) {
        return { zh: '密码不得包含身份证号码或用户名', en: 'the password must not contain your ID number or username' };
      }
    }
    return null;
  }

  // ---- display ----------------------------------------------------------------------------
  const ROLES = {
    legal_representative: { zh: '法定代表人', en: 'Legal representative' },
    finance_manager: { zh: '财务负责人', en: 'Finance manager' },
    admin: { zh: '管理员', en: 'Administrator' },
    tax_handler: { zh: '办税员', en: 'Tax handler' },
    invoice_clerk: { zh: '开票员', en: 'Invoice clerk' },
    ticket_buyer: { zh: '购票员', en: 'Invoice purchaser' },
    agent: { zh: '涉税服务人员', en: 'Tax service staff (agent)' },
    legacy_enterprise: { zh: '企业(旧版登录)', en: 'Enterprise (legacy login)' },
  };
  const ENTRIES = {
    enterprise: { zh: '企业业务', en: 'Enterprise' },
    person: { zh: '自然人业务', en: 'Individual' },
    agent: { zh: '代理业务', en: 'Agent' },
    enterprise_legacy: { zh: '旧版企业登录', en: 'Legacy enterprise login' },
  };
  const PERMISSIONS = {
    declare: { zh: '申报缴税', en: 'Declare and pay' },
    invoice: { zh: '发票业务', en: 'Invoices' },
    query: { zh: '涉税查询', en: 'Tax queries' },
    tax_affairs: { zh: '涉税办理', en: 'Tax affairs' },
    personal_tax: { zh: '自然人业务', en: 'Individual tax' },
  };
  const STATUSES = {
    active: { zh: '有效', en: 'Active' },
    pending: { zh: '待确认', en: 'Pending' },
    expired: { zh: '已过期', en: 'Expired' },
    revoked: { zh: '已解除', en: 'Ended' },
  };

  function label(table, key) {
    if (key == null) return '—';
    return table[key] ? t(table[key]) : String(key);
  }

  function maskId(id) {
    if (!id) return '—';
    return id.length > 8 ? id.slice(0, 4) + '*'.repeat(id.length - 8) + id.slice(-4) : id;
  }

  function formatTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toLocaleString(window.I18N.lang() === 'en' ? 'en-GB' : 'zh-CN', { dateStyle: 'medium', timeStyle: 'short' });
  }

  function formatDate(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toLocaleDateString(window.I18N.lang() === 'en' ? 'en-GB' : 'zh-CN', { dateStyle: 'medium' });
  }

  window.TG = {
    api: api,
    setMsg: setMsg,
    fieldError: fieldError,
    clearErrors: clearErrors,
    showError: showError,
    errorPair: errorPair,
    safeReturnPath: safeReturnPath,
    busy: busy,
    creditCodeValid: creditCodeValid,
    idNumberValid: idNumberValid,
    normalizePhone: normalizePhone,
    checkTaxpayerId: checkTaxpayerId,
    checkAccount: checkAccount,
    checkIdNumber: checkIdNumber,
    checkPhone: checkPhone,
    checkCode: checkCode,
    checkNewPassword: checkNewPassword,
    ROLES: ROLES,
    ENTRIES: ENTRIES,
    PERMISSIONS: PERMISSIONS,
    STATUSES: STATUSES,
    label: label,
    maskId: maskId,
    formatTime: formatTime,
    formatDate: formatDate,
  };
})();
