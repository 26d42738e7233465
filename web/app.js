// Synopticon dashboard: plain JavaScript, no build step, no network dependency.
'use strict';

/* ---------- state, DOM helpers ---------- */

const TOKEN_KEY = 'synopticon.token';
const KINDS = ['websocket', 'sse', 'mqtt', 'udp', 'http', 'redis'];
const S = { token: sessionStorage.getItem(TOKEN_KEY) || '', role: null, readonly: false, blocked: false };
const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  let mut = false;
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'test') el.dataset.test = v;
      else if (k === 'mut') mut = true;
      else if (k === 'off') el.dataset.off = '1';
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (['value', 'checked', 'disabled', 'hidden', 'title', 'type'].includes(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  add(el, kids);
  if (mut) { el.classList.add('mut'); el.disabled = S.readonly || el.dataset.off === '1'; }
  return el;
}
function add(el, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(el, k);
    else el.append(k instanceof Node ? k : String(k));
  }
}
// Replaces el's children (arrays flattened, null and false skipped).
function put(el, ...kids) { el.replaceChildren(); add(el, kids); return el; }
// Enables or disables a mutating control, keeping it disabled for viewers.
function setOff(el, off) { el.dataset.off = off ? '1' : ''; el.disabled = S.readonly || !!off; }

const fmtNum = (n) => n == null ? '—' : typeof n === 'number' ? (Number.isInteger(n) ? n.toLocaleString('en') : n.toFixed(1)) : String(n);
function fmtDur(s) {
  if (s == null) return '—';
  s = Math.floor(s);
  const d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
function fmtTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return ts || '';
  return d.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}
const fmtBytes = (b) => b == null ? '—' : b < 1024 ? b + ' B' : b < 1048576 ? (b / 1024).toFixed(1) + ' KiB' : (b / 1048576).toFixed(1) + ' MiB';
const clip = (s, n) => s.length > n ? s.slice(0, n - 1) + '…' : s;
const json = (v) => JSON.stringify(v, null, 2);
const clone = (v) => JSON.parse(JSON.stringify(v));

const TONES = {
  ok: ['ok', 'healthy', 'running', 'open', 'ready', 'connected', 'enabled', 'confirmed', 'closed-breaker', 'yes'],
  warn: ['degraded', 'half_open', 'half-open', 'halfopen', 'starting', 'restarting', 'loading', 'tentative', 'finished', 'paused', 'connecting'],
  bad: ['unhealthy', 'failed', 'error', 'down', 'unresponsive', 'disconnected', 'no', 'open-breaker'],
};
function tone(v) {
  v = String(v).toLowerCase();
  for (const [t, list] of Object.entries(TONES)) if (list.includes(v)) return t;
  return 'muted';
}
const pill = (text, t) => h('span', { class: 'pill ' + (t || tone(text)) }, String(text));
const breakerPill = (b) => pill(b ?? '—', b === 'closed' ? 'ok' : b === 'open' ? 'bad' : b ? 'warn' : 'muted');

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v instanceof Node ? v : fmtNum(v))]));
}
const card = (title, ...kids) => h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...kids);
function table(head, rows, test) {
  return h('div', { class: 'table-wrap' }, h('table', { test }, h('thead', null, h('tr', null, head.map((c) => h('th', null, c)))), h('tbody', null, rows)));
}
const empty = (text) => h('p', { class: 'muted empty' }, text);
function errBox(e) { return h('p', { class: 'error-box' }, e.message || String(e)); }

function setStatus(text, kind = 'ok') {
  const el = $('#status');
  el.textContent = text;
  el.className = 'status ' + kind;
  clearTimeout(setStatus.t);
  clearTimeout(setStatus.gone);
  el.onclick = () => { el.textContent = ''; };
  el.title = 'click to dismiss';
  if (kind === 'ok') {
    setStatus.t = setTimeout(() => { el.classList.add('faded'); }, 6000);
    setStatus.gone = setTimeout(() => { el.textContent = ''; }, 12000);
  }
}

/* ---------- REST ---------- */

class ApiError extends Error {
  constructor(status, body) {
    const b = body && typeof body === 'object' ? body : { error: String(body || '') };
    const details = Array.isArray(b.details) && b.details.length ? ' — ' + b.details.join('; ') : '';
    super(`${status ? 'HTTP ' + status + ': ' : ''}${b.error || 'request failed'}${details}`);
    this.status = status;
    this.body = b;
  }
}

async function api(path, opts = {}) {
  const method = (opts.method || 'GET').toUpperCase();
  const headers = Object.assign({}, opts.headers);
  if (S.token) headers.Authorization = 'Bearer ' + S.token;
  let body;
  if (opts.body !== undefined) {
    if (typeof opts.body === 'string') body = opts.body;
    else { body = JSON.stringify(opts.body); headers['Content-Type'] = 'application/json'; }
  }
  if (S.blocked && path !== '/api/health') throw new ApiError(401, { error: 'a token is needed (sign in)' });
  let res;
  try { res = await fetch(path, { method, headers, body, cache: 'no-store' }); } catch (e) { throw new ApiError(0, { error: 'network error: ' + e.message }); }
  if (opts.raw && res.ok) return res;
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 300) }; } }
  if (res.status === 401 && path !== '/api/health') {
    // A refused token is forgotten: it would be sent again at the next reload.
    const refused = !!S.token;
    if (refused) { S.token = ''; sessionStorage.removeItem(TOKEN_KEY); }
    S.blocked = true;
    updateWho();
    promptToken(refused ? 'The token was refused (unknown or expired).' : '');
  }
  if (res.status === 403 && method !== 'GET') {
    const m = /is an? (viewer|operator|admin) token/.exec(data?.error || '');
    if (m) setRole(m[1]);
  }
  if (!res.ok) throw new ApiError(res.status, data || { error: res.statusText });
  return data;
}

/* ---------- authentication ---------- */

function promptToken(message) {
  const m = $('#token-modal');
  $('#token-error').textContent = message || (S.token ? 'The token was refused (unknown or expired).' : '');
  if (!m.hidden) return;
  m.hidden = false;
  $('#token-input').value = '';
  setTimeout(() => $('#token-input').focus(), 0);
}
function setToken(t) {
  S.token = t;
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  S.blocked = false;
  updateWho();
}
function setRole(role) {
  S.role = role;
  S.readonly = role === 'viewer';
  document.body.classList.toggle('readonly', S.readonly);
  for (const el of document.querySelectorAll('.mut')) el.disabled = S.readonly || el.dataset.off === '1';
  updateWho();
}
function updateWho() {
  const r = $('#role');
  r.textContent = S.readonly ? 'read-only (viewer)' : S.role === 'local' ? 'no authentication' : S.role || (S.blocked ? 'signed out' : '');
  r.title = S.tokenId ? 'token ' + S.tokenId : '';
  r.className = 'role ' + (S.readonly ? 'warn' : '');
  $('#sign-out').hidden = !S.token;
  $('#sign-in').hidden = !!S.token || S.role === 'local';
}
// GET /api/v1/whoami names the caller's role; on a server without it, GET /api/v1/tokens
// (admin only) does: its 403 names the role.
async function probeRole() {
  try {
    const me = await api('/api/v1/whoami');
    S.tokenId = me.token || '';
    setRole(me.auth_enabled === false ? 'local' : String(me.role || 'viewer').toLowerCase());
    return;
  } catch (e) {
    if (e.status === 401) { setRole(null); return; }
    if (e.status !== 404 && e.status !== 405) { setRole('operator'); return; }
  }
  try {
    await api('/api/v1/tokens');
    setRole(S.token ? 'admin' : 'local');
  } catch (e) {
    if (e.status === 403) {
      const m = /is an? (viewer|operator|admin) token/.exec(e.body.error || '');
      setRole(m ? m[1] : 'operator');
    } else if (e.status === 401) setRole(null);
    else setRole('operator');
  }
}
function initAuth() {
  $('#token-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = $('#token-input').value.trim();
    if (!t) { $('#token-error').textContent = 'Enter a token.'; return; }
    setToken(t);
    $('#token-modal').hidden = true;
    await probeRole();
    if (S.blocked) return;
    setStatus('signed in as ' + (S.role || 'unknown role'));
    sys.restart();
    route();
  });
  $('#token-cancel').addEventListener('click', () => { $('#token-modal').hidden = true; });
  $('#sign-in').addEventListener('click', () => promptToken(''));
  $('#sign-out').addEventListener('click', async () => {
    setToken('');
    setRole(null);
    sys.stop();
    setStatus('signed out');
    await probeRole();
    if (!S.blocked) sys.restart();
    route();
  });
}

/* ---------- live feeds (WebSocket) ---------- */

