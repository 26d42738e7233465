// The dashboard's other pages, one per run (PAGE), against a server tests/api/browser.rs
// prepared: the overview's live system events, the devices page's switches, the inputs,
// the rules with their capture thumbnails, the API reference and its filter, a zone drawn
// and a line's point dragged on a source's frame, and live events over SSE.
// Env: BASE_URL, CHROMIUM, ARTIFACTS, PAGE (overview | devices | inputs | rules | api |
// zones | sse), TOKEN (optional: kept in the tab as if signed in), and per page:
//   overview: SESSION_ID (created over REST while the page is open)
//   devices:  DEVICE_ID (registered, stream and AI off)
//   inputs:   INPUT_NAME (connected), DEAD_INPUT_NAME (pointed at a port nothing serves)
//   rules:    RULE_NAME (with frame_capture, which has captured already)
//   zones:    SOURCE_ID (with a frame), LINE_ID (an existing line), ZONE_ID (to draw)
//   sse:      SESSION_ID (with sse and no websocket), SHOT (screenshot label)
import { env, log, sleep, run, until, text, onPage, rest } from './lib.mjs';

const BASE = env('BASE_URL');
const PAGE = env('PAGE');
const TOKEN = env('TOKEN', '');

const api = (method, p, body) => rest(BASE, method, p, body, TOKEN);

async function open(page, hash, name) {
  if (TOKEN) await page.evaluateOnNewDocument((t) => sessionStorage.setItem('synopticon.token', t), TOKEN);
  await page.goto(BASE + '/' + hash, { waitUntil: 'domcontentloaded', timeout: 15000 });
  await onPage(page, name);
  // Marks this document: still there later means nothing reloaded the page.
  await page.evaluate(() => { window.pagesMarker = 'not reloaded'; });
}
const notReloaded = (page) => page.evaluate(() => window.pagesMarker === 'not reloaded');

/* ---------- overview: a session created elsewhere shows at once ---------- */

async function overview({ page, results, step, shot, fail }) {
  const session = env('SESSION_ID');
  step('overview with the system feed connected');
  await open(page, '#/overview', 'overview');
  await until(page, 'the system feed to be connected (the System events card says "connected")', () => {
    const card = [...document.querySelectorAll('section.card')].find((s) => s.querySelector('h2')?.textContent === 'System events');
    return card?.querySelector('p.small .pill')?.textContent === 'connected';
  }, { timeout: 10000 });
  results.sessions_tile_before = await text(page, '[data-test=stat-sessions]');

  step('a session created over REST');
  const made = await api('POST', '/api/v1/sessions', { id: session, template: 'local_testing' });
  if (made.status !== 201) fail(`POST /api/v1/sessions answered ${made.status}: ${JSON.stringify(made.body)}`);
  const t0 = Date.now();
  results.system_event = await until(page, `[data-test=system-event][data-event="session.created"] naming ${session}`, (id) => {
    const li = [...document.querySelectorAll('[data-test=system-event][data-event="session.created"]')].find((e) => e.textContent.includes(`id=${id}`));
    return li ? li.textContent.trim() : false;
  }, { timeout: 8000, args: [session] });
  results.system_event_after_ms = Date.now() - t0;
  results.not_reloaded = await notReloaded(page);
  results.system_events = await page.$$eval('[data-test=system-event]', (rs) => rs.map((r) => r.dataset.event));
  // The counters follow within their 2 s poll.
  results.sessions_tile_after = await until(page, 'the Sessions tile to count the new session', (before) => {
    const t = document.querySelector('[data-test=stat-sessions]')?.textContent;
    return t && t !== before && t;
  }, { timeout: 6000, args: [results.sessions_tile_before] });
  await shot('overview');
}

/* ---------- devices: the switches change the device ---------- */

