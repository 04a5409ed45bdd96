// 安全中心 on /account (CONTRACT sections 10 and 11): the step-up dialog and the session lists.
//
// window.taxgateStepUp(error) is called by TG.api (common.js) when an action is refused with
// 403 step_up_required: it asks for a step-up challenge on this session, lets the person verify
// by SMS code or by scanning the QR code, and resolves true once the session has a fresh factor
// (TG.api then sends the refused call once more) or false when the person cancels.
//
// The session list (登录设备与会话) shows every live session of the person with 结束会话 and
// 退出其他设备; personnel managers also see the sessions acting for their enterprise. Everything
// shown is inserted with textContent; nothing here reads the HttpOnly session cookie.
'use strict';

(function () {
  const TG = window.TG;
  const I18N = window.I18N;
  const t = I18N.t;
  const POLL_MS = 2000;

  const TEXT = {
    dialogTitle: { zh: '安全验证', en: 'Verify it is you' },
    why: { zh: '为保障账户安全,办理该业务前请重新验证身份。', en: 'For your account\'s safety, verify again before doing this.' },
    bySms: { zh: '短信验证码', en: 'SMS code' },
    byFace: { zh: '扫码人脸识别', en: 'Face scan (QR code)' },
    send: { zh: '获取验证码', en: 'Send code' },
    sentTo: { zh: '验证码已发送至 ', en: 'Code sent to ' },
    code: { zh: '短信验证码', en: 'SMS code' },
    verify: { zh: '验证', en: 'Verify' },
    faceHow: { zh: '请使用个人所得税 App 或本省税务 App 扫描二维码完成人脸识别。', en: 'Scan the QR code with the Individual Income Tax app or your province\'s tax app.' },
    faceWaiting: { zh: '等待手机端完成人脸识别…', en: 'Waiting for the face scan in the app…' },
    qrAlt: { zh: '人脸识别二维码', en: 'QR code for face verification' },
    cancel: { zh: '取消', en: 'Cancel' },
    done: { zh: '验证成功,正在继续办理…', en: 'Verified: carrying on…' },
    sessionsHeading: { zh: '登录设备与会话', en: 'Devices and sessions' },
    sessionsHint: { zh: '以下是以您本人身份登录的全部有效会话(各入口、各企业)。如有不认识的设备,请立即结束该会话并修改密码。', en: 'Every live session in your name, across entries and enterprises. If you do not recognise a device, end its session and change your password.' },
    current: { zh: '当前会话', en: 'This session' },
    end: { zh: '结束会话', en: 'End session' },
    endOthers: { zh: '退出其他设备', en: 'Log out other devices' },
    endConfirm: { zh: '确定结束该会话吗?该设备将立即退出登录。', en: 'End this session? That device is logged out at once.' },
    endOthersConfirm: { zh: '确定退出除本设备外的全部会话吗?', en: 'Log out every session but this one?' },
    ended: { zh: '会话已结束。', en: 'The session was ended.' },
    endedOthers: { zh: '其他设备已全部退出登录。', en: 'Every other session was ended.' },
    none: { zh: '暂无其他会话。', en: 'No other sessions.' },
    loggedIn: { zh: '登录时间 ', en: 'Logged in ' },
    lastSeen: { zh: '最近活动 ', en: 'Last active ' },
    network: { zh: '网络 ', en: 'Network ' },
    personnelHeading: { zh: '企业人员在线会话', en: 'Sessions acting for the enterprise' },
    personnelHint: { zh: '正在以本企业身份办理业务的会话。结束会话后,该人员须重新登录。', en: 'Sessions acting for this enterprise. An ended session must log in again.' },
    personnelNone: { zh: '暂无在线会话。', en: 'No live sessions.' },
  };
  const MFA = { sms: { zh: '短信验证', en: 'SMS' }, face: { zh: '人脸识别', en: 'Face scan' } };

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

  // Text nodes in the current language that follow a language switch.
  const live = [];
  function say(node, pair) {
    node.textContent = t(pair);
    live.push([node, pair]);
    return node;
  }
  I18N.onChange(function () {
    live.forEach(function (p) { if (p[0].isConnected) p[0].textContent = t(p[1]); });
    if (renderSessions.last) renderSessions(renderSessions.last);
    if (renderPersonnel.last) renderPersonnel(renderPersonnel.last);
  });

  // A family for display: browser and platform, from the user agent the session logged in with.
  function device(ua) {
    if (!ua) return t({ zh: '未知设备', en: 'Unknown device' });
    const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox'
      : /MicroMessenger\//.test(ua) ? 'WeChat' : /Chrome\//.test(ua) ? 'Chrome'
        : /Safari\//.test(ua) ? 'Safari' : null;
    const os = /Windows/.test(ua) ? 'Windows' : /iPhone|iPad/.test(ua) ? 'iOS'
      : /Android/.test(ua) ? 'Android' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : null;
    if (!browser && !os) return ua.slice(0, 60);
    return [browser, os].filter(Boolean).join(' · ');
  }

  // ---- the step-up dialog -----------------------------------------------------------------
  let open = null;

  function stepUp(error) {
    if (open) return open;
    open = runDialog(error).finally(function () { open = null; });
    return open;
  }

  async function runDialog(error) {
    const start = await TG.api('POST', '/auth/step-up', {});
    if (!start.ok) return false;
    const challenge = start.data.challenge;
    const factors = start.data.factors || [];
    const dialog = el('dialog', { id: 'step-up-dialog', 'aria-labelledby': 'step-up-title', 'data-testid': 'step-up-dialog' });
    const alertBox = el('p', { id: 'step-up-error', className: 'field-error', role: 'alert' });
    alertBox.hidden = true;
    const message = error && error.message ? { zh: error.message, en: error.message_en || error.message } : TEXT.why;
    const tabs = el('div', { className: 'item-actions', role: 'group' });
    const smsPane = el('div', { id: 'step-up-sms' });
    const facePane = el('div', { id: 'step-up-face' });
    smsPane.hidden = true;
    facePane.hidden = true;
    const cancel = say(el('button', { type: 'button', className: 'btn-secondary', id: 'step-up-cancel' }), TEXT.cancel);
    dialog.appendChild(el('h2', { id: 'step-up-title', 'data-i18n': 'security.step_up', text: TEXT.dialogTitle.zh }));
    I18N.translateTree(dialog);
    dialog.appendChild(say(el('p', { className: 'hint' }), message));
    dialog.appendChild(tabs);
    dialog.appendChild(smsPane);
    dialog.appendChild(facePane);
    dialog.appendChild(alertBox);
    dialog.appendChild(el('div', { className: 'dialog-actions' }, [cancel]));
    document.body.appendChild(dialog);

    let timer = null;
    let settle;
    const result = new Promise(function (resolve) { settle = resolve; });
    function finish(ok) {
      if (timer) clearTimeout(timer);
      if (dialog.open) dialog.close();
      dialog.remove();
      settle(ok);
    }
    cancel.addEventListener('click', function () { finish(false); });
    dialog.addEventListener('cancel', function (e) { e.preventDefault(); finish(false); });
    function showError(err) { TG.setMsg(alertBox, TG.errorPair(err)); }
    function passed() {
      TG.setMsg(alertBox, null);
      finish(true);
    }

    // SMS: send, then enter the code.
    if (factors.indexOf('sms') >= 0) {
      const tab = say(el('button', { type: 'button', className: 'btn-secondary', id: 'step-up-by-sms', 'data-testid': 'step-up-by-sms' }), TEXT.bySms);
      tabs.appendChild(tab);
      const sent = el('p', { className: 'hint', id: 'step-up-sent' });
      sent.hidden = true;
      const send = say(el('button', { type: 'button', className: 'btn-secondary', id: 'step-up-send' }), TEXT.send);
      const codeLabel = say(el('label', { for: 'step-up-code' }), TEXT.code);
      const code = el('input', { id: 'step-up-code', type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
      const verify = say(el('button', { type: 'button', className: 'btn-primary', id: 'step-up-verify' }), TEXT.verify);
      smsPane.appendChild(el('div', { className: 'field' }, [codeLabel, el('div', { className: 'input-row' }, [code, send])]));
      smsPane.appendChild(sent);
      smsPane.appendChild(verify);
      tab.addEventListener('click', function () { smsPane.hidden = false; facePane.hidden = true; code.focus(); });
      send.addEventListener('click', async function () {
        const res = await TG.busy(send, function () { return TG.api('POST', '/auth/sms/send', { challenge: challenge }); });
        if (!res.ok) { showError(res.error); return; }
        TG.setMsg(alertBox, null);
        sent.hidden = false;
        say(sent, { zh: TEXT.sentTo.zh + (start.data.phone_masked || ''), en: TEXT.sentTo.en + (start.data.phone_masked || '') });
        code.focus();
      });
      verify.addEventListener('click', async function () {
        const bad = TG.checkCode(code.value);
        if (bad) { TG.setMsg(alertBox, bad); code.focus(); return; }
        const res = await TG.busy(verify, function () {
          return TG.api('POST', '/auth/sms/verify', { challenge: challenge, code: code.value.trim() });
        });
        if (res.ok) passed(); else showError(res.error);
      });
    }

    // Face: a QR code for the app, then wait for the app backend's callback.
    if (factors.indexOf('face') >= 0) {
      const tab = say(el('button', { type: 'button', className: 'btn-secondary', id: 'step-up-by-face', 'data-testid': 'step-up-by-face' }), TEXT.byFace);
      tabs.appendChild(tab);
      const img = el('img', { id: 'step-up-qr', width: '200', height: '200' });
      const waiting = say(el('p', { className: 'hint', role: 'status' }), TEXT.faceWaiting);
      facePane.appendChild(say(el('p', { className: 'hint' }), TEXT.faceHow));
      facePane.appendChild(el('div', { className: 'qr-box' }, [img]));
      facePane.appendChild(waiting);
      I18N.onChange(function () { img.alt = t(TEXT.qrAlt); });
      img.alt = t(TEXT.qrAlt);
      async function poll() {
        const res = await TG.api('POST', '/auth/face/complete', { challenge: challenge });
        if (res.ok) { passed(); return; }
        if (res.error.code === 'face_pending') { timer = setTimeout(poll, POLL_MS); return; }
        showError(res.error);
      }
      tab.addEventListener('click', async function () {
        smsPane.hidden = true;
        facePane.hidden = false;
        if (img.dataset.nonce) return;
        const res = await TG.api('POST', '/auth/face/start', { challenge: challenge });
        if (!res.ok) { showError(res.error); return; }
        img.dataset.nonce = res.data.nonce;
        img.src = '/auth/face/qr?nonce=' + encodeURIComponent(res.data.nonce);
        timer = setTimeout(poll, POLL_MS);
      });
    }

    dialog.showModal();
    const first = tabs.querySelector('button');
    if (first) first.click();
    return result;
  }

  window.taxgateStepUp = stepUp;

  // ---- the person's sessions --------------------------------------------------------------
  const section = document.getElementById('sessions-section');
  const personnelSection = document.getElementById('personnel-sessions-section');
  if (!section) return;

  async function confirmEnd(pair) {
    const dialog = document.getElementById('confirm-dialog');
    if (!dialog) return true;
    document.getElementById('confirm-dialog-text').textContent = t(pair);
    return new Promise(function (resolve) {
      dialog.addEventListener('close', function () { resolve(dialog.returnValue === 'ok'); }, { once: true });
      dialog.returnValue = '';
      dialog.showModal();
    });
  }

  function status(pair) {
    const box = section.querySelector('.sessions-status');
    if (box) TG.setMsg(box, pair);
  }

  function renderSessions(list) {
    renderSessions.last = list;
    section.textContent = '';
    section.appendChild(el('h2', { id: 'sessions-heading', 'data-i18n': 'security.sessions', text: TEXT.sessionsHeading.zh }));
    section.appendChild(el('p', { className: 'hint', text: t(TEXT.sessionsHint) }));
    const box = el('p', { className: 'info sessions-status', role: 'status' });
    box.hidden = true;
    section.appendChild(box);
    const ul = el('ul', { className: 'item-list', id: 'sessions-list' });
    list.forEach(function (s) {
      const where = [TG.label(TG.ENTRIES, s.entry)];
      if (s.enterprise) where.push(s.enterprise);
      if (s.role) where.push(TG.label(TG.ROLES, s.role));
      const li = el('li', { className: 'item', 'data-testid': 'session-item', 'data-session': s.id }, [
        el('p', { className: 'item-title' }, [el('strong', { text: device(s.user_agent) })]),
        el('p', { className: 'item-meta' }, [
          el('span', { text: where.join(' · ') }),
          el('span', { text: t(TEXT.network) + (s.client_addr || '—') }),
          el('span', { text: TG.label(MFA, s.mfa) }),
        ]),
        el('p', { className: 'item-meta muted' }, [
          el('span', { text: t(TEXT.loggedIn) + TG.formatTime(s.created_at) }),
          el('span', { text: t(TEXT.lastSeen) + TG.formatTime(s.last_seen_at) }),
        ]),
      ]);
      if (s.current) {
        li.appendChild(el('span', { className: 'badge badge-current', text: t(TEXT.current) }));
      } else {
        const end = el('button', { type: 'button', className: 'btn-danger', 'data-testid': 'session-end', text: t(TEXT.end) });
        end.addEventListener('click', async function () {
          if (!(await confirmEnd(TEXT.endConfirm))) return;
          const res = await TG.busy(end, function () {
            return TG.api('POST', '/account/sessions/' + encodeURIComponent(s.id) + '/revoke');
          });
          if (!res.ok) { status(TG.errorPair(res.error)); return; }
          await load();
          status(TEXT.ended);
        });
        li.appendChild(end);
      }
      ul.appendChild(li);
    });
    section.appendChild(ul);
    const others = list.filter(function (s) { return !s.current; }).length;
    if (others === 0) {
      section.appendChild(el('p', { className: 'hint', id: 'sessions-none', text: t(TEXT.none) }));
    } else {
      const all = el('button', { type: 'button', className: 'btn-danger', id: 'sessions-end-others', 'data-testid': 'sessions-end-others', text: t(TEXT.endOthers) });
      all.addEventListener('click', async function () {
        if (!(await confirmEnd(TEXT.endOthersConfirm))) return;
        const res = await TG.busy(all, function () { return TG.api('POST', '/account/sessions/revoke-others'); });
        if (!res.ok) { status(TG.errorPair(res.error)); return; }
        await load();
        status(TEXT.endedOthers);
      });
      section.appendChild(el('div', { className: 'item-actions' }, [all]));
    }
    I18N.translateTree(section);
    section.hidden = false;
  }

  function renderPersonnel(list) {
    renderPersonnel.last = list;
    personnelSection.textContent = '';
    personnelSection.appendChild(el('h2', { id: 'personnel-sessions-heading', 'data-i18n': 'security.personnel_sessions', text: TEXT.personnelHeading.zh }));
    personnelSection.appendChild(el('p', { className: 'hint', text: t(TEXT.personnelHint) }));
    const ul = el('ul', { className: 'item-list', id: 'personnel-sessions-list' });
    list.forEach(function (s) {
      const li = el('li', { className: 'item', 'data-testid': 'personnel-session-item', 'data-session': s.id }, [
        el('p', { className: 'item-title' }, [el('strong', { text: s.name || '—' }), el('span', { className: 'muted', text: '  ' + (s.person || '') })]),
        el('p', { className: 'item-meta' }, [
          el('span', { text: TG.label(TG.ROLES, s.role) }),
          el('span', { text: t(TEXT.loggedIn) + TG.formatTime(s.created_at) }),
          el('span', { text: t(TEXT.lastSeen) + TG.formatTime(s.last_seen_at) }),
        ]),
      ]);
      if (s.current) {
        li.appendChild(el('span', { className: 'badge badge-current', text: t(TEXT.current) }));
      } else {
        const end = el('button', { type: 'button', className: 'btn-danger', 'data-testid': 'personnel-session-end', text: t(TEXT.end) });
        end.addEventListener('click', async function () {
          if (!(await confirmEnd(TEXT.endConfirm))) return;
          const res = await TG.busy(end, function () {
            return TG.api('POST', '/account/personnel/sessions/' + encodeURIComponent(s.id) + '/revoke');
          });
          if (res.ok) await load();
        });
        li.appendChild(end);
      }
      ul.appendChild(li);
    });
    personnelSection.appendChild(ul);
    if (list.length === 0) personnelSection.appendChild(el('p', { className: 'hint', text: t(TEXT.personnelNone) }));
    I18N.translateTree(personnelSection);
    personnelSection.hidden = false;
  }

  async function load() {
    const mine = await TG.api('GET', '/account/sessions');
    if (mine.ok) renderSessions(mine.data || []);
    else section.hidden = true;
    if (!personnelSection) return;
    const theirs = await TG.api('GET', '/account/personnel/sessions');
    // Refused to anyone who does not manage the enterprise's personnel: nothing to show.
    if (theirs.ok) renderPersonnel(theirs.data || []);
    else personnelSection.hidden = true;
  }

  document.addEventListener('DOMContentLoaded', load);
})();