// Opens /api/v1/sessions/{id}/ws and keeps it open (reconnecting with backoff) until close().
function liveFeed(id, { onEvent, onState }) {
  // What the client has, so a reconnection resumes where it left off.
  let ws = null, timer = null, closed = false, delay = 1000, lastSeq = null, epoch = null;
  const state = (s, detail) => onState && onState(s, detail);
  function connect() {
    if (closed) return;
    if (S.blocked) { state('waiting', 'sign in first'); timer = setTimeout(connect, 2000); return; }
    const resume = lastSeq != null && epoch ? `?since=${lastSeq}&epoch=${enc(epoch)}` : '';
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/sessions/${enc(id)}/ws${resume}`;
    try { ws = S.token ? new WebSocket(url, ['synopticon', 'bearer.' + S.token]) : new WebSocket(url); } catch (e) { state('error', e.message); return; }
    state('connecting');
    let opened = false;
    ws.onopen = () => { opened = true; delay = 1000; state('connected'); };
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.op) {
        if (f.op === 'error') state('connected', 'server: ' + f.error);
        if (f.op === 'hello') { if (epoch && f.epoch !== epoch) lastSeq = null; epoch = f.epoch; }
        if (f.op === 'resume') state('connected', f.recovered ? `resumed: ${f.replayed} missed event(s) replayed` : `resumed with a gap: ${f.reason}`);
        return;
      }
      if (typeof f.seq === 'number') lastSeq = f.seq;
      onEvent(f);
    };
    ws.onclose = (c) => {
      ws = null;
      if (closed) return;
      const why = c.reason || (opened ? 'connection lost' : 'could not connect (unknown session, websocket distributor not enabled, or not allowed)');
      if (c.code === 1000 && c.reason === 'session_closed') { state('closed', 'session closed'); return; }
      state('disconnected', `${why}; retrying in ${Math.round(delay / 1000)} s`);
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
  return {
    close() { closed = true; clearTimeout(timer); if (ws) { ws.onclose = null; ws.close(1000); } },
    send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); },
  };
}

// Reads /api/v1/sessions/{id}/sse with fetch (so the token goes in the Authorization
// header, and every event arrives whatever its `event:` name), reconnecting with
// Last-Event-ID: the server replays what it still holds of what was missed.
function sseFeed(id, { onEvent, onState }) {
  let closed = false, ctrl = null, timer = null, delay = 1000, lastId = null;
  const state = (s, detail) => onState && onState(s, detail);
  async function connect() {
    if (closed) return;
    ctrl = new AbortController();
    const headers = { Accept: 'text/event-stream' };
    if (S.token) headers.Authorization = 'Bearer ' + S.token;
    if (lastId != null) headers['Last-Event-ID'] = String(lastId);
    state('connecting', 'SSE');
    try {
      const res = await fetch(`/api/v1/sessions/${enc(id)}/sse`, { headers, signal: ctrl.signal, cache: 'no-store' });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      state('connected', 'SSE');
      delay = 1000;
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('id:')) lastId = line.slice(3).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trimStart();
          }
          if (data) { try { onEvent(JSON.parse(data)); } catch { /* not an event */ } }
        }
      }
      throw new Error('stream ended');
    } catch (e) {
      if (closed) return;
      state('disconnected', `${e.message}; retrying in ${Math.round(delay / 1000)} s`);
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    }
  }
  connect();
  return { close() { closed = true; clearTimeout(timer); if (ctrl) ctrl.abort(); }, send() {} };
}

// The built-in `system` session's feed, shared by every page for the life of the tab.
const sys = {
  feed: null, events: [], listeners: new Set(), state: 'idle', detail: '',
  start() {
    if (this.feed) return;
    this.feed = liveFeed('system', {
      onEvent: (ev) => {
        this.events.unshift(ev);
        if (this.events.length > 300) this.events.length = 300;
        for (const fn of this.listeners) fn(ev);
      },
      onState: (s, d) => { this.state = s; this.detail = d || ''; for (const fn of this.listeners) fn(null); },
    });
  },
  stop() { if (this.feed) this.feed.close(); this.feed = null; this.state = 'idle'; },
  restart() { this.stop(); this.start(); },
  listen(ctx, fn) { this.listeners.add(fn); ctx.onCleanup(() => this.listeners.delete(fn)); },
};

/* ---------- router ---------- */

let current = null;
function newCtx() {
  const c = {
    alive: true, cleanups: [],
    onCleanup(fn) { c.cleanups.push(fn); },
    // Runs fn every ms (not at once), skipping a round while the previous one runs.
    every(fn, ms) {
      let busy = false;
      const t = setInterval(async () => { if (busy || !c.alive) return; busy = true; try { await fn(); } finally { busy = false; } }, ms);
      c.onCleanup(() => clearInterval(t));
    },
  };
  return c;
}
const ROUTES = [
  [/^\/overview$/, pageOverview], [/^\/sessions$/, pageSessions], [/^\/sessions\/(.+)$/, pageSession],
  [/^\/events(?:\/(.+))?$/, pageEvents], [/^\/sources$/, pageSources], [/^\/sources\/(.+)$/, pageSource],
  [/^\/devices$/, pageDevices], [/^\/inputs$/, pageInputs], [/^\/rules$/, pageRules],
  [/^\/recordings(?:\/(.+))?$/, pageRecordings], [/^\/api$/, pageApi],
];
function setPage(name) { document.body.dataset.page = name; window.synopticonReady = true; }

async function route() {
  if (current) { current.alive = false; for (const fn of current.cleanups) { try { fn(); } catch { /* ignore */ } } }
  const path = location.hash.replace(/^#/, '') || '/overview';
  let fn = null, params = [];
  for (const [re, f] of ROUTES) { const m = re.exec(path); if (m) { fn = f; params = m.slice(1).map((p) => p && decodeURIComponent(p)); break; } }
  if (!fn) { location.hash = '#/overview'; return; }
  const top = path.split('/')[1];
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === top);
  const ctx = current = newCtx();
  const view = $('#view');
  put(view);
  window.scrollTo(0, 0);
  try { await fn(ctx, view, ...params); } catch (e) { if (ctx.alive) { view.append(errBox(e)); setPage(top); } }
}

/* ---------- sparklines ---------- */

function sparkline(canvas, values, color) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 160, hgt = canvas.clientHeight || 40;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr); }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);
  if (values.length < 2) return;
  const max = Math.max(1, ...values), step = w / (values.length - 1);
  const y = (v) => hgt - 2 - (v / max) * (hgt - 4);
  g.beginPath();
  values.forEach((v, i) => (i ? g.lineTo(i * step, y(v)) : g.moveTo(0, y(v))));
  g.strokeStyle = color; g.lineWidth = 1.5; g.stroke();
  g.lineTo(w, hgt); g.lineTo(0, hgt); g.closePath();
  g.globalAlpha = 0.15; g.fillStyle = color; g.fill(); g.globalAlpha = 1;
}

/* ---------- overview ---------- */

const hist = { t: 0, events: null, drops: null, ev: [], dr: [] };

function systemEventRow(ev) {
  const d = ev.data || {};
  const brief = Object.entries(d).filter(([k]) => k !== 'channel').slice(0, 4).map(([k, v]) => `${k}=${typeof v === 'object' ? clip(JSON.stringify(v), 40) : v}`).join(' ');
  return h('li', { test: 'system-event', 'data-event': ev.event }, h('span', { class: 'time' }, fmtTime(ev.ts)), h('b', null, ev.event), ' ', h('span', { class: 'muted' }, brief));
}

async function pageOverview(ctx, view) {
  const health = h('div'), comps = h('div'), evList = h('ul', { class: 'events-mini', test: 'system-events' });
  const feedState = h('span');
  const tile = (label, test) => {
    const value = h('div', { class: 'tile-value', test }, '—'), sub = h('div', { class: 'tile-sub muted' });
    return { el: h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label), value, sub), value, sub };
  };
  const tSessions = tile('Sessions', 'stat-sessions'), tSources = tile('Sources', 'stat-sources'), tDevices = tile('Devices', 'stat-devices');
  const tRate = tile('Events / s', 'stat-events-rate'), tDrops = tile('Drops / s', 'stat-drops');
  const cvRate = h('canvas', { class: 'spark', test: 'spark-events' }), cvDrops = h('canvas', { class: 'spark', test: 'spark-drops' });
  tRate.el.append(cvRate); tDrops.el.append(cvDrops);
  view.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Overview'), health),
    h('div', { class: 'tiles' }, tSessions.el, tSources.el, tDevices.el, tRate.el, tDrops.el),
    h('div', { class: 'grid2' }, card('Components', comps), card('System events', h('p', { class: 'small' }, 'Feed: ', feedState), evList)),
  );

  const renderFeed = (ev) => {
    put(feedState, pill(sys.state), ' ', h('span', { class: 'muted' }, sys.detail));
    if (ev) { evList.prepend(systemEventRow(ev)); while (evList.children.length > 20) evList.lastChild.remove(); }
  };
  evList.append(...sys.events.slice(0, 20).map(systemEventRow));
  renderFeed(null);
  sys.listen(ctx, renderFeed);

  async function loadHealth() {
    try {
      const r = await api('/api/health');
      put(health, h('span', { test: 'overview-health' }, pill(r.status)), h('span', { class: 'muted small' }, ` v${r.version || '?'} · up ${fmtDur(r.uptime_secs)}`));
      put(comps, table(['Component', 'Status', 'Details'], Object.entries(r.components || {}).map(([name, c]) => {
        const rest = Object.entries(c).filter(([k]) => k !== 'status').map(([k, v]) => {
          if (k.endsWith('_bytes')) return `${k.replace('_bytes', '')}: ${fmtBytes(v)}`;
          if (v && typeof v === 'object') return Object.keys(v).length ? `${k}: ${Object.entries(v).map(([a, b]) => `${a} ${typeof b === 'object' ? (b.state || b.status || JSON.stringify(b)) : b}`).join(', ')}` : Array.isArray(v) ? '' : '';
          return `${k}: ${v}`;
        }).filter(Boolean).join(' · ');
        return h('tr', { test: 'component', 'data-name': name }, h('td', null, name), h('td', null, pill(c.status)), h('td', { class: 'small' }, clip(rest, 300)));
      }), 'components'));
    } catch (e) { put(health, errBox(e)); }
  }
  async function loadCounts() {
    const [ss, so, de] = await Promise.allSettled([api('/api/v1/sessions'), api('/api/v1/sources'), api('/api/v1/devices?limit=1')]);
    if (ss.status === 'fulfilled') {
      const list = ss.value.sessions || [];
      tSessions.value.textContent = list.length;
      let events = 0, drops = 0;
      for (const s of list) {
        events += s.events_received || 0;
        drops += s.mailbox_dropped || 0;
        for (const d of s.distributors || []) drops += (d.dropped || 0) + (d.client_frames_dropped || 0);
      }
      const now = performance.now();
      if (hist.events != null && now > hist.t) {
        const dt = (now - hist.t) / 1000;
        hist.ev.push(Math.max(0, (events - hist.events) / dt));
        hist.dr.push(Math.max(0, (drops - hist.drops) / dt));
        if (hist.ev.length > 60) { hist.ev.shift(); hist.dr.shift(); }
      }
      Object.assign(hist, { t: now, events, drops });
      tSessions.sub.textContent = `${fmtNum(events)} events received`;
      tRate.value.textContent = hist.ev.length ? hist.ev[hist.ev.length - 1].toFixed(1) : '…';
      tDrops.value.textContent = hist.dr.length ? hist.dr[hist.dr.length - 1].toFixed(1) : '…';
      tDrops.sub.textContent = `${fmtNum(drops)} dropped in all`;
      tDrops.el.classList.toggle('alert', (hist.dr[hist.dr.length - 1] || 0) > 0);
      sparkline(cvRate, hist.ev, '#2563eb');
      sparkline(cvDrops, hist.dr, '#dc2626');
    } else tSessions.value.textContent = ss.reason.status === 403 ? 'n/a' : '!';
    if (so.status === 'fulfilled') {
      const list = so.value.sources || [];
      tSources.value.textContent = list.length;
      tSources.sub.textContent = `${list.filter((s) => s.state === 'running').length} running`;
    } else tSources.value.textContent = '!';
    if (de.status === 'fulfilled') tDevices.value.textContent = de.value.total ?? (de.value.devices || []).length;
    else tDevices.value.textContent = de.reason.status === 403 ? 'n/a' : '!';
  }
  await Promise.all([loadHealth(), loadCounts()]);
  ctx.every(() => Promise.all([loadHealth(), loadCounts()]), 2000);
  setPage('overview');
}

/* ---------- sessions ---------- */

function distSummary(s) {
  return (s.distributors || []).map((d) => h('span', { class: 'chip ' + tone(d.health) }, d.kind));
}

async function pageSessions(ctx, view) {
  const listBox = h('div');
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Sessions')), h('div', { class: 'grid-side' }, card('Open sessions', listBox), card('New session', createForm(() => load()))));
  async function load() {
    try {
      const r = await api('/api/v1/sessions');
      const rows = (r.sessions || []).map((s) => h('tr', { test: 'session-row', 'data-id': s.id },
        h('td', null, h('a', { href: '#/sessions/' + enc(s.id) }, s.id)), h('td', null, pill(s.state)),
        h('td', null, s.config?.template || ''), h('td', null, distSummary(s)), h('td', { class: 'num' }, fmtNum(s.events_received)),
        h('td', { class: 'num' }, fmtDur(s.uptime_secs)), h('td', null, h('a', { href: '#/events/' + enc(s.id), class: 'small' }, 'live'))));
      put(listBox, rows.length ? table(['Id', 'State', 'Template', 'Distributors', 'Events', 'Uptime', ''], rows, 'session-list') : empty('No sessions.'));
    } catch (e) { put(listBox, errBox(e)); }
  }
  await load();
  ctx.every(load, 2000);
  setPage('sessions');
}

const FORM_FIELDS = ['template', 'id', 'enabledDistributors', 'sources', 'devices', 'distributors', 'eventRouting', 'redact'];
const FIELD_ALIASES = { enabled_distributors: 'enabledDistributors', event_routing: 'eventRouting' };

function createForm(onCreated) {
  const errs = {};
  const errEl = (f) => (errs[f] = h('div', { class: 'field-error', test: 'error-' + f }));
  const general = h('div', { class: 'error-box', test: 'form-error', hidden: true });
  const tplSel = h('select', { test: 'new-session-template', id: 'ns-template', name: 'template' });
  const tplDesc = h('p', { class: 'muted small' });
  const idIn = h('input', { test: 'new-session-id', id: 'ns-id', name: 'id', placeholder: 'generated when empty', autocomplete: 'off' });
  const checks = KINDS.map((k) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: k, test: 'new-session-dist-' + k }), k));
  const srcIn = h('input', { test: 'new-session-sources', id: 'ns-sources', placeholder: 'e.g. driveway, lab-* or *' });
  const devIn = h('input', { test: 'new-session-devices', id: 'ns-devices', placeholder: 'serial globs, or *' });
  const distTa = h('textarea', { test: 'new-session-distributors', id: 'ns-distributors', rows: 4, placeholder: '{"websocket": {"clientQueueCapacity": 4096}}' });
  const routeTa = h('textarea', { test: 'new-session-routing', id: 'ns-routing', rows: 3, placeholder: '{"face_*": ["websocket"]}' });
  const submit = h('button', { class: 'btn primary', type: 'submit', test: 'new-session-submit', mut: true }, 'Create session');
  const check = h('button', { class: 'btn', type: 'button', test: 'new-session-validate', mut: true }, 'Check');
  const field = (label, input, f, hint) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('p', { class: 'muted small' }, hint) : null, errEl(f));
  let templates = [];
  api('/api/v1/templates').then((r) => {
    templates = (r.templates || []).map((t) => (typeof t === 'string' ? { name: t } : t)).sort((a, b) => a.name.localeCompare(b.name));
    put(tplSel, ...templates.map((t) => h('option', { value: t.name, selected: t.name === 'local_testing' }, t.name)));
    showDesc();
  }).catch((e) => { put(tplSel, h('option', { value: '' }, '(server default)')); general.hidden = false; general.textContent = 'templates: ' + e.message; });
  function showDesc() {
    const t = templates.find((x) => x.name === tplSel.value);
    tplDesc.textContent = t ? `${t.description || ''}${t.enabledDistributors ? ' — enables: ' + t.enabledDistributors.join(', ') : ''}` : '';
  }
  tplSel.addEventListener('change', showDesc);

  function clearErrors() { for (const e of Object.values(errs)) e.textContent = ''; general.hidden = true; general.textContent = ''; }
  function showErrors(message, details) {
    const rest = [];
    for (const d of details || []) {
      const m = /^([A-Za-z_]+)(?=[.[:\s])/.exec(d);
      const f = m && (FIELD_ALIASES[m[1]] || m[1]);
      if (f && errs[f]) errs[f].append(h('div', null, d)); else rest.push(d);
    }
    if (message || rest.length) { general.hidden = false; put(general, message ? h('div', null, message) : null, rest.map((d) => h('div', null, d))); }
  }
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  function body() {
    const b = {};
    let bad = false;
    if (tplSel.value) b.template = tplSel.value;
    if (idIn.value.trim()) b.id = idIn.value.trim();
    const kinds = checks.map((c) => c.firstChild).filter((c) => c.checked).map((c) => c.value);
    if (kinds.length) b.enabledDistributors = kinds;
    if (srcIn.value.trim()) b.sources = list(srcIn.value);
    if (devIn.value.trim()) b.devices = list(devIn.value);
    for (const [ta, f] of [[distTa, 'distributors'], [routeTa, 'eventRouting']]) {
      if (!ta.value.trim()) continue;
      try { b[f] = JSON.parse(ta.value); } catch (e) { errs[f].textContent = `${f}: not valid JSON (${e.message})`; bad = true; }
    }
    return bad ? null : b;
  }
  async function send(validateOnly) {
    clearErrors();
    const b = body();
    if (!b) return;
    try {
      if (validateOnly) {
        const r = await api('/api/v1/sessions/validate', { method: 'POST', body: b });
        if (r.valid) setStatus('valid' + (r.warnings?.length ? ' — warnings: ' + r.warnings.join('; ') : ''));
        else { showErrors('not valid', r.errors); setStatus('not valid', 'err'); }
        return;
      }
      const r = await api('/api/v1/sessions', { method: 'POST', body: b });
      setStatus(`session ${r.id} created` + (r.warnings?.length ? ' — warnings: ' + r.warnings.join('; ') : ''));
      idIn.value = '';
      onCreated(r);
    } catch (e) {
      showErrors(e.body?.error || e.message, e.body?.details);
      setStatus('create failed: ' + e.message, 'err');
    }
  }
  check.addEventListener('click', () => send(true));
  return h('form', { class: 'form', test: 'new-session-form', onsubmit: (ev) => { ev.preventDefault(); send(false); } },
    field('Template', tplSel, 'template'), tplDesc,
    field('Id', idIn, 'id', '1-128 letters, digits, _ . -'),
    h('div', { class: 'field' }, h('label', null, 'Distributors'), h('div', { class: 'checks' }, checks), h('p', { class: 'muted small' }, "None ticked: the template's."), errEl('enabledDistributors')),
    h('details', null, h('summary', null, 'Sources, devices, settings, routing'),
      field('Sources', srcIn, 'sources'), field('Devices', devIn, 'devices'),
      field('Distributor settings (JSON, merged over the template)', distTa, 'distributors'),
      field('Event routing (JSON, merged over the template)', routeTa, 'eventRouting'), errEl('redact')),
    general, h('div', { class: 'row' }, submit, check));
}

async function pageSession(ctx, view, id) {
  const isSystem = id === 'system';
  const head = h('div', { class: 'page-head' }), info = h('div'), grid = h('div', { class: 'dist-grid' });
  const closeBtn = h('button', { class: 'btn danger', test: 'session-close', mut: true, off: isSystem, title: isSystem ? 'The system session cannot be closed' : 'Close this session' }, 'Close session');
  if (isSystem) closeBtn.hidden = true;
  const routeTa = h('textarea', { test: 'routing-json', rows: 8, spellcheck: 'false' });
  const routeErr = h('div', { class: 'field-error', test: 'routing-error' });
  const routeSave = h('button', { class: 'btn primary', test: 'routing-save', mut: true }, 'Save routing');
  let routeDirty = false;
  routeTa.addEventListener('input', () => { routeDirty = true; });
  head.append(h('h1', null, 'Session ', h('code', null, id)), h('span', { test: 'session-state' }), h('div', { class: 'spacer' }),
    h('a', { class: 'btn', href: '#/events/' + enc(id), test: 'session-live' }, 'Live events'), closeBtn);
  const playback = sessionPlayback(id);
  view.append(h('p', { class: 'crumbs' }, h('a', { href: '#/sessions' }, '← Sessions')), head, card(null, info), playback.el, h('h2', { class: 'section' }, 'Distributors'), grid,
    card('Event routing', h('p', { class: 'muted small' }, 'Keys: event names, globs or "*"; values: lists of distributor kinds. Replaces the routing whole.'), routeTa, routeErr, h('div', { class: 'row' }, routeSave)));

  const cards = {};
  let last = null;
  function distCard(kind) {
    const st = h('span', { test: 'distributor-state' }), pills = h('span', { class: 'pills' }), stats = h('div'), err = h('p', { class: 'small error-text', test: 'distributor-error' });
    const ta = h('textarea', { test: 'distributor-settings', rows: 5, spellcheck: 'false' });
    const taErr = h('div', { class: 'field-error' });
    const enable = h('button', { class: 'btn primary', test: 'distributor-enable', mut: true }, 'Enable');
    const disable = h('button', { class: 'btn', test: 'distributor-disable', mut: true }, 'Disable');
    const apply = h('button', { class: 'btn', test: 'distributor-apply', mut: true }, 'Apply settings');
    const c = { kind, dirty: false, ta };
    ta.addEventListener('input', () => { c.dirty = true; });
    c.el = h('section', { class: 'card dist', test: 'distributor', 'data-kind': kind },
      h('div', { class: 'dist-head' }, h('h3', null, kind), st, pills), stats, err,
      h('details', null, h('summary', null, 'Settings'), ta, taErr, h('div', { class: 'row' }, apply)),
      h('div', { class: 'row' }, enable, disable));
    enable.addEventListener('click', () => change('PUT', undefined, `enable ${kind}`));
    disable.addEventListener('click', () => change('DELETE', undefined, `disable ${kind}`));
    apply.addEventListener('click', () => {
      taErr.textContent = '';
      let b;
      try { b = ta.value.trim() ? JSON.parse(ta.value) : null; } catch (e) { taErr.textContent = 'not valid JSON: ' + e.message; return; }
      change('PUT', b == null ? '' : b, (c.on ? 'reconfigure ' : 'enable ') + kind, taErr);
    });
    async function change(method, body, label, errTarget) {
      try {
        const r = await api(`/api/v1/sessions/${enc(id)}/distributors/${kind}`, { method, body });
        const w = r?.warnings?.length ? ' — warnings: ' + r.warnings.join('; ') : '';
        setStatus(`${label}: ${r?.action || 'done'}${w}`);
        c.dirty = false;
        await load();
      } catch (e) {
        if (errTarget) errTarget.textContent = [e.body?.error, ...(e.body?.details || [])].filter(Boolean).join(' — ');
        setStatus(`${label} failed: ${e.message}`, 'err');
      }
    }
    c.update = (d, settings, closed) => {
      c.on = !!d;
      st.textContent = d ? `enabled · ${d.health}` : 'disabled';
      st.className = 'state ' + (d ? tone(d.health) : 'muted');
      put(pills, ...(d ? [breakerPill(d.breaker)] : []));
      put(stats, d ? kv([['routed', d.routed], ['sent', d.sent], ['unconfirmed', d.unconfirmed], ['failed', d.failed], ['dropped', d.dropped],
        ['queued', `${fmtNum(d.queued)} / ${fmtNum(d.queue_capacity)}`], d.connected_clients != null && ['clients', d.connected_clients], ['restarts', d.restarts], ['stalls', d.stalls],
        d.client_frames_dropped && ['client frames dropped', d.client_frames_dropped], d.slow_client_disconnects && ['slow clients cut', d.slow_client_disconnects]]) : '');
      err.textContent = d?.last_error ? `last error: ${d.last_error.message || d.last_error} (${d.last_error.at ? fmtTime(d.last_error.at) : ''})` : '';
      enable.hidden = !!d; disable.hidden = !d;
      apply.textContent = d ? 'Reconfigure' : 'Enable with these settings';
      for (const b of [enable, disable, apply]) setOff(b, closed);
      if (!c.dirty && document.activeElement !== ta) ta.value = json(settings ?? {});
    };
    return c;
  }
  closeBtn.addEventListener('click', async () => {
    if (isSystem || !confirm(`Close session ${id}? Its clients are disconnected.`)) return;
    try { await api(`/api/v1/sessions/${enc(id)}`, { method: 'DELETE' }); setStatus(`session ${id} closed`); location.hash = '#/sessions'; } catch (e) { setStatus('close failed: ' + e.message, 'err'); }
  });
  routeSave.addEventListener('click', async () => {
    routeErr.textContent = '';
    let b;
    try { b = JSON.parse(routeTa.value); } catch (e) { routeErr.textContent = 'not valid JSON: ' + e.message; return; }
    try {
      const r = await api(`/api/v1/sessions/${enc(id)}/routing`, { method: 'PUT', body: b });
      routeDirty = false;
      setStatus('routing saved' + (r.warnings?.length ? ' — warnings: ' + r.warnings.join('; ') : ''));
      await load();
    } catch (e) { routeErr.textContent = [e.body?.error, ...(e.body?.details || [])].filter(Boolean).join(' — '); setStatus('routing failed: ' + e.message, 'err'); }
  });

  async function load() {
    let s;
    try { s = await api(`/api/v1/sessions/${enc(id)}`); } catch (e) {
      put(info, errBox(e));
      return;
    }
    if (!ctx.alive) return;
    last = s;
    const cfg = s.config || {};
    const closed = s.state !== 'open';
    put($('[data-test=session-state]', head), pill(s.state));
    setOff(closeBtn, isSystem || closed);
    put(info, kv([['template', cfg.template || '—'], ['created', s.created_at ? new Date(s.created_at).toLocaleString() : '—'], ['uptime', fmtDur(s.uptime_secs)],
      ['events received', s.events_received], ['last seq', s.last_seq], ['mailbox dropped', s.mailbox_dropped],
      ['sources', (cfg.sources || []).join(', ') || '—'], ['devices', (cfg.devices || []).join(', ') || '—']]));
    const byKind = Object.fromEntries((s.distributors || []).map((d) => [d.kind, d]));
    const kinds = [...new Set([...KINDS, ...Object.keys(byKind)])];
    for (const k of kinds) {
      if (!cards[k]) { cards[k] = distCard(k); grid.append(cards[k].el); }
      cards[k].update(byKind[k], cfg.distributors?.[k], closed);
    }
    if (!routeDirty && document.activeElement !== routeTa) routeTa.value = json(cfg.eventRouting ?? {});
    setOff(routeSave, closed);
    await playback.update(s);
  }
  await load();
  if (!last) { setPage('session'); return; }
  ctx.every(load, 2000);
  ctx.every(playback.poll, 500);
  setPage('session');
}

/* ---------- live events ---------- */

function globRe(pattern) {
  const parts = pattern.split(',').map((p) => p.trim()).filter(Boolean);
  if (!parts.length) return null;
  const src = parts.map((p) => '^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$').join('|');
  return new RegExp(src, 'i');
}

async function pageEvents(ctx, view, id) {
  if (!id) { location.hash = '#/events/system'; return; }
  const list = h('div', { class: 'event-list', test: 'event-list' });
  const filter = h('input', { test: 'events-filter', placeholder: 'filter: face_*, device.*', type: 'search' });
  const pauseBtn = h('button', { class: 'btn', test: 'events-pause' }, 'Pause');
  const pendEl = h('span', { class: 'muted small', test: 'events-pending' });
  const rateEl = h('span', { class: 'rate', test: 'events-rate' }, '0.0 ev/s');
  const connEl = h('span', { test: 'events-conn' });
  const countEl = h('span', { class: 'muted small', test: 'events-count' });
  const picker = h('select', { test: 'events-session', 'aria-label': 'session' }, h('option', { value: id }, id));
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Live events'), picker, connEl, h('div', { class: 'spacer' }), h('a', { href: '#/sessions/' + enc(id), class: 'small' }, 'session details')),
    h('div', { class: 'toolbar' }, filter, pauseBtn, h('button', { class: 'btn ghost', test: 'events-clear', onclick: () => { all.length = 0; put(list); countEl.textContent = ''; } }, 'Clear'), pendEl, h('div', { class: 'spacer' }), countEl, rateEl),
    list);
  picker.addEventListener('change', () => { location.hash = '#/events/' + enc(picker.value); });
  api('/api/v1/sessions').then((r) => {
    const ids = (r.sessions || []).map((s) => s.id);
    if (!ids.includes(id)) ids.unshift(id);
    put(picker, ...ids.map((x) => h('option', { value: x, selected: x === id }, x)));
  }).catch(() => {});

  const MAX = 500;
  const all = [];
  let pending = [], queued = [], paused = false, re = null, raf = 0, missed = 0;
  const buckets = new Array(5).fill(0);
  let arrivals = 0;
  const row = (ev) => {
    const d = ev.data;
    const src = d && typeof d === 'object' ? d.source ?? d.serial ?? d.session ?? '' : '';
    const txt = JSON.stringify(d ?? null);
    return h('div', { class: 'ev', test: 'event-row', 'data-event': ev.event, 'data-seq': ev.seq },
      h('span', { class: 'time' }, fmtTime(ev.ts)), h('span', { class: 'seq' }, '#' + ev.seq), h('b', { class: 'name' }, ev.event),
      h('span', { class: 'src' }, typeof src === 'object' ? JSON.stringify(src) : String(src)), h('code', { class: 'data', title: clip(txt, 2000) }, clip(txt, 240)));
  };
  const matches = (ev) => !re || re.test(ev.event);
  function flush() {
    raf = 0;
    if (!queued.length) return;
    const frag = document.createDocumentFragment();
    for (let i = queued.length - 1; i >= 0; i--) { const ev = queued[i]; if (matches(ev)) { ev.el = row(ev); frag.append(ev.el); } }
    queued = [];
    list.prepend(frag);
    countEl.textContent = `${all.length} kept`;
  }
  function push(ev) {
    all.unshift(ev);
    queued.push(ev);
    while (all.length > MAX) { const old = all.pop(); if (old.el) old.el.remove(); old.dropped = true; }
    queued = queued.filter((e) => !e.dropped);
    if (!raf) raf = requestAnimationFrame(flush);
  }
  function rerender() {
    queued = [];
    put(list, ...all.filter(matches).map((ev) => (ev.el = row(ev))));
    for (const ev of all) if (!matches(ev)) ev.el = null;
  }
  filter.addEventListener('input', () => {
    try { re = globRe(filter.value); filter.classList.remove('bad'); } catch { filter.classList.add('bad'); return; }
    rerender();
  });
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    pauseBtn.classList.toggle('primary', paused);
    list.classList.toggle('paused', paused);
    missed = 0;
    pendEl.textContent = paused ? 'paused: 0 new' : '';
    if (!paused) { const p = pending; pending = []; for (const ev of p) push(ev); }
  });
  // WebSocket when the session has one; otherwise its SSE stream.
  let useSse = false;
  try {
    const st = await api('/api/v1/sessions/' + enc(id));
    const on = st.config?.enabledDistributors || (st.distributors || []).map((d) => d.kind);
    useSse = !on.includes('websocket') && on.includes('sse');
  } catch { /* the feed says why */ }
  if (!ctx.alive) return;
  const feed = (useSse ? sseFeed : liveFeed)(id, {
    onEvent(ev) {
      arrivals++;
      if (paused) {
        pending.push(ev);
        if (pending.length > MAX) pending.shift();
        pendEl.textContent = `paused: ${++missed} new`;
      } else push(ev);
    },
    onState(s, detail) { put(connEl, pill(s), detail ? h('span', { class: 'muted small' }, ' ' + detail) : null); },
  });
  ctx.onCleanup(() => { feed.close(); cancelAnimationFrame(raf); });
  let lastArrivals = 0, ticks = 0;
  const t = setInterval(() => {
    buckets.shift(); buckets.push(arrivals - lastArrivals); lastArrivals = arrivals; ticks++;
    rateEl.textContent = (buckets.reduce((a, b) => a + b, 0) / Math.min(ticks, buckets.length)).toFixed(1) + ' ev/s';
  }, 1000);
  ctx.onCleanup(() => clearInterval(t));
  setPage('events');
}

/* ---------- sources ---------- */

async function pageSources(ctx, view) {
  const box = h('div');
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Sources')), card(null, box));
  async function load() {
    try {
      const r = await api('/api/v1/sources');
      const rows = (r.sources || []).map((s) => {
        const st = s.stats || {};
        return h('tr', { test: 'source-row', 'data-id': s.id }, h('td', null, h('a', { href: '#/sources/' + enc(s.id) }, s.id)), h('td', null, s.kind),
          h('td', null, pill(s.state)), h('td', null, s.device || ''), h('td', { class: 'num' }, `${fmtNum(st.captured_fps)} / ${fmtNum(st.processed_fps)}`),
          h('td', { class: 'num' }, fmtNum(st.active_tracks)), h('td', { class: 'num' }, fmtNum(st.events)), h('td', { class: 'num' }, fmtNum(st.frames_dropped)), h('td', { class: 'num' }, fmtNum(st.restarts)),
          h('td', { class: 'small error-text' }, s.last_error ? clip(s.last_error, 120) : ''));
      });
      put(box, rows.length ? table(['Id', 'Kind', 'State', 'Device', 'FPS cap / proc', 'Tracks', 'Events', 'Dropped', 'Restarts', 'Last error'], rows, 'source-list') : empty('No sources.'));
    } catch (e) { put(box, errBox(e)); }
  }
  await load();
  ctx.every(load, 2000);
  setPage('sources');
}

const resolveCoord = (c, extent) => typeof c === 'number' ? c : typeof c === 'string' && c.trim().endsWith('%') ? parseFloat(c) / 100 * extent : Number(c) || 0;

// Line and zone counters: read wherever the status carries them (counts/analytics/stats),
// as an object keyed by id or an array of {id, ...}.
function shapeCounts(src, kind, id) {
  for (const box of [src.counts, src.analytics, src.stats?.counts, src.stats]) {
    const c = box?.[kind];
    if (!c) continue;
    const v = Array.isArray(c) ? c.find((x) => x && x.id === id) : c[id];
    if (v != null) return typeof v === 'object' ? Object.entries(v).filter(([k, n]) => k !== 'id' && typeof n !== 'object').map(([k, n]) => `${k} ${fmtNum(n)}`).join(' · ') : fmtNum(v);
  }
  return '';
}

async function pageSource(ctx, view, id) {
  const img = h('img', { test: 'source-frame', alt: 'latest analysed frame', draggable: 'false', hidden: true });
  const canvas = h('canvas', { test: 'source-overlay' });
  const noFrame = h('div', { class: 'no-frame', test: 'source-noframe' }, 'waiting for a frame…');
  const wrap = h('div', { class: 'frame-wrap' }, img, canvas, noFrame);
  const info = h('div'), shapesBox = h('div', { test: 'shape-list' }), hint = h('p', { class: 'small muted', test: 'shape-hint' });
  const shapeErr = h('div', { class: 'field-error', test: 'shape-error' });
  const idIn = h('input', { test: 'shape-id', placeholder: 'id of the new line or zone', autocomplete: 'off' });
  const bLine = h('button', { class: 'btn', test: 'draw-line', mut: true }, 'Draw line');
  const bZone = h('button', { class: 'btn', test: 'draw-zone', mut: true }, 'Draw zone');
  const bFinish = h('button', { class: 'btn', test: 'shape-finish', mut: true, off: true }, 'Finish');
  const bCancel = h('button', { class: 'btn ghost', test: 'shape-cancel' }, 'Cancel');
  const bSave = h('button', { class: 'btn primary', test: 'shape-save', mut: true }, 'Save');
  const bDiscard = h('button', { class: 'btn ghost', test: 'shape-discard' }, 'Discard changes');
  const stateEl = h('span');
  view.append(h('p', { class: 'crumbs' }, h('a', { href: '#/sources' }, '← Sources')),
    h('div', { class: 'page-head' }, h('h1', null, 'Source ', h('code', null, id)), stateEl),
    h('div', { class: 'grid-side wide' },
      h('div', null, wrap, h('div', { class: 'toolbar' }, bLine, bZone, bFinish, bCancel, idIn, bSave, bDiscard), hint, shapeErr),
      h('div', null, card('Lines and zones', shapesBox), card('Status', info))));

  let src = null, work = { lines: [], zones: [] }, dirty = false, mode = null, pendingPts = [], finished = false, tracks = [], drag = null;
  let nat = { w: 0, h: 0 }, hasFrame = false, lastUrl = null, timer = null, running = false;
  const editable = () => !S.readonly;
  const setNat = (w, hh) => { if (w && hh && (w !== nat.w || hh !== nat.h)) { nat = { w, h: hh }; wrap.style.aspectRatio = `${w} / ${hh}`; wrap.style.maxWidth = `max(320px, calc((100vh - 230px) * ${(w / hh).toFixed(4)}))`; } };

  function updateHint() {
    hint.textContent = mode === 'line' ? (pendingPts.length < 2 ? `Click the line's ${pendingPts.length ? 'end' : 'start'} on the frame ("in" is crossing from its left to its right, seen from start to end).` : 'Line drawn: give it an id and Save.')
      : mode === 'zone' ? (finished ? 'Zone drawn: give it an id and Save.' : `Click the zone's corners (${pendingPts.length} so far), then Finish.`)
        : dirty ? 'Unsaved changes: Save to apply them, or Discard.' : 'Drag a point of a line or zone to move it.';
    setOff(bFinish, !(mode === 'zone' && !finished && pendingPts.length >= 3));
    bCancel.hidden = !mode;
    bDiscard.hidden = !dirty && !mode;
    bLine.classList.toggle('primary', mode === 'line');
    bZone.classList.toggle('primary', mode === 'zone');
  }
  function startMode(m) { mode = m; pendingPts = []; finished = false; shapeErr.textContent = ''; updateHint(); draw(); }
  bLine.addEventListener('click', () => startMode('line'));
  bZone.addEventListener('click', () => startMode('zone'));
  bFinish.addEventListener('click', () => { finished = true; updateHint(); draw(); });
  bCancel.addEventListener('click', () => startMode(null));
  bDiscard.addEventListener('click', () => { dirty = false; startMode(null); resetWork(); });

  function resetWork() {
    const c = src?.config || {};
    work = { lines: clone(c.lines || []), zones: clone(c.zones || []) };
    renderShapes();
    draw();
  }
  function renderShapes() {
    const rows = [];
    for (const kind of ['lines', 'zones']) {
      work[kind].forEach((s, i) => {
        const del = h('button', { class: 'btn small danger', test: 'shape-delete', mut: true, title: 'Remove (then Save)' }, 'Delete');
        del.addEventListener('click', () => { work[kind].splice(i, 1); dirty = true; renderShapes(); updateHint(); draw(); });
        rows.push(h('tr', { test: 'shape-row', 'data-kind': kind.slice(0, -1), 'data-id': s.id },
          h('td', null, kind === 'lines' ? '╱ line' : '⬠ zone'), h('td', null, h('b', null, s.id)),
          h('td', { class: 'small', test: 'shape-count' }, src ? shapeCounts(src, kind, s.id) || '—' : '—'), h('td', null, del)));
      });
    }
    put(shapesBox, rows.length ? table(['', 'Id', 'Counts', ''], rows) : empty('No lines or zones yet.'), dirty ? h('p', { class: 'small warn-text' }, 'Unsaved changes.') : null);
  }

  // Drawing, in the frame's natural pixels.
  function draw() {
    const r = wrap.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.max(1, Math.round(r.width * dpr)), ch = Math.max(1, Math.round(r.height * dpr));
    if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; }
    const g = canvas.getContext('2d');
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, cw, ch);
    if (!nat.w || !r.width) return;
    const sc = r.width / nat.w, k = 1 / sc;
    g.setTransform(sc * dpr, 0, 0, sc * dpr, 0, 0);
    g.font = `${12 * k}px system-ui, sans-serif`;
    g.lineJoin = 'round';
    const P = (p) => [resolveCoord(p[0], nat.w), resolveCoord(p[1], nat.h)];
    const label = (text, x, y, color) => {
      const w = g.measureText(text).width + 8 * k;
      g.fillStyle = 'rgba(15,23,42,.75)'; g.fillRect(x, y - 15 * k, w, 15 * k);
      g.fillStyle = color; g.fillText(text, x + 4 * k, y - 4 * k);
    };
    const dot = (x, y, color) => { g.beginPath(); g.arc(x, y, 5 * k, 0, 7); g.fillStyle = color; g.fill(); g.lineWidth = 1.5 * k; g.strokeStyle = '#fff'; g.stroke(); };
    for (const t of tracks) {
      const b = t.bbox; if (!b) continue;
      const color = t.state === 'confirmed' ? '#22c55e' : t.state === 'lost' ? '#94a3b8' : '#f59e0b';
      g.setLineDash(t.state === 'confirmed' ? [] : [6 * k, 4 * k]);
      g.lineWidth = 2 * k; g.strokeStyle = color; g.strokeRect(b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1);
      g.setLineDash([]);
      label(`${t.track_id != null ? '#' + t.track_id : '?'} ${t.class_name || ''}`, b.x1, b.y1, color);
    }
    for (const z of work.zones) {
      const pts = (z.points || []).map(P); if (pts.length < 2) continue;
      g.beginPath(); pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y))); g.closePath();
      g.fillStyle = 'rgba(168,85,247,.18)'; g.fill(); g.lineWidth = 2 * k; g.strokeStyle = '#a855f7'; g.stroke();
      const c = shapeCounts(src || {}, 'zones', z.id);
      label(z.id + (c ? ' · ' + c : ''), pts[0][0], pts[0][1], '#e9d5ff');
      if (editable()) for (const [x, y] of pts) dot(x, y, '#a855f7');
    }
    for (const l of work.lines) {
      if (!l.points || l.points.length < 2) continue;
      const [a, b] = l.points.map(P);
      g.beginPath(); g.moveTo(a[0], a[1]); g.lineTo(b[0], b[1]); g.lineWidth = 3 * k; g.strokeStyle = '#facc15'; g.stroke();
      arrow(g, a, b, k);
      const c = shapeCounts(src || {}, 'lines', l.id);
      label(l.id + (c ? ' · ' + c : ''), Math.min(a[0], b[0]), Math.min(a[1], b[1]) - 2 * k, '#fef08a');
      if (editable()) { dot(a[0], a[1], '#facc15'); dot(b[0], b[1], '#facc15'); }
    }
    if (mode && pendingPts.length) {
      g.setLineDash([6 * k, 4 * k]); g.lineWidth = 2 * k; g.strokeStyle = '#38bdf8';
      g.beginPath(); pendingPts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      if (mode === 'zone' && finished) g.closePath();
      g.stroke(); g.setLineDash([]);
      if (mode === 'line' && pendingPts.length === 2) arrow(g, pendingPts[0], pendingPts[1], k);
      for (const [x, y] of pendingPts) dot(x, y, '#38bdf8');
    }
  }
  // "in" crosses from the left of a→b to its right as seen on the image: the normal (-dy, dx).
  function arrow(g, a, b, k) {
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1;
    const nx = -dy / len, ny = dx / len, mx = (a[0] + b[0]) / 2, my = (a[1] + b[1]) / 2, L = 28 * k;
    const ex = mx + nx * L, ey = my + ny * L;
    g.beginPath(); g.moveTo(mx - nx * L * 0.3, my - ny * L * 0.3); g.lineTo(ex, ey); g.lineWidth = 2.5 * k; g.strokeStyle = '#fb923c'; g.stroke();
    const ux = nx, uy = ny, hs = 8 * k;
    g.beginPath(); g.moveTo(ex + ux * hs * 0.4, ey + uy * hs * 0.4); g.lineTo(ex - ux * hs - uy * hs * 0.7, ey - uy * hs + ux * hs * 0.7); g.lineTo(ex - ux * hs + uy * hs * 0.7, ey - uy * hs - ux * hs * 0.7); g.closePath();
    g.fillStyle = '#fb923c'; g.fill();
    g.fillStyle = '#fb923c'; g.fillText('in', ex + ux * 6 * k, ey + uy * 14 * k);
  }

  // Pointer input: new points while drawing, dragging existing points otherwise.
  const toNat = (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = (ev.clientX - r.left) / r.width * nat.w, y = (ev.clientY - r.top) / r.height * nat.h;
    return [Math.round(Math.min(Math.max(x, 0), nat.w)), Math.round(Math.min(Math.max(y, 0), nat.h))];
  };
  function hit(ev) {
    const [x, y] = toNat(ev), tol = 10 * nat.w / canvas.getBoundingClientRect().width;
    for (const kind of ['lines', 'zones']) {
      for (const s of work[kind]) {
        const pts = s.points || [];
        for (let i = 0; i < pts.length; i++) {
          if (Math.hypot(resolveCoord(pts[i][0], nat.w) - x, resolveCoord(pts[i][1], nat.h) - y) <= tol) return { s, i };
        }
      }
    }
    return null;
  }
  canvas.addEventListener('pointerdown', (ev) => {
    if (!nat.w || !editable()) return;
    if (mode) {
      if ((mode === 'line' && pendingPts.length >= 2) || (mode === 'zone' && finished)) return;
      pendingPts.push(toNat(ev)); updateHint(); draw(); return;
    }
    const d = hit(ev);
    if (d) { drag = d; canvas.setPointerCapture(ev.pointerId); ev.preventDefault(); }
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (!nat.w) return;
    if (drag) { drag.s.points[drag.i] = toNat(ev); if (!dirty) { dirty = true; updateHint(); renderShapes(); } draw(); return; }
    canvas.style.cursor = mode ? 'crosshair' : editable() && hit(ev) ? 'grab' : 'default';
  });
  const endDrag = () => { drag = null; };
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);

  bSave.addEventListener('click', async () => {
    shapeErr.textContent = '';
    const next = clone(work);
    if (mode) {
      if (mode === 'zone' && !finished && pendingPts.length >= 3) finished = true;
      const done = mode === 'line' ? pendingPts.length === 2 : finished;
      if (!done) { shapeErr.textContent = mode === 'line' ? 'Click two points first.' : 'Click at least three corners first.'; return; }
      const kind = mode === 'line' ? 'lines' : 'zones';
      let sid = idIn.value.trim();
      if (!sid) { let n = next[kind].length + 1; while (next[kind].some((s) => s.id === `${mode}-${n}`)) n++; sid = `${mode}-${n}`; }
      if (next[kind].some((s) => s.id === sid)) { shapeErr.textContent = `A ${mode} called ${sid} exists already.`; return; }
      next[kind].push({ id: sid, points: pendingPts.map((p) => [...p]) });
    }
    const body = { lines: next.lines, zones: next.zones };
    try {
      let path = `/api/v1/sources/${enc(id)}`, b = body;
      if (src?.device && id.startsWith('device-')) { path = `/api/v1/devices/${enc(id.slice(7))}`; b = { source: body }; }
      await api(path, { method: 'PATCH', body: b });
      setStatus(`saved ${next.lines.length} line(s) and ${next.zones.length} zone(s) of ${id}`);
      idIn.value = ''; dirty = false; mode = null; pendingPts = []; finished = false;
      work = next;
      await loadSource();
      resetWork();
      updateHint();
    } catch (e) {
      shapeErr.textContent = [e.body?.error || e.message, ...(e.body?.details || [])].join(' — ');
      setStatus('save failed: ' + e.message, 'err');
    }
  });

  async function loadSource() {
    try {
      src = await api(`/api/v1/sources/${enc(id)}`);
    } catch (e) { put(info, errBox(e)); return; }
    const st = src.stats || {}, c = src.config || {};
    put(stateEl, pill(src.state), ' ', h('span', { class: 'muted small' }, src.kind + (src.device ? ' · device ' + src.device : '')));
    put(info, kv([['state', pill(src.state)], ['kind', src.kind], src.device && ['device', src.device], ['model', c.model || 'default'], ['detect', String(c.detect ?? true)],
      ['fps (captured / processed)', `${fmtNum(st.captured_fps)} / ${fmtNum(st.processed_fps)}`], ['frames captured', st.frames_captured], ['frames processed', st.frames_processed],
      ['frames dropped', st.frames_dropped], ['frames failed', st.frames_failed], ['active tracks', st.active_tracks], ['events', st.events], ['restarts', st.restarts],
      ['inference ms', st.inference_ms], ['tracking ms', st.tracking_ms], ['anchor', c.anchor], ['hysteresis px', c.hysteresis_px],
      src.last_error && ['last error', h('span', { class: 'error-text' }, src.last_error)]]));
    if (!hasFrame && !nat.w) { const s = Array.isArray(c.size) ? c.size : src.kind === 'synthetic' ? [640, 480] : [1280, 720]; setNat(s[0], s[1]); }
    if (!dirty && !mode && !drag) resetWork(); else renderShapes();
  }

  // Frames (~3 per second) and tracks, only while this page is shown and the tab visible.
  async function tick() {
    timer = null;
    if (!ctx.alive || document.hidden) { running = false; return; }
    running = true;
    const t0 = performance.now();
    let delay = 333;
    const [fr, tr] = await Promise.allSettled([
      api(`/api/v1/sources/${enc(id)}/frame.jpg`, { raw: true }).then((r) => r.blob()),
      api(`/api/v1/sources/${enc(id)}/tracks`),
    ]);
    if (!ctx.alive) return;
    if (fr.status === 'fulfilled') {
      const url = URL.createObjectURL(fr.value);
      await new Promise((res) => { img.onload = res; img.onerror = res; img.src = url; });
      if (lastUrl) URL.revokeObjectURL(lastUrl);
      lastUrl = url;
      if (!ctx.alive) { URL.revokeObjectURL(url); return; }
      hasFrame = !!img.naturalWidth;
      setNat(img.naturalWidth, img.naturalHeight);
      noFrame.hidden = true; img.hidden = false;
    } else {
      hasFrame = false;
      img.hidden = true; noFrame.hidden = false;
      noFrame.textContent = fr.reason?.status === 404 ? 'No frame yet (drawing on an assumed frame size).' : 'Frame: ' + (fr.reason?.message || 'unavailable');
      delay = 1000;
    }
    tracks = tr.status === 'fulfilled' ? tr.value.tracks || [] : [];
    draw();
    if (ctx.alive && !document.hidden) timer = setTimeout(tick, Math.max(50, delay - (performance.now() - t0)));
    else running = false;
  }
  const onVis = () => { if (!document.hidden && !running && !timer && ctx.alive) tick(); };
  document.addEventListener('visibilitychange', onVis);
  const ro = new ResizeObserver(() => draw());
  ro.observe(wrap);
  ctx.onCleanup(() => {
    document.removeEventListener('visibilitychange', onVis);
    ro.disconnect();
    clearTimeout(timer);
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    img.removeAttribute('src');
  });
  await loadSource();
  updateHint();
  tick();
  ctx.every(loadSource, 2000);
  setPage('source');
}