async function devices({ page, results, step, shot, fail }) {
  const id = env('DEVICE_ID');
  const row = `[data-test=device-row][data-id="${id}"]`;
  step('devices page');
  await open(page, '#/devices', 'devices');
  await until(page, `the device's row (${row})`, (s) => !!document.querySelector(s), { args: [row] });
  results.row_serial = await page.$eval(row, (r) => r.dataset.serial);
  results.row_text = await page.$eval(row, (r) => r.textContent);
  results.switches_before = await page.$eval(row, (r) => ({
    ai: r.querySelector('[data-test=device-ai]')?.checked, stream: r.querySelector('[data-test=device-stream]')?.checked,
  }));
  // The system feed must be up before the clicks, or their events would be missed.
  await until(page, 'the system feed to be connected ([data-test=device-events])', () => {
    const l = document.querySelector('[data-test=device-events]');
    return !!l && (l.querySelector('[data-test=system-event]') || l.textContent.includes('system feed: connected'));
  });

  const device = async () => {
    const r = await api('GET', `/api/v1/devices/${encodeURIComponent(id)}`);
    if (r.status !== 200) fail(`GET /api/v1/devices/${id} answered ${r.status}`);
    return r.body;
  };
  const flip = async (test, field, event) => {
    step(`click ${test}`);
    await page.click(`${row} [data-test=${test}]`);
    const t0 = Date.now();
    let d = null;
    while (Date.now() - t0 < 8000) {
      d = await device();
      if (d[field] === true) break;
      await sleep(150);
    }
    results[`${field}_over_rest`] = d?.[field];
    if (d?.[field] !== true) fail(`${field} of the device is ${JSON.stringify(d?.[field])} over REST 8 s after clicking [data-test=${test}]`);
    results[`${event}_shown`] = await until(page, `a ${event} event in [data-test=device-events]`, (ev) => {
      const li = document.querySelector(`[data-test=device-events] [data-test=system-event][data-event="${ev}"]`);
      return li ? li.textContent.trim() : false;
    }, { timeout: 8000, args: [event] });
    results[`${test}_checked_after`] = await until(page, `[data-test=${test}] checked after the reload of the list`,
      (s, t) => document.querySelector(`${s} [data-test=${t}]`)?.checked === true, { timeout: 8000, args: [row, test] });
  };
  await flip('device-ai', 'ai_enabled', 'device.ai.toggled');
  await flip('device-stream', 'stream_on', 'device.stream.status');
  step('the stream shows');
  // The device's source (its stream_url is "external") runs: its state and a link to it.
  results.stream_cell = await until(page, `the device's source with its state in the row`, (s) => {
    const a = document.querySelector(`${s} a[href^="#/sources/device-"]`);
    const p = a?.closest('td')?.querySelector('.pill')?.textContent;
    return a && p ? { source: a.textContent, state: p } : false;
  }, { timeout: 8000, args: [row] });
  results.device_events = await page.$$eval('[data-test=device-events] [data-test=system-event]', (rs) => rs.map((r) => r.dataset.event));
  results.not_reloaded = await notReloaded(page);
  await shot('devices');
}

/* ---------- inputs: state of each ---------- */

async function inputs({ page, results, step, shot }) {
  const name = env('INPUT_NAME'), dead = env('DEAD_INPUT_NAME');
  step('inputs page');
  await open(page, '#/inputs', 'inputs');
  const stateOf = async (n, want) => until(page, `[data-test=input-row][data-name=${n}] to say ${want}`, (x, w) => {
    const p = document.querySelector(`[data-test=input-row][data-name="${x}"] .pill`)?.textContent;
    return p === w && p;
  }, { timeout: 10000, args: [n, want] });
  results.state = await stateOf(name, 'connected');
  results.dead_state = await stateOf(dead, 'disconnected');
  results.rows = await page.$$eval('[data-test=input-row]', (rs) => rs.map((r) => ({ name: r.dataset.name, cells: [...r.cells].map((c) => c.textContent.trim()) })));
  results.over_rest = (await api('GET', '/api/v1/inputs')).body;
  await shot('inputs');
}

/* ---------- rules and their captures ---------- */

