// The dashboard in local_testing mode (no authentication), as a user drives it: overview,
// creating a session (a bad id first), its live events (pause, filter), switching one of
// its distributors off and on, and a source's frame with its boxes, on which a line is drawn.
// Env: BASE_URL, CHROMIUM, ARTIFACTS, SESSION_ID (to create), SOURCE_ID (a running source
// whose tracks have boxes), LINE_ID (the line to draw).
import { env, log, sleep, run, until, text, onPage, rest } from './lib.mjs';

const BASE = env('BASE_URL');
const SESSION = env('SESSION_ID');
const SOURCE = env('SOURCE_ID');
const LINE = env('LINE_ID');

const rowsOf = (page) => page.$$eval('[data-test=event-row]', (rs) => rs.map((r) => ({ event: r.dataset.event, seq: Number(r.dataset.seq), data: r.querySelector('.data')?.textContent || '' })));

await run('dashboard', async ({ page, results, step, shot, fail }) => {
  step('overview');
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded', timeout: 15000 });
  await onPage(page, 'overview');
  results.health = await until(page, 'the health pill ([data-test=overview-health])',
    () => document.querySelector('[data-test=overview-health] .pill')?.textContent.trim() || false);
  results.components = await page.$$eval('[data-test=component]', (rs) => rs.map((r) => r.dataset.name));
  if (!results.components.length) fail('no [data-test=component] rows under Components');
  results.role = await text(page, '[data-test=role]');
  if (await page.$eval('[data-test=token-modal]', (m) => !m.hidden)) fail('the token prompt is shown in local_testing mode');
  await shot('overview');
  await page.setViewport({ width: 375, height: 800 });
  await sleep(300);
  await shot('overview-375');
  results.overview_375_scroll_width = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.setViewport({ width: 1280, height: 800 });

  step('sessions page');
  await page.click('[data-test=nav-sessions]');
  await onPage(page, 'sessions');
  await until(page, 'the template list with local_testing', () => !!document.querySelector('[data-test=new-session-template] option[value=local_testing]'));
  await page.select('[data-test=new-session-template]', 'local_testing');

  step('create a session with a bad id');
  await page.type('[data-test=new-session-id]', 'bad id!');
  await page.click('[data-test=new-session-submit]');
  results.bad_id_error = await until(page, 'an error next to the id field ([data-test=error-id] non-empty)',
    () => document.querySelector('[data-test=error-id]')?.textContent.trim() || false, { timeout: 5000 });
  await shot('sessions-bad-id');

  step('create a session with a good id');
  await page.click('[data-test=new-session-id]', { clickCount: 3 });
  await page.keyboard.press('Backspace');
  await page.type('[data-test=new-session-id]', SESSION);
  await page.click('[data-test=new-session-submit]');
  await until(page, `the row of session ${SESSION} ([data-test=session-row][data-id=${SESSION}])`,
    (id) => !!document.querySelector(`[data-test=session-row][data-id="${id}"]`), { args: [SESSION] });
  results.id_error_after_success = await text(page, '[data-test=error-id]');
  results.session_row = await page.$eval(`[data-test=session-row][data-id="${SESSION}"]`, (r) => r.textContent);
  await shot('sessions');

  step('session page');
  await page.click(`[data-test=session-row][data-id="${SESSION}"] a[href^="#/sessions/"]`);
  await onPage(page, 'session');
  const sseState = `[data-test=distributor][data-kind=sse] [data-test=distributor-state]`;
  const stateOf = () => text(page, sseState);
  results.sse_states = [await until(page, 'the sse card to say enabled', (s) => document.querySelector(s)?.textContent.startsWith('enabled') && document.querySelector(s).textContent, { args: [sseState] })];

  step('disable sse');
  await page.click('[data-test=distributor][data-kind=sse] [data-test=distributor-disable]');
  await until(page, 'the sse card to say disabled', (s) => document.querySelector(s)?.textContent === 'disabled', { args: [sseState] });
  results.sse_states.push(await stateOf());
  const off = await rest(BASE, 'GET', `/api/v1/sessions/${SESSION}`);
  results.sse_enabled_over_rest_after_disable = (off.body?.distributors || []).some((d) => d.kind === 'sse');
  await shot('session-sse-disabled');

  step('enable sse');
  await page.click('[data-test=distributor][data-kind=sse] [data-test=distributor-enable]');
  await until(page, 'the sse card to say enabled again', (s) => document.querySelector(s)?.textContent.startsWith('enabled'), { args: [sseState] });
  results.sse_states.push(await stateOf());
  const on = await rest(BASE, 'GET', `/api/v1/sessions/${SESSION}`);
  results.sse_enabled_over_rest_after_enable = (on.body?.distributors || []).some((d) => d.kind === 'sse');

  step('live events');
  await page.click('[data-test=session-live]');
  await onPage(page, 'events');
  await until(page, 'the live feed to be connected ([data-test=events-conn])', () => document.querySelector('[data-test=events-conn] .pill')?.textContent === 'connected');
  const post = async (events) => {
    const r = await rest(BASE, 'POST', `/api/v1/sessions/${SESSION}/events`, events);
    if (r.status !== 202) fail(`POST events answered ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  await post([{ event: 'browser_alpha', data: { n: 1 } }, { event: 'browser_beta', data: { n: 2 } }, { event: 'browser_alpha', data: { n: 3 } }]);
  await until(page, '3 event rows', () => document.querySelectorAll('[data-test=event-row]').length >= 3);
  results.rows_first = await rowsOf(page);
  await shot('events');

  step('pause');
  await page.click('[data-test=events-pause]');
  results.pause_label = await text(page, '[data-test=events-pause]');
  await post([{ event: 'browser_gamma', data: { n: 4 } }, { event: 'browser_gamma', data: { n: 5 } }]);
  results.pending_while_paused = await until(page, 'the paused count "paused: 2 new" ([data-test=events-pending])',
    () => { const t = document.querySelector('[data-test=events-pending]')?.textContent; return t === 'paused: 2 new' && t; }, { timeout: 5000 });
  await sleep(300);
  results.rows_while_paused = (await rowsOf(page)).length;
  await page.click('[data-test=events-pause]');
  await until(page, '5 event rows after resuming', () => document.querySelectorAll('[data-test=event-row]').length >= 5);
  results.resume_label = await text(page, '[data-test=events-pause]');
  results.pending_after_resume = await text(page, '[data-test=events-pending]');
  results.rows_after_resume = await rowsOf(page);

  step('filter');
  const filterTo = async (value) => {
    await page.click('[data-test=events-filter]', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    if (value) await page.type('[data-test=events-filter]', value);
    await sleep(150);
    return (await rowsOf(page)).map((r) => r.event);
  };
  results.filtered_alpha = await filterTo('browser_alpha');
  results.filtered_glob = await filterTo('browser_g*');
  await shot('events-filtered');
  results.filtered_none = await filterTo('');

  step('source frame');
  await page.click('[data-test=nav-sources]');
  await onPage(page, 'sources');
  await until(page, `the row of source ${SOURCE}`, (id) => !!document.querySelector(`[data-test=source-row][data-id="${id}"]`), { args: [SOURCE] });
  await page.click(`[data-test=source-row][data-id="${SOURCE}"] a`);
  await onPage(page, 'source');
  results.frame_size = await until(page, 'a loaded frame (img[data-test=source-frame] with naturalWidth > 0)', () => {
    const img = document.querySelector('img[data-test=source-frame]');
    return img && !img.hidden && img.complete && img.naturalWidth > 0 && [img.naturalWidth, img.naturalHeight];
  }, { timeout: 30000 });

  step('boxes on the overlay');
  // A track's box, drawn on the overlay: ink on its left and right edges and none at its
  // centre (the canvas is transparent but for what it draws), read back with getImageData.
  results.box_check = await until(page, 'a track box drawn on the overlay canvas (non-transparent pixels on its edges)', async (id) => {
    const img = document.querySelector('img[data-test=source-frame]');
    const cv = document.querySelector('canvas[data-test=source-overlay]');
    if (!img?.naturalWidth || !cv?.width) return false;
    let tracks;
    try { tracks = (await window.synopticon.api(`/api/v1/sources/${encodeURIComponent(id)}/tracks`)).tracks || []; } catch { return false; }
    const g = cv.getContext('2d');
    const s = cv.width / img.naturalWidth;
    const inkNear = (x, y) => {
      const x0 = Math.max(0, Math.round(x - 6)), y0 = Math.max(0, Math.round(y - 6));
      const d = g.getImageData(x0, y0, 13, 13).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    };
    for (const t of tracks) {
      const b = t.bbox;
      if (!b) continue;
      const my = (b.y1 + b.y2) / 2 * s;
      const left = inkNear(b.x1 * s, my), right = inkNear(b.x2 * s, my);
      const c = g.getImageData(Math.round((b.x1 + b.x2) / 2 * s), Math.round(my), 1, 1).data;
      // Ink on both edges, none inside: an outline where the tracker says the box is.
      if (left > 0 && right > 0 && c[3] === 0) return { track: t.track_id ?? null, state: t.state, class_name: t.class_name, bbox: b, canvas: [cv.width, cv.height], left_edge_ink: left, right_edge_ink: right, center_alpha: c[3] };
    }
    return false;
  }, { timeout: 30000, polling: 400, args: [SOURCE] });
  await shot('source-boxes');

  step('draw a line');
  await page.click('[data-test=draw-line]');
  const box = await page.$eval('img[data-test=source-frame]', (img) => { const r = img.getBoundingClientRect(); return { x: r.left, y: r.top, w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight }; });
  const at = [[0.2, 0.5], [0.8, 0.5]];
  for (const [fx, fy] of at) await page.mouse.click(box.x + fx * box.w, box.y + fy * box.h);
  results.line_expected = at.map(([fx, fy]) => [Math.round(fx * box.nw), Math.round(fy * box.nh)]);
  results.hint_after_clicks = await text(page, '[data-test=shape-hint]');
  await page.type('[data-test=shape-id]', LINE);
  await page.click('[data-test=shape-save]');
  await until(page, `the saved line ${LINE} in the list ([data-test=shape-row][data-kind=line])`,
    (id) => !!document.querySelector(`[data-test=shape-row][data-kind=line][data-id="${id}"]`) || (document.querySelector('[data-test=shape-error]')?.textContent && 'error'), { args: [LINE] });
  const shapeError = await text(page, '[data-test=shape-error]');
  if (shapeError) fail(`saving the line showed [data-test=shape-error]: ${shapeError}`);
  await sleep(400);
  await shot('source-line');
  log('done');
}, { deadlineMs: 75000 });