/* ---------- devices ---------- */

async function pageDevices(ctx, view) {
  const box = h('div'), evList = h('ul', { class: 'events-mini', test: 'device-events' });
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Devices')), card(null, box), card('Recent device events', evList));
  let busy = 0;
  const showEvents = () => {
    const evs = sys.events.filter((e) => e.event.startsWith('device.')).slice(0, 30);
    put(evList, ...(evs.length ? evs.map(systemEventRow) : [h('li', { class: 'muted' }, `None yet (system feed: ${sys.state}).`)]));
  };
  sys.listen(ctx, (ev) => { if (!ev || ev.event.startsWith('device.')) showEvents(); });
  showEvents();
  function toggle(d, field, test) {
    const cb = h('input', { type: 'checkbox', checked: !!d[field], test, 'data-id': d.id, mut: true, 'aria-label': field });
    cb.addEventListener('change', async () => {
      busy++;
      cb.disabled = true;
      try {
        const r = await api(`/api/v1/devices/${enc(d.id)}`, { method: 'PATCH', body: { [field]: cb.checked } });
        setStatus(`${d.serial}: ${field} ${cb.checked ? 'on' : 'off'}` + (r.events?.length ? ` (${r.events.join(', ')})` : ''));
      } catch (e) { cb.checked = !cb.checked; setStatus(`${d.serial}: ${field} failed: ${e.message}`, 'err'); }
      cb.disabled = S.readonly; busy--;
      load();
    });
    return h('label', { class: 'switch' }, cb, h('span', null));
  }
  async function load() {
    if (busy) return;
    try {
      const r = await api('/api/v1/devices?limit=1000');
      const rows = (r.devices || []).map((d) => h('tr', { test: 'device-row', 'data-id': d.id, 'data-serial': d.serial },
        h('td', null, h('b', null, d.serial), h('div', { class: 'muted small' }, d.name || '')), h('td', null, d.kind),
        h('td', null, toggle(d, 'stream_on', 'device-stream')), h('td', null, toggle(d, 'ai_enabled', 'device-ai')),
        h('td', null, d.stream ? [pill(d.stream.state || '—'), d.stream.source ? h('div', null, h('a', { class: 'small', href: '#/sources/' + enc(d.stream.source) }, d.stream.source)) : null] : '—',
          d.stream?.last_error || d.stream?.error ? h('div', { class: 'small error-text' }, clip(d.stream.last_error || d.stream.error, 120)) : null),
        h('td', { class: 'small' }, (d.detection_classes || []).join(', ') || 'all'), h('td', { class: 'small' }, d.updated_at ? new Date(d.updated_at).toLocaleString() : '')));
      put(box, rows.length ? table(['Serial', 'Kind', 'Stream', 'AI', 'Source', 'Classes', 'Updated'], rows, 'device-list') : empty('No devices registered.'),
        r.total > rows.length ? h('p', { class: 'muted small' }, `Showing ${rows.length} of ${r.total}.`) : null);
    } catch (e) { put(box, errBox(e)); }
  }
  await load();
  ctx.every(load, 3000);
  setPage('devices');
}