async function rules({ page, results, step, shot, fail }) {
  const rule = env('RULE_NAME');
  step('rules page');
  await open(page, '#/rules', 'rules');
  await until(page, `[data-test=rule][data-name=${rule}]`, (r) => !!document.querySelector(`[data-test=rule][data-name="${r}"]`), { args: [rule] });
  results.rules = await page.$$eval('[data-test=rule]', (rs) => rs.map((r) => r.dataset.name));
  results.actions = await page.$$eval('[data-test=rule-action]', (rs) => rs.map((r) => ({ type: r.dataset.type, cells: [...r.cells].map((c) => c.textContent.trim()) })));

  step('capture thumbnails');
  const listed = await api('GET', '/api/v1/rules/captures?limit=12');
  if (listed.status !== 200) fail(`GET /api/v1/rules/captures answered ${listed.status}`);
  results.captures_over_rest = (listed.body.captures || []).map((c) => c.path);
  if (!results.captures_over_rest.length) fail('no captures over REST: nothing to show');
  await until(page, `${results.captures_over_rest.length} [data-test=capture] figures`,
    (n) => document.querySelectorAll('[data-test=capture]').length === n, { timeout: 8000, args: [results.captures_over_rest.length] });
  await page.$eval('[data-test=captures]', (c) => c.scrollIntoView());
  results.thumbnails = await until(page, 'every capture thumbnail decoded (img naturalWidth > 0)', () => {
    const figs = [...document.querySelectorAll('[data-test=capture]')];
    const all = figs.map((f) => { const i = f.querySelector('img'); return { path: f.dataset.path, w: i?.naturalWidth || 0, h: i?.naturalHeight || 0, blob: !!i?.src.startsWith('blob:') }; });
    return all.length && all.every((t) => t.w > 0) && all;
  }, { timeout: 10000 });
  await shot('rules');
}

/* ---------- the API reference ---------- */

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];

