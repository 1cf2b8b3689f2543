// skillgate dashboard (§4.4): coverage table and bar chart with drill-down,
// broadcasts with live progress, a form to schedule one, link status.
// Plain browser JavaScript: no build step, no external resources.
'use strict';

const I18N = {
  vi: {
    title: 'skillgate — Kỹ năng số', token: 'Mã truy cập', save: 'Lưu', links: 'Kết nối SMSC',
    database: 'Cơ sở dữ liệu', link: 'Kết nối', state: 'Trạng thái', window: 'Cửa sổ', queued: 'Chờ gửi',
    coverage: 'Độ phủ hộ gia đình', code: 'Mã', locality: 'Địa bàn', households: 'Số hộ', covered: 'Hộ đạt',
    s_public_services: 'Dịch vụ công', s_shopping: 'Mua sắm', s_payment: 'Thanh toán', s_safety: 'An toàn',
    s_platforms: 'Nền tảng số', broadcasts: 'Tin nhắn hàng loạt', name: 'Tên', targeted: 'Đối tượng',
    submitted: 'Đã gửi', delivered: 'Đã nhận', failed: 'Lỗi', progress: 'Tiến độ', new_broadcast: 'Lên lịch tin mới',
    text_vi: 'Nội dung (tiếng Việt)', text_en: 'Nội dung (tiếng Anh)', segment: 'Đối tượng nhận',
    province: 'Tỉnh', district: 'Huyện', commune: 'Xã', missing: 'Kỹ năng còn thiếu', start_at: 'Bắt đầu',
    end_at: 'Kết thúc', rate: 'Tốc độ (tin/giây)', schedule: 'Lên lịch', cancel: 'Hủy', all: 'Cả nước',
    up: 'hoạt động', down: 'mất kết nối', need_token: 'Nhập mã truy cập để xem dữ liệu.',
    scheduled: 'Đã lên lịch tin nhắn #', saved: 'Đã lưu mã truy cập.', lang_other: 'English',
  },
  en: {
    title: 'skillgate — Digital skills', token: 'Token', save: 'Save', links: 'SMSC links',
    database: 'Database', link: 'Link', state: 'State', window: 'Window', queued: 'Queued',
    coverage: 'Household coverage', code: 'Code', locality: 'Locality', households: 'Households', covered: 'Covered',
    s_public_services: 'Public services', s_shopping: 'Shopping', s_payment: 'Payment', s_safety: 'Safety',
    s_platforms: 'Platforms', broadcasts: 'Broadcasts', name: 'Name', targeted: 'Targeted',
    submitted: 'Submitted', delivered: 'Delivered', failed: 'Failed', progress: 'Progress', new_broadcast: 'Schedule a broadcast',
    text_vi: 'Text (Vietnamese)', text_en: 'Text (English)', segment: 'Segment',
    province: 'Province', district: 'District', commune: 'Commune', missing: 'Missing skills', start_at: 'Start',
    end_at: 'End', rate: 'Rate (msg/s)', schedule: 'Schedule', cancel: 'Cancel', all: 'Whole country',
    up: 'up', down: 'down', need_token: 'Enter an access token to see the data.',
    scheduled: 'Scheduled broadcast #', saved: 'Token saved.', lang_other: 'Tiếng Việt',
  },
};
const SKILLS = ['public_services', 'shopping', 'payment', 'safety', 'platforms'];
const LEVELS = ['province', 'district', 'commune'];

const state = {
  lang: localStorage.getItem('sg_lang') || 'vi',
  token: localStorage.getItem('sg_token') || '',
  path: [], // drill-down: [{code, name}] of the parents chosen so far
};

const $ = (sel) => document.querySelector(sel);
const t = (k) => (I18N[state.lang] && I18N[state.lang][k]) || k;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function say(msg, isError) {
  const m = $('#message');
  m.textContent = msg || '';
  m.className = 'message' + (isError ? ' error' : '');
}

async function api(path, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const r = await fetch(path, { ...opts, headers });
  let body = null;
  try { body = await r.json(); } catch { body = null; }
  if (!r.ok) {
    const err = new Error((body && (body.detail || body.error)) || ('HTTP ' + r.status));
    err.status = r.status;
    throw err;
  }
  return body;
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.getAttribute('data-i18n'));
  $('#lang-toggle').textContent = t('lang_other');
  renderBreadcrumb();
}

// ---- links ---------------------------------------------------------------
async function refreshHealth() {
  try {
    const r = await fetch('/healthz');
    const h = await r.json();
    const db = $('#db-status');
    db.textContent = h.database && h.database.up ? t('up') : t('down');
    db.className = h.database && h.database.up ? 'state-bound' : 'state-down';
    const tb = $('#links tbody');
    tb.replaceChildren(...(h.links || []).map((l) => el('tr', { 'data-link': l.name },
      el('td', {}, l.name),
      el('td', { class: l.bound ? 'state-bound' : 'state-down' }, l.state),
      el('td', {}, `${l.window_used}/${l.window}`),
      el('td', {}, (l.queued || []).reduce((a, b) => a + b, 0)))));
  } catch (e) {
    $('#db-status').textContent = t('down');
  }
}

// ---- coverage ------------------------------------------------------------
function renderBreadcrumb() {
  const nav = $('#breadcrumb');
  if (!nav) return;
  const parts = [el('a', { 'data-depth': '0', onclick: () => { state.path = []; loadCoverage(); } }, t('all'))];
  state.path.forEach((p, i) => {
    parts.push(document.createTextNode('› '));
    parts.push(el('a', { 'data-depth': String(i + 1), onclick: () => { state.path = state.path.slice(0, i + 1); loadCoverage(); } },
      `${p.name} (${p.code})`));
  });
  nav.replaceChildren(...parts);
}