/* ---------- inputs and rules ---------- */

async function pageInputs(ctx, view) {
  const box = h('div');
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Inputs')), h('p', { class: 'muted' }, 'Detection envelopes consumed from Redis streams and MQTT topics.'), card(null, box));
  async function load() {
    try {
      const r = await api('/api/v1/inputs');
      const rows = (r.inputs || []).map((i) => h('tr', { test: 'input-row', 'data-name': i.name }, h('td', null, h('b', null, i.name), h('div', { class: 'muted small' }, i.origin || '')),
        h('td', null, i.kind), h('td', null, pill(i.connected ? 'connected' : 'disconnected')),
        ...['lag', 'pending', 'received', 'acknowledged', 'duplicates', 'dead_lettered', 'failed', 'devices_created', 'devices_limited'].map((k) => h('td', { class: 'num' }, fmtNum(i[k]))),
        h('td', { class: 'small error-text' }, i.last_error ? `${clip(i.last_error.message || String(i.last_error), 160)} ${i.last_error.at ? '(' + fmtTime(i.last_error.at) + ')' : ''}` : '')));
      put(box, rows.length ? table(['Name', 'Kind', 'State', 'Lag', 'Pending', 'Received', 'Acked', 'Duplicates', 'Dead-lettered', 'Failed', 'Devices registered', 'Devices over a limit', 'Last error'], rows, 'input-list') : empty('No inputs configured.'));
    } catch (e) { put(box, e.status === 403 ? empty('Inputs span every source: reading them needs a token without a scope.') : errBox(e)); }
  }
  await load();
  ctx.every(load, 2000);
  setPage('inputs');
}

