// /account (账户中心): current identity, identity switching, personnel management (enterprise
// side), enterprise authorizations (person side), phone change, logout. Everything shown is
// inserted with textContent; the session cookie is HttpOnly and never touched here.
'use strict';

document.addEventListener('DOMContentLoaded', function () {
  const TG = window.TG;
  const t = window.I18N.t;
  const $ = function (id) { return document.getElementById(id); };

  const alertBox = $('account-alert');
  const infoBox = $('account-info');
  const EXPIRY_WARN_DAYS = 30;
  const DAY_MS = 86400000;

  const state = {
    session: null,
    overview: null,
    identities: null,
    personnel: null,
    authorizations: null,
  };

  // ---- small DOM helpers ------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'className') node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  // `name` is the accessible name when the visible text alone is ambiguous (a list of 解除
  // buttons): it names the person or enterprise the button acts on.
  function button(text, testid, cls, name) {
    const b = el('button', { type: 'button', className: cls || 'btn-secondary', 'data-testid': testid, text: t(text) });
    if (name) b.setAttribute('aria-label', t(name));
    return b;
  }

  function badge(status) {
    return el('span', { className: 'badge badge-' + (status || 'unknown'), text: TG.label(TG.STATUSES, status) });
  }

  function info(pair) { TG.setMsg(infoBox, pair); }

  // A session that ended goes to the login, which says so and brings the person back here.
  function relogin() {
    window.location.replace('/login?next=' + encodeURIComponent(window.location.pathname) + '&reason=expired');
  }

  function fail(error) {
    if (error.code === 'login_required' || error.code === 'session_expired') {
      relogin();
      return;
    }
    if (error.code === 'password_change_required') {
      window.location.replace('/login#password');
      return;
    }
    TG.showError(error, null, alertBox);
  }

  // Confirmation in a <dialog> (window.confirm is blocked by some browsers and test drivers).
  function confirmDialog(pair) {
    const dialog = $('confirm-dialog');
    $('confirm-dialog-text').textContent = t(pair);
    return new Promise(function (resolve) {
      dialog.addEventListener('close', function () { resolve(dialog.returnValue === 'ok'); }, { once: true });
      dialog.returnValue = '';
      dialog.showModal();
    });
  }

  function validity(until) {
    return until ? TG.formatDate(until) : t({ zh: '长期', en: 'no end date' });
  }

  function daysLeft(item) {
    if (typeof item.expires_in_days === 'number') return item.expires_in_days;
    if (!item.valid_until) return null;
    const ms = new Date(item.valid_until).getTime() - Date.now();
    return Number.isNaN(ms) ? null : Math.ceil(ms / DAY_MS);
  }

  // ---- current identity -------------------------------------------------------------------
  function renderSession() {
    const s = state.session;
    if (!s) return;
    $('cur-name').textContent = s.name || '—';
    $('cur-person').textContent = TG.maskId(s.person);
    $('cur-entry').textContent = TG.label(TG.ENTRIES, s.entry);
    const named = (state.identities || []).find(function (i) { return i.enterprise === s.enterprise; });
    $('cur-enterprise').textContent = s.enterprise
      ? (named && named.enterprise_name ? named.enterprise_name + ' ' : '') + s.enterprise
      : '—';
    $('cur-role').textContent = TG.label(TG.ROLES, s.role);
    const o = state.overview || {};
    if (s.enterprise && o.enterprise_name) $('cur-enterprise').textContent = o.enterprise_name + ' ' + s.enterprise;
    $('cur-agency').textContent = s.agency ? ((o.agency_name ? o.agency_name + ' ' : '') + s.agency) : '—';
    // What the policies let this identity do now (a binding's role defaults included).
    $('cur-groups').textContent = Array.isArray(o.groups) && o.groups.length
      ? permissionsText(o.groups)
      : t({ zh: '暂无可办理的业务', en: 'none at the moment' });
    const note = $('cur-groups-note');
    if (o.agreement && Array.isArray(o.agreement.scope)) {
      TG.setMsg(note, {
        zh: '代理协议范围:' + permissionsText(o.agreement.scope) + ',有效期至 ' + validity(o.agreement.valid_until),
        en: 'Agreement scope: ' + permissionsText(o.agreement.scope) + ', valid until ' + validity(o.agreement.valid_until),
      });
    } else if (o.binding && o.binding.uses_role_defaults) {
      TG.setMsg(note, { zh: '权限为该身份类型的默认权限。', en: 'These are the default permissions of the role.' });
    } else {
      TG.setMsg(note, null);
    }
    $('leave-client').hidden = !(s.entry === 'agent' && s.enterprise);
    // The way to the tax services ([pages] home_url), when it is not this page and the identity
    // may use something there.
    const home = TG.safeReturnPath(o.home_url);
    const link = $('home-link');
    link.hidden = !(home && home !== window.location.pathname && Array.isArray(o.groups) && o.groups.length);
    if (!link.hidden) link.href = home;
    $('cur-mfa').textContent = s.mfa === 'face'
      ? t({ zh: '扫码验证', en: 'QR code (face)' })
      : s.mfa === 'sms' ? t({ zh: '短信验证', en: 'SMS code' }) : '—';
    $('cur-expires').textContent = TG.formatTime(s.expires_at);
    $('current-identity').hidden = false;
  }

  // ---- identities (身份切换) ----------------------------------------------------------------
  function isCurrent(item) {
    const s = state.session;
    return s && s.enterprise === item.enterprise && s.role === item.role;
  }

  function renderIdentities() {
    const list = $('identities-list');
    list.replaceChildren();
    const items = state.identities || [];
    $('identities-empty').hidden = items.length > 0;
    items.forEach(function (item) {
      const key = item.enterprise + '-' + item.role;
      const meta = el('p', { className: 'item-meta' }, [
        el('span', { text: TG.label(TG.ROLES, item.role) }),
        badge(item.status),
        el('span', { text: t({ zh: '有效期至 ', en: 'valid until ' }) + validity(item.valid_until) }),
      ]);
      const li = el('li', { className: 'item', 'data-testid': 'identity-' + key }, [
        el('p', { className: 'item-title' }, [
          el('strong', { text: item.enterprise_name || item.enterprise }),
          el('span', { className: 'muted', text: ' ' + item.enterprise }),
        ]),
        meta,
      ]);
      const days = daysLeft(item);
      if (item.status === 'active' && days !== null && (typeof item.expires_in_days === 'number' || days <= EXPIRY_WARN_DAYS)) {
        li.appendChild(el('p', {
          className: 'warn',
          'data-testid': 'expiry-' + key,
          text: t({
            zh: '该身份将于 ' + Math.max(0, days) + ' 天后到期,请联系企业延长有效期。',
            en: 'This identity expires in ' + Math.max(0, days) + ' day(s): ask the enterprise to extend it.',
          }),
        }));
      } else if (item.status === 'expired') {
        li.appendChild(el('p', { className: 'warn', text: t({ zh: '已过期,请联系企业的法定代表人、财务负责人或管理员延长有效期。', en: 'Expired: ask the enterprise\'s legal representative, finance manager or administrator to extend it.' }) }));
      } else if (item.status === 'pending') {
        li.appendChild(el('p', { className: 'muted', text: t({ zh: '待确认:双方确认后方可使用。', en: 'Pending: usable once both sides have confirmed.' }) }));
      }
      if (isCurrent(item)) {
        li.appendChild(el('span', { className: 'badge badge-current', text: t({ zh: '当前身份', en: 'Current' }) }));
      } else if (item.status === 'active' && state.session && state.session.entry === 'person') {
        // A natural-person session acts for no enterprise: the way to one is its own login.
        const name = item.enterprise_name || item.enterprise;
        const a = el('a', {
          className: 'btn-primary',
          'data-testid': 'enterprise-login-' + key,
          href: '/login?entry=enterprise&taxpayer_id=' + encodeURIComponent(item.enterprise),
          text: t({ zh: '以企业身份登录', en: 'Log in for this enterprise' }),
        });
        a.setAttribute('aria-label', t({ zh: '以企业身份登录 ' + name, en: 'Log in for ' + name }));
        li.appendChild(a);
      } else if (item.status === 'active') {
        const name = item.enterprise_name || item.enterprise;
        const agent = item.role === 'agent';
        const b = button(agent ? { zh: '进入', en: 'Enter' } : { zh: '切换', en: 'Switch' }, 'switch-' + key, 'btn-primary',
          agent ? { zh: '进入 ' + name, en: 'Enter ' + name } : { zh: '切换到 ' + name + ' ' + TG.label(TG.ROLES, item.role), en: 'Switch to ' + name + ', ' + TG.label(TG.ROLES, item.role) });
        b.addEventListener('click', function () { switchTo(item, b); });
        li.appendChild(b);
      }
      list.appendChild(li);
    });
    $('identities-section').hidden = false;
  }

  async function switchTo(item, b) {
    TG.setMsg($('identities-error'), null);
    TG.setMsg(alertBox, null);
    const res = await TG.busy(b, function () {
      return TG.api('POST', '/account/switch', { enterprise: item.enterprise, role: item.role });
    });
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return; }
      TG.setMsg($('identities-error'), TG.errorPair(res.error));
      return;
    }
    info({
      zh: '已切换到 ' + (item.enterprise_name || item.enterprise) + '(' + (TG.ROLES[item.role] || { zh: item.role }).zh + ')',
      en: 'Switched to ' + (item.enterprise_name || item.enterprise) + ' (' + (TG.ROLES[item.role] || { en: item.role }).en + ')',
    });
    await loadAll(res.data);
    $('current-heading').focus();
  }

  // ---- personnel (人员权限管理, enterprise side) --------------------------------------------
  const ROLE_DEFAULTS = {
    legal_representative: ['declare', 'invoice', 'query', 'tax_affairs'],
    finance_manager: ['declare', 'invoice', 'query', 'tax_affairs'],
    admin: ['declare', 'invoice', 'query', 'tax_affairs'],
    tax_handler: ['declare', 'query', 'tax_affairs'],
    invoice_clerk: ['invoice', 'query'],
    ticket_buyer: ['invoice', 'query'],
  };
  const permBoxes = Array.from(document.querySelectorAll('#personnel-form input[name="permissions"]'));
  const personnelInputs = {
    id_number: $('personnel-id-number'),
    role: $('personnel-role'),
    permissions: permBoxes[0],
    valid_until: $('personnel-valid-until'),
  };

  function presetPermissions() {
    const defaults = ROLE_DEFAULTS[personnelInputs.role.value] || [];
    permBoxes.forEach(function (box) { box.checked = defaults.indexOf(box.value) >= 0; });
  }
  personnelInputs.role.addEventListener('change', presetPermissions);

  function syncLongTerm() {
    personnelInputs.valid_until.disabled = $('personnel-long-term').checked;
  }
  $('personnel-long-term').addEventListener('change', syncLongTerm);

  function bindingId(b) { return String(b.binding || b.id || ''); }

  function permissionsText(perms) {
    if (!Array.isArray(perms) || perms.length === 0) return '';
    const sep = window.I18N.lang() === 'en' ? ', ' : '、';
    return perms.map(function (p) { return TG.label(TG.PERMISSIONS, p); }).join(sep);
  }

  function renderPersonnel() {
    const list = $('personnel-list');
    list.replaceChildren();
    const items = state.personnel || [];
    $('personnel-empty').hidden = items.length > 0;
    items.forEach(function (b) {
      const id = bindingId(b);
      const person = b.person || b.id_number || '';
      const li = el('li', { className: 'item', 'data-testid': 'personnel-' + id }, [
        el('p', { className: 'item-title' }, [
          el('strong', { text: b.name || b.person_name || TG.maskId(person) }),
          el('span', { className: 'muted', text: ' ' + TG.maskId(person) }),
        ]),
        el('p', { className: 'item-meta' }, [
          el('span', { text: TG.label(TG.ROLES, b.role) }),
          badge(b.status),
          el('span', { text: t({ zh: '有效期至 ', en: 'valid until ' }) + validity(b.valid_until) }),
        ]),
        permissionsText(b.permissions || b.groups) ? el('p', { className: 'muted', text: permissionsText(b.permissions || b.groups) + (b.permissions ? '' : t({ zh: '(默认权限)', en: ' (role defaults)' })) }) : null,
      ]);
      if (id && b.status !== 'revoked' && b.role !== 'legal_representative') {
        const who = b.name || TG.maskId(person);
        const pending = b.status === 'pending';
        const actions = el('div', { className: 'item-actions' });
        const edit = button({ zh: '修改', en: 'Change' }, 'edit-' + id, 'btn-secondary',
          { zh: '修改 ' + who + ' 的权限或有效期', en: 'Change the permissions or validity of ' + who });
        edit.id = 'edit-' + id;
        edit.setAttribute('aria-expanded', 'false');
        edit.addEventListener('click', function () { openEdit(b, li, edit); });
        actions.appendChild(edit);
        const btn = button(pending ? { zh: '撤回', en: 'Withdraw' } : { zh: '解除', en: 'End' }, 'revoke-' + id, 'btn-danger',
          pending ? { zh: '撤回对 ' + who + ' 的授权', en: 'Withdraw the request to ' + who } : { zh: '解除 ' + who, en: 'End the binding of ' + who });
        btn.addEventListener('click', function () { revoke(b, btn, pending); });
        actions.appendChild(btn);
        li.appendChild(actions);
        if (b.status === 'expired') {
          li.appendChild(el('p', { className: 'warn', text: t({ zh: '已过期:可通过"修改"延长有效期。', en: 'Expired: use "Change" to extend it.' }) }));
        }
      }
      list.appendChild(li);
    });
  }

  async function loadPersonnel() {
    $('personnel-section').hidden = false;
    const res = await TG.api('GET', '/account/personnel');
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return; }
      // Not a manager of this enterprise (or any other refusal): the server's words, no form.
      TG.setMsg($('personnel-denied'), TG.errorPair(res.error));
      $('personnel-body').hidden = true;
      state.personnel = null;
      return;
    }
    TG.setMsg($('personnel-denied'), null);
    $('personnel-body').hidden = false;
    state.personnel = Array.isArray(res.data) ? res.data : [];
    renderPersonnel();
  }

  // 修改权限 / 延长有效期: an inline form under the item. Widening asks the person again.
  function openEdit(b, li, opener) {
    const existing = li.querySelector('.edit-form');
    if (existing) { existing.remove(); opener.setAttribute('aria-expanded', 'false'); return; }
    const id = bindingId(b);
    const who = b.name || TG.maskId(b.person || '');
    const current = Array.isArray(b.permissions) ? b.permissions
      : Array.isArray(b.groups) ? b.groups : (ROLE_DEFAULTS[b.role] || []);
    const form = el('form', { className: 'edit-form', 'data-testid': 'edit-form-' + id, novalidate: 'novalidate' });
    form.appendChild(el('h4', { text: t({ zh: '修改 ' + who, en: 'Change ' + who }) }));
    const checks = el('div', { className: 'checks' });
    const boxes = ['declare', 'invoice', 'query', 'tax_affairs'].map(function (g) {
      const boxId = 'edit-' + id + '-' + g;
      const box = el('input', { type: 'checkbox', id: boxId, value: g });
      box.checked = current.indexOf(g) >= 0;
      checks.appendChild(el('span', { className: 'check-inline' }, [box, el('label', { for: boxId, text: TG.label(TG.PERMISSIONS, g) })]));
      return box;
    });
    const fs = el('fieldset', { className: 'field' }, [el('legend', { text: t({ zh: '权限', en: 'Permissions' }) }), checks]);
    form.appendChild(fs);
    const dateId = 'edit-' + id + '-until';
    const date = el('input', { type: 'date', id: dateId, 'aria-describedby': dateId + '-error' });
    if (b.valid_until) date.value = String(b.valid_until).slice(0, 10);
    form.appendChild(el('div', { className: 'field' }, [
      el('label', { for: dateId, text: t({ zh: '有效期止(不变请留空)', en: 'Valid until (leave empty to keep)' }) }),
      date,
      el('p', { id: dateId + '-error', className: 'field-error', 'aria-live': 'polite', hidden: 'hidden' }),
    ]));
    form.appendChild(el('p', { className: 'hint', text: t({ zh: '增加权限须该人员重新确认(确认前为"待确认");减少权限、缩短或延长有效期立即生效。', en: 'Adding permissions needs the person to confirm again (pending until then); removing them or changing the end date applies at once.' }) }));
    const save = el('button', { type: 'submit', className: 'btn-primary', 'data-testid': 'save-' + id, text: t({ zh: '保存修改', en: 'Save changes' }) });
    save.setAttribute('aria-label', t({ zh: '保存对 ' + who + ' 的修改', en: 'Save the changes to ' + who }));
    form.appendChild(save);
    form.addEventListener('submit', async function (ev) {
      ev.preventDefault();
      TG.setMsg(alertBox, null);
      const perms = boxes.filter(function (x) { return x.checked; }).map(function (x) { return x.value; });
      if (!perms.length) { TG.setMsg(alertBox, { zh: '请至少选择一项权限', en: 'choose at least one permission' }); boxes[0].focus(); return; }
      const body = {};
      const same = perms.length === current.length && perms.every(function (g) { return current.indexOf(g) >= 0; });
      if (!same) body.permissions = perms;
      const oldDate = b.valid_until ? String(b.valid_until).slice(0, 10) : '';
      if (date.value && date.value !== oldDate) {
        const problem = checkDate(date.value);
        if (problem) { TG.fieldError(date, problem); date.focus(); return; }
        body.valid_until = date.value + 'T23:59:59+08:00';
      }
      if (!Object.keys(body).length) { TG.setMsg(alertBox, { zh: '没有需要保存的修改。', en: 'Nothing changed.' }); return; }
      const res = await TG.busy(save, function () {
        return TG.api('POST', '/account/personnel/' + encodeURIComponent(id) + '/update', body);
      });
      if (!res.ok) {
        if (res.status === 401) { fail(res.error); return; }
        TG.showError(res.error, { valid_until: date }, alertBox);
        return;
      }
      info(res.data && res.data.status === 'pending'
        ? { zh: '已保存。新增的权限须 ' + who + ' 在企业授权管理中重新确认。', en: 'Saved. ' + who + ' must confirm the added permissions under Enterprise authorizations.' }
        : { zh: '已保存,立即生效。', en: 'Saved; in effect now.' });
      await loadPersonnel();
      const again = document.getElementById('edit-' + id);
      if (again) again.focus();
    });
    li.appendChild(form);
    opener.setAttribute('aria-expanded', 'true');
    boxes[0].focus();
  }

  async function revoke(b, btn, pending) {
    const who = b.name || TG.maskId(b.person || b.id_number || '');
    const yes = await confirmDialog(pending
      ? { zh: '确定撤回对 ' + who + ' 的授权申请?', en: 'Withdraw the request to ' + who + '?' }
      : { zh: '确定解除 ' + who + ' 与本企业的绑定?解除后其所有会话立即失去该身份。', en: 'End ' + who + '\'s binding to this enterprise? Their sessions lose this identity at once.' });
    if (!yes) return;
    const res = await TG.busy(btn, function () {
      return TG.api('POST', '/account/personnel/' + encodeURIComponent(bindingId(b)) + '/revoke');
    });
    if (!res.ok) { fail(res.error); return; }
    info(pending ? { zh: '已撤回。', en: 'Withdrawn.' } : { zh: '已解除。', en: 'Ended.' });
    await loadPersonnel();
  }

  $('personnel-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    TG.clearErrors($('personnel-form'));
    const longTerm = $('personnel-long-term').checked;
    const perms = permBoxes.filter(function (box) { return box.checked; }).map(function (box) { return box.value; });
    const problems = [
      [personnelInputs.id_number, TG.checkIdNumber(personnelInputs.id_number.value)],
      [personnelInputs.permissions, perms.length ? null : { zh: '请至少选择一项权限', en: 'choose at least one permission' }],
      [personnelInputs.valid_until, longTerm ? null : checkDate(personnelInputs.valid_until.value)],
    ];
    let first = null;
    problems.forEach(function (p) {
      errorFor(p[0], p[1]);
      if (p[1] && !first) first = p[0];
    });
    if (first) { first.focus(); return; }

    const body = {
      id_number: personnelInputs.id_number.value.trim().toUpperCase(),
      role: personnelInputs.role.value,
      permissions: perms,
    };
    // Long-term: valid_until is left out (absent means no end, as in the seed file).
    if (!longTerm) body.valid_until = personnelInputs.valid_until.value + 'T23:59:59+08:00';
    const res = await TG.busy($('personnel-submit'), function () { return TG.api('POST', '/account/personnel', body); });
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return; }
      const fields = Object.assign({}, personnelInputs);
      TG.showError(res.error, fields, alertBox, { person_not_registered: 'id_number', already_linked: 'id_number' });
      return;
    }
    info({ zh: '已添加,等待该人员在企业授权管理中确认。', en: 'Added: waiting for the person to confirm under Enterprise authorizations.' });
    personnelInputs.id_number.value = '';
    await loadPersonnel();
  });

  // The permissions fieldset and the date have their error beside the group, not the input id.
  function errorFor(input, pair) {
    if (input === personnelInputs.permissions) {
      TG.setMsg($('personnel-permissions-error'), pair);
    } else if (input === personnelInputs.valid_until) {
      TG.setMsg($('personnel-valid-until-error'), pair);
      if (pair) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    } else {
      TG.fieldError(input, pair);
    }
  }

  function checkDate(value) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return { zh: '请选择有效期止日期,或勾选"长期"', en: 'pick an end date or tick "No end date"' };
    const today = new Date();
    const todayStr = today.getFullYear() + '-' + String(today.getMonth() + 1).padStart(2, '0') + '-' + String(today.getDate()).padStart(2, '0');
    return value < todayStr ? { zh: '有效期止不能早于今天', en: 'the end date cannot be in the past' } : null;
  }

  // ---- authorizations (企业授权管理, person side) -------------------------------------------
  function renderAuthorizations() {
    const list = $('authorizations-list');
    list.replaceChildren();
    const items = state.authorizations || [];
    $('authorizations-empty').hidden = items.length > 0;
    items.forEach(function (b) {
      const id = bindingId(b);
      const li = el('li', { className: 'item', 'data-testid': 'authorization-' + id }, [
        el('p', { className: 'item-title' }, [
          el('strong', { text: b.enterprise_name || b.enterprise || '' }),
          el('span', { className: 'muted', text: ' ' + (b.enterprise || '') }),
        ]),
        el('p', { className: 'item-meta' }, [
          el('span', { text: TG.label(TG.ROLES, b.role) }),
          badge(b.status),
          el('span', { text: t({ zh: '有效期至 ', en: 'valid until ' }) + validity(b.valid_until) }),
        ]),
        permissionsText(b.permissions) ? el('p', { className: 'muted', text: permissionsText(b.permissions) }) : null,
      ]);
      const actions = el('div', { className: 'item-actions' });
      const name = b.enterprise_name || b.enterprise || '';
      const awaitingMe = b.status === 'pending' && b.person_confirmed !== true;
      if (id && awaitingMe) {
        const c = button({ zh: '确认', en: 'Confirm' }, 'confirm-' + id, 'btn-primary',
          { zh: '确认 ' + name + ' 的授权', en: 'Confirm the authorization from ' + name });
        c.addEventListener('click', function () { confirmBinding(b, c); });
        actions.appendChild(c);
      } else if (b.status === 'pending') {
        actions.appendChild(el('span', { className: 'muted', text: t({ zh: '等待企业确认', en: 'Waiting for the enterprise' }) }));
      }
      if (id && b.status !== 'revoked' && b.role !== 'legal_representative') {
        // A request never accepted is refused (拒绝); an accepted binding is ended (解除绑定).
        const u = awaitingMe
          ? button({ zh: '拒绝', en: 'Decline' }, 'unbind-' + id, 'btn-danger', { zh: '拒绝 ' + name + ' 的授权', en: 'Decline the authorization from ' + name })
          : button({ zh: '解除绑定', en: 'Unbind' }, 'unbind-' + id, 'btn-danger', { zh: '解除与 ' + name + ' 的绑定', en: 'Unbind from ' + name });
        u.addEventListener('click', function () { unbind(b, u, awaitingMe); });
        actions.appendChild(u);
      }
      if (actions.childNodes.length) li.appendChild(actions);
      list.appendChild(li);
    });
  }

  async function loadAuthorizations() {
    $('authorizations-section').hidden = false;
    const res = await TG.api('GET', '/account/authorizations');
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return; }
      TG.setMsg($('authorizations-denied'), TG.errorPair(res.error));
      state.authorizations = null;
      renderAuthorizations();
      $('authorizations-empty').hidden = true;
      return;
    }
    TG.setMsg($('authorizations-denied'), null);
    state.authorizations = Array.isArray(res.data) ? res.data : [];
    renderAuthorizations();
  }

  async function confirmBinding(b, btn) {
    TG.setMsg(alertBox, null);
    const res = await TG.busy(btn, function () {
      return TG.api('POST', '/account/authorizations/' + encodeURIComponent(bindingId(b)) + '/confirm');
    });
    if (!res.ok) { fail(res.error); return; }
    info({ zh: '已确认 ' + (b.enterprise_name || b.enterprise) + ' 的授权。', en: 'Confirmed the authorization from ' + (b.enterprise_name || b.enterprise) + '.' });
    await Promise.all([loadAuthorizations(), loadIdentities()]);
  }

  async function unbind(b, btn, decline) {
    const name = b.enterprise_name || b.enterprise;
    const yes = await confirmDialog(decline ? {
      zh: '确定拒绝 ' + name + ' 的授权?',
      en: 'Decline the authorization from ' + name + '?',
    } : {
      zh: '确定解除与 ' + name + ' 的绑定?解除后您将不能再以该身份办理该企业的业务。',
      en: 'Unbind from ' + name + '? You will no longer act for this enterprise in this role.',
    });
    if (!yes) return;
    TG.setMsg(alertBox, null);
    const res = await TG.busy(btn, function () {
      return TG.api('POST', '/account/authorizations/' + encodeURIComponent(bindingId(b)) + '/unbind');
    });
    if (!res.ok) { fail(res.error); return; }
    info(decline
      ? { zh: '已拒绝 ' + name + ' 的授权。', en: 'Declined the authorization from ' + name + '.' }
      : { zh: '已解除与 ' + name + ' 的绑定。', en: 'Unbound from ' + name + '.' });
    await loadAll();
  }

  // ---- phone (手机号码) ---------------------------------------------------------------------
  let phoneChallenge = null;
  let phoneTimer = null;
  const SEND = { zh: '获取验证码', en: 'Send code' };

  function phoneCountdown(secs) {
    const b = $('phone-send');
    let left = secs;
    b.disabled = true;
    const render = function () { TG.setMsg(b, { zh: '重新发送(' + left + 's)', en: 'Resend (' + left + ' s)' }); };
    render();
    phoneTimer = setInterval(function () {
      left -= 1;
      if (left > 0) { render(); return; }
      clearInterval(phoneTimer);
      phoneTimer = null;
      b.disabled = false;
      TG.setMsg(b, SEND);
    }, 1000);
  }

  $('phone-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const input = $('phone-new');
    const problem = TG.checkPhone(input.value);
    TG.fieldError(input, problem);
    if (problem) { input.focus(); return; }
    // 一号一人: say what verifying a number does before a code goes out.
    const number = TG.normalizePhone(input.value.trim());
    const yes = await confirmDialog({
      zh: '验证成功后,' + number + ' 将成为您账户的手机号码;若该号码目前属于他人的账户,将从其账户中解除,对方只能使用扫码验证登录,并会收到通知。确定继续?',
      en: 'Once verified, ' + number + ' becomes your account\'s number; if it belongs to someone else\'s account now, it is removed from it (they can then only log in with the face scan) and they are told. Continue?',
    });
    if (!yes) return;
    const b = $('phone-send');
    b.disabled = true;
    const res = await TG.api('POST', '/account/phone', { phone: number });
    b.disabled = false;
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return; }
      TG.showError(res.error, { phone: input }, alertBox);
      return;
    }
    phoneChallenge = res.data.challenge;
    phoneCountdown(60);
    $('phone-verify-form').hidden = false;
    info({ zh: '验证码已发送至新手机号码。', en: 'The code was sent to the new number.' });
    $('phone-code').focus();
  });

  $('phone-verify-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    TG.setMsg(alertBox, null);
    const code = $('phone-code');
    const problem = TG.checkCode(code.value);
    TG.fieldError(code, problem);
    if (problem) { code.focus(); return; }
    const res = await TG.busy($('phone-verify'), function () {
      return TG.api('POST', '/account/phone/verify', { challenge: phoneChallenge, code: code.value.trim() });
    });
    if (!res.ok) {
      if (res.status === 401 && res.error.code !== 'invalid_code' && res.error.code !== 'challenge_expired') { fail(res.error); return; }
      TG.showError(res.error, { code: code }, alertBox, { invalid_code: 'code' });
      return;
    }
    phoneChallenge = null;
    code.value = '';
    $('phone-new').value = '';
    $('phone-verify-form').hidden = true;
    const taken = res.headers && res.headers.get('taxgate-phone-taken') === 'true';
    info(taken
      ? { zh: '手机号码已修改。按"一号一人"规则,该号码已从原持有人的账户中解除,原持有人已收到通知。', en: 'Phone number changed. Under "one number, one person" it was removed from the previous holder\'s account, who was told.' }
      : { zh: '手机号码已修改。', en: 'Phone number changed.' });
    await loadOverview();
    renderPhone();
  });

  // ---- logout -----------------------------------------------------------------------------
  $('logout').addEventListener('click', async function () {
    await TG.busy($('logout'), function () { return TG.api('POST', '/auth/logout'); });
    window.location.assign('/login?reason=logout');
  });

  // ---- loading ----------------------------------------------------------------------------
  async function loadIdentities() {
    const res = await TG.api('GET', '/account/identities');
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return; }
      state.identities = [];
      renderIdentities();
      $('identities-empty').hidden = true;
      TG.setMsg($('identities-error'), TG.errorPair(res.error));
      return;
    }
    TG.setMsg($('identities-error'), null);
    state.identities = Array.isArray(res.data) ? res.data : [];
    renderIdentities();
    renderSession();
  }

  // What the policies let this identity do (GET /account/overview): the cards follow it.
  async function loadOverview() {
    const res = await TG.api('GET', '/account/overview');
    if (!res.ok) {
      if (res.status === 401) { fail(res.error); return false; }
      state.overview = null;
      return true;
    }
    state.overview = res.data;
    return true;
  }

  function may(action) {
    const o = state.overview;
    return !!(o && o.actions && o.actions[action]);
  }

  function renderPhone() {
    const o = state.overview || {};
    TG.setMsg($('phone-current'), o.phone_masked
      ? { zh: '当前手机号码:' + o.phone_masked, en: 'Current number: ' + o.phone_masked }
      : { zh: '当前未绑定手机号码。', en: 'No phone number on this account.' });
  }

  $('leave-client').addEventListener('click', async function () {
    TG.setMsg(alertBox, null);
    const res = await TG.busy($('leave-client'), function () { return TG.api('POST', '/account/switch/leave', {}); });
    if (!res.ok) { fail(res.error); return; }
    info({ zh: '已返回代理机构,请选择委托企业。', en: 'Back at the agency: pick a client.' });
    await loadAll(res.data);
    $('identities-heading').focus();
  });

  async function loadAll(session) {
    if (session) {
      state.session = session;
    } else {
      const res = await TG.api('GET', '/auth/session');
      if (!res.ok) {
        if (res.status === 401) { relogin(); return; }
        fail(res.error);
        finishLoading();
        return;
      }
      state.session = res.data;
    }
    const s = state.session;
    if (s.must_change_password) { window.location.replace('/login#password'); return; }
    if (!(await loadOverview())) return;
    renderSession();
    // Each card is shown only when the policies allow its action for this identity: no role
    // or entry list here (a 办税员 sees no personnel card, a person no switch buttons).
    const work = [];
    if (may('list_identities')) work.push(loadIdentities()); else $('identities-section').hidden = true;
    if (may('manage_personnel')) work.push(loadPersonnel()); else $('personnel-section').hidden = true;
    if (may('list_authorizations')) work.push(loadAuthorizations()); else $('authorizations-section').hidden = true;
    if (may('change_phone')) {
      renderPhone();
      $('phone-section').hidden = false;
    } else {
      $('phone-section').hidden = true;
    }
    await Promise.all(work);
    finishLoading();
  }

  function finishLoading() {
    $('account-loading').hidden = true;
    $('account-main').setAttribute('aria-busy', 'false');
  }

  window.I18N.onChange(function () {
    renderSession();
    if (state.overview) renderPhone();
    if (state.identities) renderIdentities();
    if (state.personnel) renderPersonnel();
    if (state.authorizations) renderAuthorizations();
  });

  presetPermissions();
  syncLongTerm();
  TG.setMsg($('phone-send'), SEND);
  loadAll();
});
