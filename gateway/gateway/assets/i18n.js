// Chinese first, English on request. The HTML carries the Chinese text; this file carries the
// English for every `data-i18n*` key. Strings built in scripts are {zh, en} pairs passed to t().
'use strict';

(function () {
  const EN = {
    'brand.name': 'e-Tax Bureau',
    'brand.sub': 'Unified identity · taxgate',
    'login.title': 'e-Tax Bureau · Log in',
    'login.heading': 'Log in',
    'login.entries': 'Login entries',
    'login.submit': 'Log in',
    'entry.enterprise': 'Enterprise',
    'entry.person': 'Individual',
    'entry.agent': 'Agent',
    'entry.legacy': 'Legacy enterprise login',
    'hint.enterprise': 'Log in for an enterprise with your own ID number, phone number or username and your personal password.',
    'field.taxpayer_id': 'Unified social credit code / taxpayer ID',
    'field.account': 'ID card number / phone number / username',
    'field.password': 'Personal password',
    'field.sms_code': 'SMS code',
    'field.new_phone': 'New phone number',
    'field.old_password': 'Current password',
    'field.new_password': 'New password',
    'field.repeat_password': 'Repeat the new password',
    'field.id_number': 'Resident ID card number',
    'field.role': 'Role',
    'field.permissions': 'Permissions',
    'field.valid_until': 'Valid until',
    'field.valid_until_date': 'Valid-until date',
    'field.long_term': 'No end date',
    'factor.heading': 'Verify your identity',
    'factor.choose': 'Verification method',
    'factor.sms': 'SMS code',
    'factor.face': 'Scan QR code',
    'factor.back': 'Back to log in again',
    'sms.send': 'Send code',
    'sms.verify': 'Verify and log in',
    'sms.unavailable': 'This account has no phone number (or it was cleared because someone else verified the same number: one number, one person), so SMS verification is not available. Scan the QR code instead, or recover your phone number first.',
    'recover.link': 'Recover phone number',
    'recover.heading': 'Recover phone number',
    'recover.hint': 'After your account and password are checked and the face scan passes, a code goes to the new number; once confirmed, the number is bound to your account and, under "one number, one person", removed from whoever held it before; your old number and that holder are told, and every session of yours is logged out. Without the mobile app, ask the tax service hall.',
    'recover.start': 'Next: face scan',
    'recover.verify': 'Bind this number',
    'recover.back': 'Back to log in',
    'face.howto': 'Scan the QR code with the Individual Income Tax app or your province\'s tax app to complete face verification.',
    'face.qr_alt': 'QR code for face verification',
    'face.restart': 'Refresh QR code',
    'pw.heading': 'Change your initial password',
    'pw.hint': 'You must change your initial password before you continue.',
    'pw.rules': '8–20 characters, with at least three of: upper-case letters, lower-case letters, digits, symbols; hard to guess; it must not contain your ID number, birth date, phone number or username.',
    'pw.submit': 'Change password and continue',
    'pw.initial': 'Your initial (current) password is the last 6 characters of your resident ID number (type a final X in upper case).',
    'reset.link': 'Forgot password',
    'reset.heading': 'Forgot password',
    'reset.hint': 'Enter your account, prove it is you with a code sent to the account\'s registered phone or with the face scan, then choose a new password. Every session of yours is then logged out and the registered phone is told.',
    'reset.start': 'Next: verify it is you',
    'reset.sms_hint': 'The code is only ever sent to the phone registered for this account.',
    'reset.verify': 'Verify',
    'reset.submit': 'Set the new password',
    'face.app': 'Open the tax app on this phone',
    'face.simulate': 'Simulate the scan (demo)',
    'current.groups': 'May use',
    'current.leave': 'Back to the agency (leave this client)',
    'current.home': 'Go to the tax services',
    'footer.note': 'This page is served by the taxgate gateway. Never tell anyone your password or SMS code.',
    'account.title': 'e-Tax Bureau · Account centre',
    'account.heading': 'Account centre',
    'account.logout': 'Log out',
    'account.loading': 'Loading…',
    'current.heading': 'Current identity',
    'current.name': 'Name',
    'current.person': 'ID number',
    'current.entry': 'Entry',
    'current.enterprise': 'Enterprise',
    'current.role': 'Role',
    'current.agency': 'Agency',
    'current.mfa': 'Verified by',
    'current.expires': 'Session valid until',
    'identities.heading': 'Switch identity',
    'identities.hint': 'Switch between enterprises or roles without logging in again.',
    'identities.empty': 'No other identity to switch to.',
    'personnel.heading': 'Personnel and permissions',
    'personnel.add': 'Add a tax handler',
    'personnel.confirm_hint': 'The new person stays "pending" until they confirm in Individual → Account centre → Enterprise authorizations.',
    'personnel.submit': 'Add',
    'personnel.list': 'Authorized personnel',
    'personnel.empty': 'No personnel yet.',
    'auth.heading': 'Enterprise authorizations',
    'auth.empty': 'No enterprise authorizations.',
    'phone.heading': 'Phone number',
    'phone.note': 'One number, one person: a number belongs only to the person who last verified it by SMS. Once you verify it, it is removed from the previous holder\'s account.',
    'phone.verify': 'Confirm change',
    'role.legal_representative': 'Legal representative',
    'role.finance_manager': 'Finance manager',
    'role.admin': 'Administrator',
    'role.tax_handler': 'Tax handler',
    'role.invoice_clerk': 'Invoice clerk',
    'role.ticket_buyer': 'Invoice purchaser',
    'perm.declare': 'Declare and pay',
    'perm.invoice': 'Invoices',
    'perm.query': 'Tax queries',
    'perm.tax_affairs': 'Tax affairs',
    'dialog.cancel': 'Cancel',
    'dialog.ok': 'OK',
    // step-up and sessions
    'security.step_up': 'Verify it is you',
    'security.sessions': 'Devices and sessions',
    'security.personnel_sessions': 'Sessions acting for the enterprise',
  };

  const STORAGE_KEY = 'taxgate.lang';
  const ATTRS = ['placeholder', 'aria-label', 'alt'];
  const zhText = new WeakMap();
  const zhAttrs = new WeakMap();
  const listeners = [];
  let lang = 'zh';
  try {
    if (window.localStorage.getItem(STORAGE_KEY) === 'en') lang = 'en';
  } catch (_) {
    // storage disabled: Chinese, not remembered
  }

  function t(pair) {
    if (pair == null) return '';
    if (typeof pair === 'string') return pair;
    return lang === 'en' && pair.en ? pair.en : pair.zh;
  }

  function translateTree(root) {
    root.querySelectorAll('[data-i18n]').forEach(function (el) {
      if (!zhText.has(el)) zhText.set(el, el.textContent);
      const en = EN[el.dataset.i18n];
      el.textContent = lang === 'en' && en !== undefined ? en : zhText.get(el);
    });
    ATTRS.forEach(function (attr) {
      root.querySelectorAll('[data-i18n-' + attr + ']').forEach(function (el) {
        let saved = zhAttrs.get(el);
        if (!saved) { saved = {}; zhAttrs.set(el, saved); }
        if (!(attr in saved)) saved[attr] = el.getAttribute(attr) || '';
        const en = EN[el.getAttribute('data-i18n-' + attr)];
        el.setAttribute(attr, lang === 'en' && en !== undefined ? en : saved[attr]);
      });
    });
  }

  function apply() {
    document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
    translateTree(document);
    const toggle = document.getElementById('lang-toggle');
    if (toggle) {
      toggle.textContent = lang === 'en' ? '中文' : 'English';
      toggle.setAttribute('lang', lang === 'en' ? 'zh-CN' : 'en');
      toggle.setAttribute('aria-label', lang === 'en' ? '切换到中文' : 'Switch to English');
    }
    listeners.forEach(function (f) { f(lang); });
  }

  function set(next) {
    lang = next === 'en' ? 'en' : 'zh';
    try { window.localStorage.setItem(STORAGE_KEY, lang); } catch (_) { /* not remembered */ }
    apply();
  }

  window.I18N = {
    t: t,
    lang: function () { return lang; },
    set: set,
    apply: apply,
    translateTree: translateTree,
    onChange: function (f) { listeners.push(f); },
  };

  document.addEventListener('DOMContentLoaded', function () {
    const toggle = document.getElementById('lang-toggle');
    if (toggle) toggle.addEventListener('click', function () { set(lang === 'en' ? 'zh' : 'en'); });
    apply();
  });
})();