// Recent frame captures of the rules as thumbnails (GET /api/v1/rules/captures). Each
// image is fetched once with the token and kept as a blob URL (the newest 48).
const captureBlobs = new Map();
async function renderCaptures(container) {
  if (!container) return;
  let list;
  try { list = (await api('/api/v1/rules/captures?limit=12')).captures || []; } catch (e) {
    if (e.status !== 403) put(container, card('Recent captures', errBox(e)));
    return;
  }
  const key = list.map((c) => c.path).join('|');
  if (container.dataset.key === key) return;
  container.dataset.key = key;
  const figures = await Promise.all(list.map(async (c) => {
    let url = captureBlobs.get(c.path);
    if (!url) {
      try {
        const blob = await (await api('/api/v1/rules/captures/' + c.path.split('/').map(enc).join('/'), { raw: true })).blob();
        url = URL.createObjectURL(blob);
        captureBlobs.set(c.path, url);
      } catch { return null; }
    }
    const [where, , file] = c.path.split('/');
    return h('figure', { class: 'capture', test: 'capture', 'data-path': c.path },
      h('img', { src: url, alt: c.path, loading: 'lazy' }),
      h('figcaption', { class: 'small muted' }, `${where || ''} · ${fmtTime(c.at)}`, h('br'), clip(file || c.path, 60)));
  }));
  while (captureBlobs.size > 48) {
    const [oldest, url] = captureBlobs.entries().next().value;
    URL.revokeObjectURL(url);
    captureBlobs.delete(oldest);
  }
  const shown = figures.filter(Boolean);
  put(container, card('Recent captures', shown.length ? h('div', { class: 'captures' }, ...shown) : empty('No captures yet.')));
}