async function apiPage({ page, results, step, shot, fail }) {
  step('the OpenAPI document');
  const doc = (await api('GET', '/api/openapi.json')).body;
  const ops = [];
  for (const [p, item] of Object.entries(doc?.paths || {})) for (const m of METHODS) if (item[m]) ops.push({ m, p, summary: item[m].summary || '' });
  results.operations = ops.length;
  if (!ops.length) fail('the OpenAPI document has no operations');

  step('api page');
  await open(page, '#/api', 'api');
  results.listed = await until(page, `${ops.length} [data-test=api-op]`, (n) => {
    const c = document.querySelectorAll('[data-test=api-op]').length;
    return c === n && c;
  }, { timeout: 8000, args: [ops.length] }).catch(async (e) => {
    results.listed = await page.$$eval('[data-test=api-op]', (r) => r.length);
    throw e;
  });
  const listedOps = await page.$$eval('[data-test=api-op]', (rs) => rs.map((r) => `${r.dataset.method} ${r.dataset.path}`));
  const want = new Set(ops.map((o) => `${o.m} ${o.p}`));
  results.missing = [...want].filter((o) => !listedOps.includes(o));
  results.tags = await page.$$eval('[data-test=api-tag]', (rs) => rs.map((r) => r.dataset.tag));
  await shot('api');

  step('filter');
  const visible = () => page.$$eval('[data-test=api-op]', (rs) => rs.filter((r) => !r.hidden && r.closest('[data-test=api-tag]') && !r.closest('[data-test=api-tag]').hidden).map((r) => `${r.dataset.method} ${r.dataset.path}`));
  const filterTo = async (q) => {
    await page.click('[data-test=api-filter]', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    if (q) await page.type('[data-test=api-filter]', q);
    await sleep(150);
    return visible();
  };
  const q = '/api/v1/rules/captures';
  results.filter_query = q;
  results.filtered = await filterTo(q);
  results.filtered_expected = ops.filter((o) => `${o.m} ${o.p} ${o.summary}`.toLowerCase().includes(q)).map((o) => `${o.m} ${o.p}`);
  results.visible_tags_filtered = await page.$$eval('[data-test=api-tag]', (rs) => rs.filter((r) => !r.hidden).map((r) => r.dataset.tag));
  await shot('api-filtered');
  results.filtered_delete = (await filterTo('delete')).length;
  results.filtered_delete_expected = ops.filter((o) => `${o.m} ${o.p} ${o.summary}`.toLowerCase().includes('delete')).length;
  results.filtered_nothing = (await filterTo('no-such-route-at-all')).length;
  results.unfiltered = (await filterTo('')).length;
}

/* ---------- a zone drawn and a line's point dragged on a source's frame ---------- */

async function zones({ page, results, step, shot, fail }) {
  const source = env('SOURCE_ID'), line = env('LINE_ID'), zone = env('ZONE_ID');
  step('source page with its frame');
  await open(page, `#/sources/${encodeURIComponent(source)}`, 'source');
  results.frame_size = await until(page, 'a loaded frame (img[data-test=source-frame] with naturalWidth > 0)', () => {
    const img = document.querySelector('img[data-test=source-frame]');
    return img && !img.hidden && img.complete && img.naturalWidth > 0 && [img.naturalWidth, img.naturalHeight];
  }, { timeout: 10000 });
  await until(page, `the existing line ${line} in the list`, (id) => !!document.querySelector(`[data-test=shape-row][data-kind=line][data-id="${id}"]`), { args: [line] });
  // Screen position of a point in the frame's natural pixels, and back, as the page maps them.
  const geometry = () => page.$eval('canvas[data-test=source-overlay]', (cv) => {
    const r = cv.getBoundingClientRect(), img = document.querySelector('img[data-test=source-frame]');
    return { x: r.left, y: r.top, w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight };
  });
  // Read again before each use: a status line appearing above moves the frame down.
  let g = await geometry();
  results.canvas = g;
  const toScreen = ([nx, ny]) => [g.x + nx / g.nw * g.w, g.y + ny / g.nh * g.h];
  const toNat = ([sx, sy]) => [Math.round((sx - g.x) / g.w * g.nw), Math.round((sy - g.y) / g.h * g.nh)];

  step('draw a zone');
  await page.click('[data-test=draw-zone]');
  const corners = [[0.55, 0.55], [0.85, 0.55], [0.85, 0.9], [0.55, 0.9]].map(([fx, fy]) => [g.x + fx * g.w, g.y + fy * g.h]);
  for (const [x, y] of corners) { await page.mouse.click(x, y); await sleep(60); }
  results.zone_expected = corners.map(toNat);
  results.finish_enabled = await page.$eval('[data-test=shape-finish]', (b) => !b.disabled);
  await page.click('[data-test=shape-finish]');
  results.hint_after_finish = await text(page, '[data-test=shape-hint]');
  await page.type('[data-test=shape-id]', zone);
  await page.click('[data-test=shape-save]');
  await until(page, `the saved zone ${zone} in the list ([data-test=shape-row][data-kind=zone]) or an error`,
    (id) => !!document.querySelector(`[data-test=shape-row][data-kind=zone][data-id="${id}"]`) || (document.querySelector('[data-test=shape-error]')?.textContent && 'error'), { args: [zone] });
  const zoneError = await text(page, '[data-test=shape-error]');
  if (zoneError) fail(`saving the zone showed [data-test=shape-error]: ${zoneError}`);
  const afterZone = await api('GET', `/api/v1/sources/${encodeURIComponent(source)}`);
  results.zones_over_rest = afterZone.body?.config?.zones;
  await shot('source-zone');

  step('drag a point of the line');
  const before = (afterZone.body?.config?.lines || []).find((l) => l.id === line);
  if (!before) fail(`line ${line} not in the source's configuration: ${JSON.stringify(afterZone.body?.config)}`);
  results.line_before = before.points;
  await sleep(200);
  g = await geometry();
  results.canvas_at_drag = g;
  const [hx, hy] = toScreen(before.points[0].map(Number));
  const target = toScreen([Number(before.points[0][0]) + 0.15 * g.nw, Number(before.points[0][1]) + 0.3 * g.nh]);
  await page.mouse.move(hx, hy);
  results.cursor_over_handle = await page.$eval('canvas[data-test=source-overlay]', (c) => c.style.cursor);
  await page.mouse.down();
  await page.mouse.move(target[0], target[1], { steps: 12 });
  await page.mouse.up();
  results.line_expected_point = toNat(target);
  results.hint_after_drag = await text(page, '[data-test=shape-hint]');
  await shot('source-dragged');
  await page.click('[data-test=shape-save]');
  const t0 = Date.now();
  let moved = null;
  while (Date.now() - t0 < 6000) {
    const s = await api('GET', `/api/v1/sources/${encodeURIComponent(source)}`);
    const l = (s.body?.config?.lines || []).find((x) => x.id === line);
    if (l && JSON.stringify(l.points) !== JSON.stringify(before.points)) { moved = l.points; results.zones_after_drag = s.body.config.zones; break; }
    await sleep(150);
  }
  results.line_after = moved;
  const dragError = await text(page, '[data-test=shape-error]');
  if (dragError) fail(`saving the dragged line showed [data-test=shape-error]: ${dragError}`);
  if (!moved) fail(`the line's points did not change over REST within 6 s of Save (still ${JSON.stringify(before.points)}; hint: ${results.hint_after_drag})`);
  await sleep(300);
  await shot('source');
}

/* ---------- live events over SSE ---------- */

async function sse({ page, results, step, shot, fail }) {
  const session = env('SESSION_ID');
  // The session's feed requests as sent (how the token travels), and every WebSocket opened.
  const feeds = [], sockets = [];
  page.on('request', (r) => {
    if (!/\/api\/v1\/sessions\/[^/]+\/sse/.test(r.url())) return;
    const hd = r.headers();
    feeds.push({ url: r.url().replace(BASE, ''), type: r.resourceType(), authorization: hd.authorization || null, accept: hd.accept || null });
  });
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketCreated', (e) => sockets.push(e.url.replace(/^ws:\/\/[^/]+/, '')));
  step('live events of a session with sse only');
  await open(page, `#/events/${encodeURIComponent(session)}`, 'events');
  results.conn = await until(page, 'the live feed to be connected ([data-test=events-conn] says "connected")',
    () => { const p = document.querySelector('[data-test=events-conn] .pill')?.textContent; return p === 'connected' && document.querySelector('[data-test=events-conn]').textContent.trim(); }, { timeout: 10000 })
    .catch(async (e) => { results.conn = await text(page, '[data-test=events-conn]'); throw e; });
  step('post events');
  const r = await api('POST', `/api/v1/sessions/${encodeURIComponent(session)}/events`, [{ event: 'sse_one', data: { n: 1 } }, { event: 'sse_two', data: { n: 2 } }, { event: 'sse_one', data: { n: 3 } }]);
  if (r.status !== 202) fail(`POST events answered ${r.status}: ${JSON.stringify(r.body)}`);
  await until(page, '3 [data-test=event-row]', () => document.querySelectorAll('[data-test=event-row]').length >= 3, { timeout: 8000 });
  await sleep(300);
  results.rows = await page.$$eval('[data-test=event-row]', (rs) => rs.map((x) => ({ event: x.dataset.event, seq: Number(x.dataset.seq), data: x.querySelector('.data')?.textContent || '' })));
  results.feeds = feeds;
  results.websockets = sockets;
  await shot(env('SHOT', 'events-sse'));
}

const PAGES = { overview, devices, inputs, rules, api: apiPage, zones, sse };
if (!PAGES[PAGE]) throw new Error(`PAGE=${PAGE}: one of ${Object.keys(PAGES).join(', ')}`);

await run('pages', async (ctx) => {
  ctx.results.page = PAGE;
  await PAGES[PAGE](ctx);
  log('done');
}, { deadlineMs: 40000 });