function drawChart(rows) {
  const chart = $('#chart');
  const barH = 18, gap = 6, labelW = 220, width = 700;
  const h = rows.length * (barH + gap) + 10;
  chart.setAttribute('viewBox', `0 0 ${width} ${h}`);
  chart.setAttribute('height', String(h));
  const kids = [];
  rows.forEach((r, i) => {
    const y = 5 + i * (barH + gap);
    const pct = Number(r.covered_pct) || 0;
    const w = (width - labelW - 60) * pct / 100;
    kids.push(svg('text', { x: 0, y: y + barH - 5 }, `${r.name}`.slice(0, 34)));
    kids.push(svg('rect', { class: 'bar-bg', x: labelW, y, width: width - labelW - 60, height: barH }));
    kids.push(svg('rect', { class: 'bar', x: labelW, y, width: w.toFixed(1), height: barH, 'data-code': r.code }));
    kids.push(svg('text', { x: width - 55, y: y + barH - 5 }, `${pct.toFixed(1)} %`));
  });
  chart.replaceChildren(...kids);
}

async function loadCoverage() {
  renderBreadcrumb();
  if (!state.token) { say(t('need_token')); return; }
  const depth = state.path.length;
  const level = LEVELS[Math.min(depth, 2)];
  const parent = depth ? state.path[depth - 1].code : '';
  try {
    const rep = await api(`/api/v1/reports/coverage?level=${level}` + (parent ? `&parent=${encodeURIComponent(parent)}` : ''));
    const tb = $('#coverage-table tbody');
    tb.replaceChildren(...rep.rows.map((r) => {
      const tr = el('tr', { 'data-code': r.code, class: level !== 'commune' ? 'drill' : '' },
        el('td', {}, r.code), el('td', {}, r.name), el('td', { class: 'households' }, r.households),
        el('td', { class: 'covered' }, r.covered), el('td', { class: 'pct' }, Number(r.covered_pct).toFixed(1)),
        ...SKILLS.map((s) => el('td', { class: 'skill-' + s }, Number(r.skills[s].pct).toFixed(1))));
      if (level !== 'commune') tr.onclick = () => { state.path.push({ code: r.code, name: r.name }); loadCoverage(); };
      return tr;
    }));
    drawChart(rep.rows);
    $('#coverage-table').setAttribute('data-level', level);
    $('#coverage-table').setAttribute('data-parent', parent);
  } catch (e) {
    say(e.message, true);
  }
}

// ---- broadcasts ----------------------------------------------------------
async function loadBroadcasts() {
  if (!state.token) return;
  try {
    const res = await api('/api/v1/broadcasts?limit=50');
    const tb = $('#broadcast-list tbody');
    tb.replaceChildren(...res.broadcasts.map((b) => {
      const c = b.counts;
      const done = c.delivered + c.failed + c.cancelled;
      const prog = el('progress', { max: Math.max(c.targeted, 1), value: done });
      const cancel = el('button', { type: 'button', class: 'cancel' }, t('cancel'));
      cancel.disabled = b.state === 'done' || b.state === 'cancelled';
      cancel.onclick = async () => {
        try { await api(`/api/v1/broadcasts/${b.id}/cancel`, { method: 'POST' }); loadBroadcasts(); } catch (e) { say(e.message, true); }
      };
      return el('tr', { 'data-id': String(b.id) },
        el('td', {}, b.id), el('td', { class: 'name' }, b.name), el('td', { class: 'state' }, b.state),
        el('td', {}, c.targeted), el('td', {}, c.queued), el('td', {}, c.submitted),
        el('td', {}, c.delivered), el('td', {}, c.failed), el('td', {}, prog), el('td', {}, cancel));
    }));
  } catch (e) {
    say(e.message, true);
  }
}

function localToIso(v) {
  if (!v) return undefined;
  const d = new Date(v); // datetime-local is the browser's local time
  return isNaN(d) ? undefined : d.toISOString();
}

async function submitBroadcast(ev) {
  ev.preventDefault();
  const segment = {};
  for (const k of ['province', 'district', 'commune']) {
    const v = $('#bc-' + k).value.trim();
    if (v) segment[k] = v;
  }
  const missing = [...document.querySelectorAll('input[name=missing]:checked')].map((c) => c.value);
  if (missing.length) segment.missing_skills = missing;
  const body = {
    name: $('#bc-name').value.trim(),
    text: { vi: $('#bc-text-vi').value, en: $('#bc-text-en').value },
    segment,
    start_at: localToIso($('#bc-start').value),
    end_at: localToIso($('#bc-end').value),
    rate: Number($('#bc-rate').value) || undefined,
  };
  try {
    const r = await api('/api/v1/broadcasts', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    say(t('scheduled') + r.id);
    $('#broadcast-form').reset();
    loadBroadcasts();
  } catch (e) {
    say(e.message, true);
  }
}

function init() {
  $('#token').value = state.token;
  $('#save-token').onclick = () => {
    state.token = $('#token').value.trim();
    localStorage.setItem('sg_token', state.token);
    say(t('saved'));
    loadCoverage();
    loadBroadcasts();
  };
  $('#lang-toggle').onclick = () => {
    state.lang = state.lang === 'vi' ? 'en' : 'vi';
    localStorage.setItem('sg_lang', state.lang);
    applyLanguage();
    loadBroadcasts();
  };
  $('#broadcast-form').addEventListener('submit', submitBroadcast);
  applyLanguage();
  refreshHealth();
  loadCoverage();
  loadBroadcasts();
  setInterval(refreshHealth, 5000);
  setInterval(loadBroadcasts, 3000);
}

document.addEventListener('DOMContentLoaded', init);