async function pageRules(ctx, view) {
  const box = h('div', { test: 'rule-list' }), captures = h('div', { test: 'captures' });
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Rules')), box, captures);
  async function load() {
    try {
      const r = await api('/api/v1/rules');
      const rules = r.rules || [];
      put(box, ...(rules.length ? rules.map((ru) => card(null,
        h('div', { class: 'dist-head', test: 'rule', 'data-name': ru.name }, h('h3', null, ru.name), pill(ru.enabled === false ? 'disabled' : 'enabled'), h('span', { class: 'muted small' }, ru.origin || ''),
          h('div', { class: 'spacer' }), h('span', { class: 'small' }, `matched ${fmtNum(ru.matched)} · cooled down ${fmtNum(ru.cooled_down)}`)),
        ru.config?.description ? h('p', { class: 'muted small' }, ru.config.description) : null,
        table(['Action', 'Matched', 'Done', 'Failed', 'Dropped', 'Retries', 'Queued', 'Breaker', 'Last error'], (ru.actions || []).map((a) => {
          const le = a.last_error;
          const leText = !le ? '' : Array.isArray(le) ? `${le[0]} (${fmtTime(le[1])})` : le.message ? `${le.message} (${fmtTime(le.at)})` : String(le);
          return h('tr', { test: 'rule-action', 'data-type': a.type }, h('td', null, a.type + (a.gathered != null ? ` (${a.gathered} gathered)` : '')),
            ...['matched', 'done', 'failed', 'dropped', 'retries', 'queued'].map((k) => h('td', { class: 'num' }, fmtNum(a[k]))),
            h('td', null, breakerPill(a.breaker)), h('td', { class: 'small error-text' }, clip(leText, 160)));
        })))) : [card(null, empty('No rules.'))]));
    } catch (e) { put(box, e.status === 403 ? card(null, empty('Rules span every source: reading them needs a token without a scope.')) : errBox(e)); }
    renderCaptures(captures);
  }
  await load();
  ctx.every(load, 2000);
  setPage('rules');
}

/* ---------- recordings and replay ---------- */

// A recording's and a replay's states: a finished replay went well, a stopped recording too.
const PLAY_TONES = { recording: 'ok', stopping: 'warn', stopped: 'muted', interrupted: 'warn', failed: 'bad', playing: 'ok', paused: 'warn', finished: 'ok' };
const playPill = (s) => pill(s ?? '—', PLAY_TONES[s] || tone(s));
const fmtSecs = (s) => s == null ? '—' : s < 60 ? `${s.toFixed(1)} s` : fmtDur(s);
const plural = (n, word) => `${fmtNum(n)} ${word}${n === 1 ? '' : 's'}`;
const globList = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const recordingRunning = (r) => r.state === 'recording' || r.state === 'stopping';

// The errors of a form: a 422's details naming a field ("recording.events[1]: ...") go
// under that field, the rest in the general box.
function formErrors(prefix, test) {
  const errs = {};
  const general = h('div', { class: 'error-box', test: test + '-error', hidden: true });
  const named = new RegExp(`^${prefix}\\.([A-Za-z_]+)`);
  return {
    general,
    el(f) { return (errs[f] = h('div', { class: 'field-error', test: `${test}-error-${f}` })); },
    clear() { for (const e of Object.values(errs)) e.replaceChildren(); general.hidden = true; general.replaceChildren(); },
    // `field` takes the message when no detail says more (a 404 for the session).
    show(message, details, field) {
      if (field && errs[field] && !details?.length) { errs[field].append(h('div', null, message)); return; }
      const rest = [];
      for (const d of details || []) {
        const m = named.exec(d);
        if (m && errs[m[1]]) errs[m[1]].append(h('div', null, d)); else rest.push(d);
      }
      if (message || rest.length) { general.hidden = false; put(general, message ? h('div', null, message) : null, rest.map((d) => h('div', null, d))); }
    },
  };
}
const formField = (label, input, err, hint) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('p', { class: 'muted small' }, hint) : null, err);

// Sets a <select>'s options ([value, text] pairs) when they changed, keeping the choice
// (or `prefer` when there was none).
function fillSelect(sel, items, prefer) {
  const key = JSON.stringify(items);
  if (sel.dataset.options === key) return;
  sel.dataset.options = key;
  const keep = items.some(([v]) => v === sel.value) ? sel.value : prefer;
  put(sel, ...items.map(([v, t]) => h('option', { value: v, selected: v === keep }, t)));
}

// A recording's file, fetched with the token (a plain link could not send it) and saved
// from a blob: URL.
async function downloadRecording(rec) {
  try {
    const res = await api(`/api/v1/recordings/${enc(rec.id)}/download`, { raw: true });
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: rec.file || `${rec.id}.mcap`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setStatus(`${rec.file || rec.id}: ${fmtBytes(blob.size)} downloaded`);
  } catch (e) { setStatus(`download of ${rec.id} failed: ${e.message}`, 'err'); }
}

// `session`, when given (#/recordings/{id}), is the one the form offers to record.
async function pageRecordings(ctx, view, session) {
  const listBox = h('div');
  const replayCard = h('section', { class: 'card', test: 'replay-panel', hidden: true });
  let sessions = [], sources = [], busy = 0;
  const replay = replayPanel(replayCard);
  const form = recordForm();
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'Recordings')),
    h('p', { class: 'muted' }, "Sessions recorded to MCAP files (their events; if asked, their sources' detections and frames), to download or to play back into a session."),
    h('div', { class: 'grid-side wide' }, card(null, listBox), h('div', null, replayCard, card('Start recording', form.el))));

  function row(r) {
    const ended = !recordingRunning(r);
    const stop = h('button', { class: 'btn small', test: 'recording-stop', mut: true, onclick: () => stopRecording(r, stop) }, 'Stop');
    const del = h('button', { class: 'btn small danger', test: 'recording-delete', mut: true, onclick: () => deleteRecording(r) }, 'Delete');
    const again = h('button', { class: 'btn small', test: 'recording-replay', mut: true, onclick: () => replay.open(r) }, 'Replay into…');
    const download = h('a', { class: 'btn small', test: 'recording-download', href: `/api/v1/recordings/${enc(r.id)}/download`, download: r.file,
      onclick: (ev) => { ev.preventDefault(); downloadRecording(r); } }, 'Download');
    const extra = [r.detections && plural(r.detections, 'detection'), r.frames && plural(r.frames, 'frame'), r.dropped && `${fmtNum(r.dropped)} dropped`].filter(Boolean).join(' · ');
    return h('tr', { test: 'recording-row', 'data-id': r.id, 'data-state': r.state, 'data-session': r.session },
      h('td', null, h('a', { href: '#/sessions/' + enc(r.session) }, r.session)),
      h('td', null, r.spec?.label || h('span', { class: 'muted' }, '—'), h('div', { class: 'muted small mono' }, r.id), r.auto ? h('div', { class: 'muted small' }, 'by its template') : null),
      h('td', { test: 'recording-state' }, playPill(r.state), r.error ? h('div', { class: 'small error-text' }, clip(r.error, 160)) : null),
      h('td', { class: 'num' }, h('span', { test: 'recording-events' }, fmtNum(r.events)), extra ? h('div', { class: r.dropped ? 'small warn-text' : 'muted small' }, extra) : null),
      h('td', { class: 'num', test: 'recording-size' }, fmtBytes(r.bytes)), h('td', { class: 'num' }, fmtSecs(r.duration_s)),
      h('td', { class: 'small' }, r.started_at ? new Date(r.started_at).toLocaleString() : ''),
      h('td', { class: 'actions' }, ended ? null : stop, download, ended ? again : null, ended ? del : null));
  }
  async function stopRecording(r, btn) {
    busy++;
    btn.disabled = true;
    try {
      const i = await api(`/api/v1/recordings/${enc(r.id)}/stop`, { method: 'POST' });
      setStatus(`recording ${r.id} ${i.state}: ${plural(i.events, 'event')}, ${fmtBytes(i.bytes)}`);
    } catch (e) { setStatus(`stopping ${r.id} failed: ${e.message}`, 'err'); }
    busy--;
    await load();
  }
  async function deleteRecording(r) {
    if (!confirm(`Delete recording ${r.id} and its file?`)) return;
    try {
      await api(`/api/v1/recordings/${enc(r.id)}`, { method: 'DELETE' });
      setStatus(`recording ${r.id} deleted`);
      if (replay.showing() === r.id) replay.close();
    } catch (e) { setStatus(`deleting ${r.id} failed: ${e.message}`, 'err'); }
    await load();
  }

  function recordForm() {
    const fe = formErrors('recording', 'rec');
    const sessionSel = h('select', { id: 'rec-session', test: 'rec-session', name: 'session' });
    const events = h('input', { id: 'rec-events', test: 'rec-events', placeholder: 'every event; or e.g. gaze_*, trial_*', autocomplete: 'off', spellcheck: 'false' });
    const detections = h('input', { type: 'checkbox', test: 'rec-detections', checked: true });
    const frames = h('input', { type: 'checkbox', test: 'rec-frames' });
    const quality = h('input', { id: 'rec-quality', test: 'rec-quality', type: 'number', min: 1, max: 100, value: '75' });
    const label = h('input', { id: 'rec-label', test: 'rec-label', placeholder: 'e.g. P07, run 2', autocomplete: 'off' });
    const metadata = h('textarea', { id: 'rec-metadata', test: 'rec-metadata', rows: 3, spellcheck: 'false', placeholder: 'participant=P07\ncondition=B' });
    const submit = h('button', { class: 'btn primary', type: 'submit', test: 'rec-submit', mut: true }, 'Start recording');
    function body() {
      const b = { detections: detections.checked, frames: frames.checked };
      if (events.value.trim()) b.events = globList(events.value);
      if (quality.value.trim()) b.frame_quality = Number(quality.value);
      if (label.value.trim()) b.label = label.value.trim();
      const meta = {}, bad = [];
      metadata.value.split('\n').forEach((line, i) => {
        if (!line.trim()) return;
        const cut = line.indexOf('=');
        if (cut < 1) bad.push(`line ${i + 1}: key=value, got ${JSON.stringify(line)}`); else meta[line.slice(0, cut).trim()] = line.slice(cut + 1).trim();
      });
      if (bad.length) { fe.show(null, bad.map((d) => 'recording.metadata: ' + d)); return null; }
      if (Object.keys(meta).length) b.metadata = meta;
      return b;
    }
    async function send() {
      fe.clear();
      const b = body();
      if (!b) return;
      if (!sessionSel.value) { fe.show('Choose a session.', null, 'session'); return; }
      try {
        const r = await api(`/api/v1/sessions/${enc(sessionSel.value)}/recordings`, { method: 'POST', body: b });
        setStatus(`recording ${r.id} of session ${r.session} started`);
        label.value = '';
        await load();
      } catch (e) {
        fe.show(e.body?.error || e.message, e.body?.details, e.status === 404 ? 'session' : null);
        setStatus('recording failed: ' + e.message, 'err');
      }
    }
    const el = h('form', { class: 'form', test: 'rec-form', onsubmit: (ev) => { ev.preventDefault(); send(); } },
      formField('Session', sessionSel, fe.el('session')),
      formField('Events', events, fe.el('events'), 'Event types or globs, comma-separated; empty: every event.'),
      h('div', { class: 'field' }, h('div', { class: 'checks' },
        h('label', { class: 'check' }, detections, "Sources' detections"), h('label', { class: 'check' }, frames, 'Frames (JPEG)')),
      h('p', { class: 'muted small' }, 'Detections are what re-analysis replays through a source\'s lines and zones.'), fe.el('detections'), fe.el('frames')),
      formField('Label', label, fe.el('label')),
      h('details', null, h('summary', null, 'Frame quality, notes'),
        formField('Frame quality (1-100)', quality, fe.el('frame_quality')),
        formField('Notes (one key=value a line, kept in the file)', metadata, fe.el('metadata'))),
      fe.general, h('div', { class: 'row' }, submit));
    return { el, sessions(ids) { fillSelect(sessionSel, ids.map((i) => [i, i]), ids.includes(session) ? session : ids.find((i) => i !== 'system') ?? ids[0]); } };
  }

  function replayPanel(box) {
    const fe = formErrors('replay', 'replay');
    let current = null;
    const about = h('p', { class: 'small', test: 'replay-of' });
    const target = h('select', { id: 'rp-session', test: 'replay-session' });
    const rate = h('input', { id: 'rp-rate', test: 'replay-rate', type: 'number', min: 0, max: 1000, step: 'any', value: '1' });
    const loop = h('input', { type: 'checkbox', test: 'replay-loop' });
    const reanalyze = h('select', { id: 'rp-reanalyze', test: 'replay-reanalyze' });
    const rules = h('input', { type: 'checkbox', test: 'replay-rules', checked: true });
    const events = h('input', { id: 'rp-events', test: 'replay-events', placeholder: 'every recorded event', autocomplete: 'off', spellcheck: 'false' });
    const offset = h('input', { id: 'rp-offset', test: 'replay-offset', type: 'number', min: 0, step: 'any', placeholder: '0' });
    const duration = h('input', { id: 'rp-duration', test: 'replay-duration', type: 'number', min: 0, step: 'any', placeholder: 'to the end' });
    const result = h('p', { class: 'small', test: 'replay-result' });
    const submit = h('button', { class: 'btn primary', type: 'submit', test: 'replay-submit', mut: true }, 'Start replay');
    const close = () => { current = null; box.hidden = true; };
    const cancel = h('button', { class: 'btn ghost', type: 'button', test: 'replay-close', onclick: close }, 'Close');
    function fill() {
      fillSelect(target, sessions.map((i) => [i, i]), sessions.find((i) => i !== 'system' && i !== current?.session) ?? sessions[0]);
      fillSelect(reanalyze, [['', 'no: play the recorded events'], ...sources.map((s) => [s, s])], '');
    }
    async function send() {
      fe.clear();
      put(result);
      if (!current) return;
      const sid = target.value;
      if (!sid) { fe.show('Choose a session.', null, 'session'); return; }
      const b = { recording: current.id, loop: loop.checked };
      if (rate.value.trim()) b.rate = Number(rate.value);
      if (reanalyze.value) { b.reanalyze = reanalyze.value; b.rules = rules.checked; }
      if (events.value.trim()) b.events = globList(events.value);
      if (offset.value.trim()) b.start_offset_s = Number(offset.value);
      if (duration.value.trim()) b.duration_s = Number(duration.value);
      try {
        const st = await api(`/api/v1/sessions/${enc(sid)}/replay`, { method: 'POST', body: b });
        put(result, `Playing ${plural(st.total, 'event')} (${fmtSecs(st.duration_s)}) into `, h('a', { href: '#/sessions/' + enc(sid), test: 'replay-open-session' }, `session ${sid}`), '.');
        setStatus(`replay of ${current.id} into ${sid}: ${st.state}`);
      } catch (e) {
        fe.show(e.body?.error || e.message, e.body?.details, e.status === 404 && /session/i.test(e.body?.error || '') ? 'session' : null);
        setStatus('replay failed: ' + e.message, 'err');
      }
    }
    put(box, h('h2', null, 'Replay into a session'), about,
      h('form', { class: 'form', test: 'replay-form', onsubmit: (ev) => { ev.preventDefault(); send(); } },
        formField('Into session', target, fe.el('session')),
        formField('Rate', rate, fe.el('rate'), '1: real time, 2: twice as fast, 0: as fast as the session takes them.'),
        h('div', { class: 'field' }, h('label', { class: 'check' }, loop, 'Loop (start again at the end)'), fe.el('loop')),
        formField('Re-analyse with source', reanalyze, fe.el('reanalyze'), "The recorded detections go through this source's lines and zones as they are now."),
        h('div', { class: 'field' }, h('label', { class: 'check' }, rules, 'Dry-run the rules on the re-analysed events (rule_matched events; nothing acts)'), fe.el('rules')),
        h('details', null, h('summary', null, 'Events, window'),
          formField('Events', events, fe.el('events'), 'Event types or globs, comma-separated.'),
          formField('Start at (s from the first message)', offset, fe.el('start_offset_s')),
          formField('Duration (s)', duration, fe.el('duration_s'))),
        fe.general, h('div', { class: 'row' }, submit, cancel), result));
    return {
      open(r) {
        current = r;
        fe.clear();
        put(result);
        put(about, 'Recording ', h('code', null, r.id), ` of session ${r.session}`, r.spec?.label ? ` (${r.spec.label})` : '', `: ${plural(r.events, 'event')}, ${fmtSecs(r.duration_s)}.`);
        box.hidden = false;
        target.dataset.options = '';
        fill();
        box.scrollIntoView({ block: 'nearest' });
        target.focus();
      },
      close,
      showing: () => current?.id,
      refresh() { if (current) fill(); },
    };
  }

  async function load() {
    if (busy) return;
    const [rr, ss, so] = await Promise.allSettled([api('/api/v1/recordings'), api('/api/v1/sessions'), api('/api/v1/sources')]);
    if (!ctx.alive || busy) return;
    if (ss.status === 'fulfilled') sessions = (ss.value.sessions || []).map((s) => s.id);
    if (so.status === 'fulfilled') sources = (so.value.sources || []).map((s) => s.id);
    form.sessions(sessions);
    replay.refresh();
    if (rr.status === 'rejected') { put(listBox, errBox(rr.reason)); return; }
    const list = rr.value.recordings || [];
    put(listBox, list.length ? table(['Session', 'Label', 'State', 'Events', 'Size', 'Duration', 'Started', ''], list.map(row), 'recording-list') : empty('No recordings yet.'));
  }
  await load();
  ctx.every(load, 2000);
  setPage('recordings');
}

// The session page's card of its running recordings and the recording playing into it.
function sessionPlayback(id) {
  const recBox = h('div', { test: 'session-recordings' });
  const none = h('p', { class: 'muted small', test: 'replay-none' }, 'Nothing is playing into this session. ', h('a', { href: '#/recordings' }, 'Recordings'), ' can be replayed into it.');
  const state = h('span', { test: 'replay-state' }), of = h('span', { class: 'small' });
  const position = h('span', { test: 'replay-position' }), played = h('span', { test: 'replay-played' }), meta = h('span', { class: 'small', test: 'replay-meta' });
  const bar = h('progress', { class: 'replay-bar', test: 'replay-progress', max: '1', value: 0 });
  const err = h('p', { class: 'small error-text', test: 'replay-error' });
  const pause = h('button', { class: 'btn', test: 'replay-pause', mut: true }, 'Pause');
  const resume = h('button', { class: 'btn', test: 'replay-resume', mut: true }, 'Resume');
  const stop = h('button', { class: 'btn danger', test: 'replay-stop', mut: true }, 'Stop');
  const seek = h('input', { class: 'seek', type: 'number', test: 'replay-seek', min: 0, step: 'any', placeholder: 'seconds', 'aria-label': 'position to seek to, in seconds', mut: true });
  const seekGo = h('button', { class: 'btn', test: 'replay-seek-go', mut: true }, 'Seek');
  const replayBox = h('div', { test: 'session-replay', hidden: true },
    h('div', { class: 'dist-head' }, h('h3', null, 'Replay'), state, of),
    kv([['position', position], ['played', played]]), bar, h('p', { class: 'muted' }, meta), err,
    h('div', { class: 'row' }, pause, resume, stop, h('div', { class: 'spacer' }), seek, seekGo));
  const el = card('Recording and replay', recBox, h('hr', { class: 'sep' }), none, replayBox);
  let last = null, busy = false;

  function show(r) {
    last = r;
    replayBox.hidden = !r;
    none.hidden = !!r;
    if (!r) return;
    put(state, playPill(r.state));
    put(of, 'of ', h('a', { href: '#/recordings', test: 'replay-recording' }, r.recording));
    position.textContent = `${r.position_s.toFixed(1)} s / ${r.duration_s.toFixed(1)} s`;
    played.textContent = `${fmtNum(r.played)} / ${fmtNum(r.total)}`;
    meta.textContent = [r.rate === 0 ? 'as fast as possible' : `rate ${r.rate}×`, r.loop && `loop (${fmtNum(r.loops)} so far)`, r.reanalyze && `re-analysed with ${r.reanalyze}`,
      r.started_at && `started ${fmtTime(r.started_at)}`].filter(Boolean).join(' · ');
    bar.value = r.duration_s > 0 ? Math.min(1, r.position_s / r.duration_s) : r.state === 'finished' ? 1 : 0;
    err.textContent = r.error ? 'error: ' + r.error : '';
    const ended = r.state === 'finished' || r.state === 'stopped';
    setOff(pause, r.state !== 'playing');
    setOff(resume, r.state !== 'paused');
    setOff(stop, ended);
    setOff(seek, ended);
    setOff(seekGo, ended);
    seek.max = String(r.duration_s);
  }
  async function control(action, body) {
    busy = true;
    try {
      const r = await api(`/api/v1/sessions/${enc(id)}/replay/${action}`, { method: 'POST', body });
      show(r);
      setStatus(`replay ${action}: ${r.state}`);
    } catch (e) { setStatus(`replay ${action} failed: ${e.message}`, 'err'); }
    busy = false;
  }
  pause.addEventListener('click', () => control('pause'));
  resume.addEventListener('click', () => control('resume'));
  stop.addEventListener('click', () => control('stop'));
  const doSeek = () => {
    const v = Number(seek.value);
    if (seek.value.trim() === '' || !(v >= 0)) { err.textContent = 'seek: seconds from the start of the window, 0 or more'; return; }
    control('seek', { position_s: v });
  };
  seekGo.addEventListener('click', doSeek);
  seek.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') doSeek(); });

  async function stopRecording(rid) {
    try {
      const i = await api(`/api/v1/recordings/${enc(rid)}/stop`, { method: 'POST' });
      setStatus(`recording ${rid} ${i.state}: ${plural(i.events, 'event')}`);
    } catch (e) { setStatus(`stopping ${rid} failed: ${e.message}`, 'err'); }
  }
  // With the session's status: its running recordings' counters come from their own list.
  async function update(s) {
    if (!busy) show(s.replay || null);
    const ids = s.recordings || [];
    if (!ids.length) { put(recBox, h('p', { class: 'muted small' }, 'No recording running. ', h('a', { href: '#/recordings/' + enc(id), test: 'session-record-link' }, 'Start one'), '.')); return; }
    let infos = [];
    try { infos = (await api(`/api/v1/sessions/${enc(id)}/recordings`)).recordings || []; } catch { /* ids alone */ }
    const byId = Object.fromEntries(infos.map((r) => [r.id, r]));
    put(recBox, h('ul', { class: 'events-mini' }, ids.map((rid) => {
      const r = byId[rid];
      return h('li', { test: 'session-recording', 'data-id': rid }, playPill(r?.state || 'recording'), ' ', h('code', null, rid), r?.spec?.label ? ` ${r.spec.label}` : '',
        r ? h('span', { class: 'muted' }, ` · ${plural(r.events, 'event')} · ${fmtBytes(r.bytes)}`) : null, ' ',
        h('button', { class: 'btn small', test: 'session-recording-stop', mut: true, onclick: () => stopRecording(rid) }, 'Stop'));
    })));
  }
  // While it plays, the position is read more often than the session.
  async function poll() {
    if (busy || last?.state !== 'playing') return;
    try { const r = await api(`/api/v1/sessions/${enc(id)}/replay`); if (!busy) show(r); } catch { /* the session poll says more */ }
  }
  return { el, update, poll };
}

/* ---------- API reference ---------- */

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
function accessOf(op, doc) {
  const x = op['x-synopticon-access'];
  if (x) return typeof x === 'string' ? x : JSON.stringify(x);
  const sec = op.security ?? doc.security;
  if (Array.isArray(sec)) return sec.length === 0 || sec.some((s) => !Object.keys(s).length) ? 'public' : sec.map((s) => Object.keys(s).join('+')).join(' or ');
  return '';
}
// With a token the raw document is fetched with it and opened as a blob.
async function rawJson(ev) {
  if (!S.token) return;
  ev.preventDefault();
  try {
    const r = await api('/api/openapi.json', { raw: true });
    const url = URL.createObjectURL(new Blob([await r.text()], { type: 'application/json' }));
    window.open(url, '_blank');
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) { setStatus('OpenAPI: ' + e.message, 'err'); }
}
async function pageApi(ctx, view) {
  const box = h('div'), filter = h('input', { type: 'search', test: 'api-filter', placeholder: 'filter routes' });
  view.append(h('div', { class: 'page-head' }, h('h1', null, 'API'), h('div', { class: 'spacer' }), h('a', { class: 'btn', href: '/api/openapi.json', target: '_blank', rel: 'noopener', test: 'api-raw', onclick: rawJson }, 'Raw OpenAPI JSON')),
    h('div', { class: 'toolbar' }, filter), box);
  let doc;
  try { doc = await api('/api/openapi.json'); } catch (e) { box.append(errBox(e)); setPage('api'); return; }
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const m of METHODS) {
      const op = item[m]; if (!op) continue;
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push({ path, m, op, params: [...(item.parameters || []), ...(op.parameters || [])] });
    }
  }
  const tagDesc = Object.fromEntries((doc.tags || []).map((t) => [t.name, t.description]));
  const order = [...(doc.tags || []).map((t) => t.name).filter((t) => groups.has(t)), ...[...groups.keys()].filter((t) => !(doc.tags || []).some((x) => x.name === t))];
  const sections = order.map((tag) => {
    const ops = groups.get(tag).map(({ path, m, op, params }) => {
      const role = accessOf(op, doc);
      const ref = (p) => (p.$ref ? doc.components?.parameters?.[p.$ref.split('/').pop()] || { name: p.$ref } : p);
      const body = op.requestBody?.content ? Object.keys(op.requestBody.content).join(', ') : '';
      const el = h('details', { class: 'op', test: 'api-op', 'data-method': m, 'data-path': path },
        h('summary', null, h('span', { class: 'method ' + m }, m.toUpperCase()), h('code', { class: 'path' }, path), h('span', { class: 'summary' }, op.summary || ''),
          role ? h('span', { class: 'pill ' + (role === 'public' ? 'ok' : /admin/.test(role) ? 'bad' : /operator/.test(role) ? 'warn' : 'muted'), test: 'api-role' }, role) : null),
        op.description ? h('p', { class: 'small pre' }, op.description) : null,
        params.length ? table(['Parameter', 'In', 'Required', 'Type', 'Description'], params.map(ref).map((p) => h('tr', null, h('td', null, h('code', null, p.name)), h('td', null, p.in || ''),
          h('td', null, p.required ? 'yes' : ''), h('td', null, p.schema?.type || (p.schema?.$ref || '').split('/').pop() || ''), h('td', { class: 'small' }, p.description || '')))) : null,
        body ? h('p', { class: 'small' }, 'Body: ', h('code', null, body)) : null,
        op.responses ? h('p', { class: 'small muted' }, 'Responses: ' + Object.keys(op.responses).join(', ')) : null);
      el.dataset.text = `${m} ${path} ${op.summary || ''} ${role}`.toLowerCase();
      return el;
    });
    return h('section', { class: 'card api-tag', test: 'api-tag', 'data-tag': tag }, h('h2', null, tag), tagDesc[tag] ? h('p', { class: 'muted small' }, tagDesc[tag]) : null, ops);
  });
  put(box, h('p', { class: 'muted' }, `${doc.info?.title || 'API'} ${doc.info?.version || ''} · OpenAPI ${doc.openapi || ''}`), ...sections);
  filter.addEventListener('input', () => {
    const q = filter.value.trim().toLowerCase();
    for (const s of sections) {
      let any = false;
      for (const op of s.querySelectorAll('.op')) { const show = !q || op.dataset.text.includes(q); op.hidden = !show; any ||= show; }
      s.hidden = !any;
    }
  });
  setPage('api');
}

/* ---------- start ---------- */

window.synopticon = { token: () => S.token, api, role: () => S.role, renderCaptures };

async function start() {
  initAuth();
  updateWho();
  window.addEventListener('hashchange', route);
  await probeRole();
  sys.start();
  await route();
  window.synopticonReady = true;
}
start();
