// The recordings page and a session's replay card, as a user drives them: a recording
// started from the page's form (a bad glob first, whose error shows by the field), its
// event count rising in the table while events are published over REST, stopped from the
// page, its file downloaded by the browser (fetched with the token, saved from a blob),
// replayed into another session (as fast as possible: the session's view shows it
// finished; then at real time, looping: paused, moved, resumed and stopped from the view),
// and deleted.
// Env: BASE_URL, CHROMIUM, ARTIFACTS, SESSION_ID (to record; created here), TARGET_ID
// (to replay into; created here), TOKEN (optional: kept in the tab as if signed in, so
// the download must carry it).
import fs from 'node:fs';
import path from 'node:path';
import { env, log, sleep, run, until, text, onPage, rest } from './lib.mjs';

const BASE = env('BASE_URL');
const SESSION = env('SESSION_ID');
const TARGET = env('TARGET_ID');
const ARTIFACTS = env('ARTIFACTS');
const TOKEN = env('TOKEN', '');

/** The first bytes of every MCAP file. */
const MCAP_MAGIC = Buffer.from([0x89, 0x4d, 0x43, 0x41, 0x50, 0x30, 0x0d, 0x0a]);
const LABEL = 'P07 run 1';

const api = (method, p, body) => rest(BASE, method, p, body, TOKEN);

await run('recordings', async ({ page, results, step, shot, fail }) => {
  const downloads = path.join(ARTIFACTS, `downloads-${process.pid}`);
  fs.rmSync(downloads, { recursive: true, force: true });
  fs.mkdirSync(downloads, { recursive: true });
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads, eventsEnabled: true });
  const finished = [];
  cdp.on('Browser.downloadProgress', (e) => { if (e.state === 'completed' || e.state === 'canceled') finished.push(e.state); });
  // Delete asks for a confirmation: the user says yes.
  page.on('dialog', (d) => { results.dialog = d.message(); d.accept(); });

  step('sessions over REST');
  for (const id of [SESSION, TARGET]) {
    const made = await api('POST', '/api/v1/sessions', { id, template: 'local_testing' });
    if (made.status !== 201) fail(`POST /api/v1/sessions ${id} answered ${made.status}: ${JSON.stringify(made.body)}`);
  }

  step('recordings page');
  if (TOKEN) await page.evaluateOnNewDocument((t) => sessionStorage.setItem('synopticon.token', t), TOKEN);
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded', timeout: 15000 });
  await onPage(page, 'overview');
  await page.click('[data-test=nav-recordings]');
  await onPage(page, 'recordings');
  await until(page, `session ${SESSION} in the form's session list ([data-test=rec-session])`,
    (id) => !!document.querySelector(`[data-test=rec-session] option[value="${id}"]`), { args: [SESSION], timeout: 6000 });
  results.empty_list = await text(page, '.card .empty');
  await page.select('[data-test=rec-session]', SESSION);

  step('start a recording with a bad glob');
  await page.type('[data-test=rec-events]', 'bad glob!');
  await page.click('[data-test=rec-submit]');
  results.bad_events_error = await until(page, 'an error under the events field ([data-test=rec-error-events] non-empty)',
    () => document.querySelector('[data-test=rec-error-events]')?.textContent.trim() || false, { timeout: 5000 });
  results.recordings_after_bad = ((await api('GET', '/api/v1/recordings')).body?.recordings || []).length;
  await shot('bad-glob');

  step('start a recording');
  await page.click('[data-test=rec-events]', { clickCount: 3 });
  await page.keyboard.press('Backspace');
  await page.type('[data-test=rec-events]', 'study_*');
  await page.type('[data-test=rec-label]', LABEL);
  await page.click('[data-test=rec-form] details > summary');
  await page.type('[data-test=rec-metadata]', 'participant=P07\ncondition=B');
  await page.click('[data-test=rec-submit]');
  const rowSel = await until(page, `a recording of ${SESSION} in the table ([data-test=recording-row][data-session=${SESSION}]) or a form error`, (s) => {
    const row = document.querySelector(`[data-test=recording-row][data-session="${s}"]`);
    if (row) return `[data-test=recording-row][data-id="${row.dataset.id}"]`;
    const err = document.querySelector('[data-test=rec-error]');
    return err && !err.hidden && 'error: ' + err.textContent;
  }, { args: [SESSION], timeout: 6000 });
  if (rowSel.startsWith('error')) fail(`starting the recording showed [data-test=rec-error]: ${rowSel}`);
  results.rid = await page.$eval(rowSel, (r) => r.dataset.id);
  results.events_error_after_success = await text(page, '[data-test=rec-error-events]');
  results.row_state = await page.$eval(rowSel, (r) => r.dataset.state);
  results.row_text = await page.$eval(rowSel, (r) => r.textContent);
  results.recordings_in_session_status = (await api('GET', `/api/v1/sessions/${SESSION}`)).body?.recordings;

  step('the event count rises as events are published');
  const countIs = (want) => until(page, `${want} events in the row ([data-test=recording-events])`, (s, w) => {
    const t = document.querySelector(`${s} [data-test=recording-events]`)?.textContent;
    return t === w && t;
  }, { args: [rowSel, want], timeout: 8000 }).catch(async (e) => {
    results.count_at_timeout = await text(page, `${rowSel} [data-test=recording-events]`);
    throw e;
  });
  results.counts_seen = [await countIs('0')];
  const publish = async (events) => {
    const r = await api('POST', `/api/v1/sessions/${SESSION}/events`, events);
    if (r.status !== 202) fail(`POST events answered ${r.status}: ${JSON.stringify(r.body)}`);
  };
  // The noise does not match study_*: not recorded.
  await publish([...Array.from({ length: 5 }, (_, i) => ({ event: 'study_tick', data: { i } })), { event: 'noise', data: {} }, { event: 'noise', data: {} }]);
  results.counts_seen.push(await countIs('5'));
  await publish(Array.from({ length: 7 }, (_, i) => ({ event: 'study_tock', data: { i } })));
  results.counts_seen.push(await countIs('12'));
  await shot('recording');

  step('stop it from the page');
  await page.click(`${rowSel} [data-test=recording-stop]`);
  results.stopped_state = await until(page, 'the row to say stopped (data-state)', (s) => document.querySelector(s)?.dataset.state === 'stopped' && 'stopped',
    { args: [rowSel], timeout: 8000 });
  const info = (await api('GET', `/api/v1/recordings/${results.rid}`)).body;
  results.over_rest = info;
  results.stop_hidden = await page.$eval(rowSel, (r) => !r.querySelector('[data-test=recording-stop]'));

  step('download its file');
  await page.click(`${rowSel} [data-test=recording-download]`);
  let file = null;
  for (const t0 = Date.now(); !file && Date.now() - t0 < 10000; await sleep(100)) {
    const names = fs.readdirSync(downloads).filter((n) => !n.endsWith('.crdownload'));
    if (finished.includes('completed') && names.length) file = path.join(downloads, names[0]);
  }
  if (!file) fail(`no completed download in ${downloads} within 10 s (progress events: ${JSON.stringify(finished)}; files: ${fs.readdirSync(downloads)})`);
  const bytes = fs.readFileSync(file);
  results.download = { file: path.basename(file), path: file, size: bytes.length, magic: bytes.subarray(0, 8).equals(MCAP_MAGIC), head: bytes.subarray(0, 8).toString('hex') };
  results.download_status = await until(page, 'the download in the status line', () => document.querySelector('[data-test=status]')?.textContent.trim() || false, { timeout: 3000 });

  // Replays the recording into TARGET from its row's "Replay into…" panel.
  const replay = async (rate, loop, label) => {
    await page.click(`${rowSel} [data-test=recording-replay]`);
    await until(page, 'the replay panel ([data-test=replay-panel] shown)', () => document.querySelector('[data-test=replay-panel]')?.hidden === false);
    await until(page, `session ${TARGET} among the replay's targets`, (id) => !!document.querySelector(`[data-test=replay-session] option[value="${id}"]`), { args: [TARGET] });
    await page.select('[data-test=replay-session]', TARGET);
    await page.click('[data-test=replay-rate]', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    await page.type('[data-test=replay-rate]', String(rate));
    if (loop !== await page.$eval('[data-test=replay-loop]', (c) => c.checked)) await page.click('[data-test=replay-loop]');
    if (label) await shot(label);
    await page.click('[data-test=replay-submit]');
    const said = await until(page, 'a link to the session played into ([data-test=replay-open-session]) or an error', () =>
      (document.querySelector('[data-test=replay-open-session]') && document.querySelector('[data-test=replay-result]').textContent.trim())
      || (!document.querySelector('[data-test=replay-error]').hidden && 'error: ' + document.querySelector('[data-test=replay-error]').textContent), { timeout: 6000 });
    if (said.startsWith('error')) fail(`starting the replay showed [data-test=replay-error]: ${said}`);
    return said;
  };
  const view = () => page.evaluate(() => {
    const t = (s) => document.querySelector(s)?.textContent.trim() ?? null;
    return { state: t('[data-test=replay-state]'), position: t('[data-test=replay-position]'), played: t('[data-test=replay-played]'), recording: t('[data-test=replay-recording]'), meta: t('[data-test=replay-meta]') };
  });
  const stateIs = (want, timeout = 8000) => until(page, `the replay card to say ${want} ([data-test=replay-state])`,
    (w) => document.querySelector('[data-test=replay-state]')?.textContent.trim() === w, { args: [want], timeout });

  step('replay as fast as possible into the other session');
  results.replay_result = await replay(0, false, 'replay-panel');
  await page.click('[data-test=replay-open-session]');
  await onPage(page, 'session');
  await stateIs('finished', 10000);
  results.replay_finished = await view();
  results.target_after_first_replay = (await api('GET', `/api/v1/sessions/${TARGET}`)).body;
  await page.$eval('[data-test=session-replay]', (e) => e.closest('.card').scrollIntoView({ block: 'center' }));
  await shot('session-replay');

  step('replay at real time, looping, and drive it from the session view');
  await page.click('[data-test=nav-recordings]');
  await onPage(page, 'recordings');
  await until(page, 'the recording row', (s) => !!document.querySelector(s), { args: [rowSel] });
  results.replay_loop_result = await replay(1, true);
  await page.click('[data-test=replay-open-session]');
  await onPage(page, 'session');
  await stateIs('playing');
  const states = [(await view()).state];
  await page.click('[data-test=replay-pause]');
  await stateIs('paused', 4000);
  states.push('paused');
  results.paused_over_rest = (await api('GET', `/api/v1/sessions/${TARGET}/replay`)).body?.state;
  const atPause = (await api('GET', `/api/v1/sessions/${TARGET}/replay`)).body?.played;
  await sleep(1000);
  const later = (await api('GET', `/api/v1/sessions/${TARGET}/replay`)).body?.played;
  results.played_while_paused = [atPause, later];
  results.resume_enabled_while_paused = await page.$eval('[data-test=replay-resume]', (b) => !b.disabled);
  results.pause_enabled_while_paused = await page.$eval('[data-test=replay-pause]', (b) => !b.disabled);
  await page.click('[data-test=replay-seek]', { clickCount: 3 });
  await page.keyboard.press('Backspace');
  await page.type('[data-test=replay-seek]', '0');
  await page.click('[data-test=replay-seek-go]');
  results.position_after_seek = await until(page, 'the position to read 0.0 s after the seek', () => {
    const t = document.querySelector('[data-test=replay-position]')?.textContent.trim();
    return t?.startsWith('0.0 s') && t;
  }, { timeout: 4000 });
  results.position_over_rest_after_seek = (await api('GET', `/api/v1/sessions/${TARGET}/replay`)).body?.position_s;
  await shot('session-replay-paused');
  await page.click('[data-test=replay-resume]');
  await stateIs('playing', 4000);
  states.push('playing');
  await page.click('[data-test=replay-stop]');
  await stateIs('stopped', 4000);
  states.push('stopped');
  results.control_states = states;
  results.replay_stopped = await view();
  results.stopped_over_rest = (await api('GET', `/api/v1/sessions/${TARGET}/replay`)).body;
  results.controls_after_stop = await page.$$eval('[data-test=session-replay] button, [data-test=session-replay] input', (els) => els.filter((e) => !e.disabled).map((e) => e.dataset.test));

  step('delete the recording');
  await page.click('[data-test=nav-recordings]');
  await onPage(page, 'recordings');
  await until(page, 'the recording row', (s) => !!document.querySelector(s), { args: [rowSel] });
  await page.click(`${rowSel} [data-test=recording-delete]`);
  await until(page, 'the row to go', (s) => !document.querySelector(s), { args: [rowSel], timeout: 6000 });
  results.after_delete = (await api('GET', `/api/v1/recordings/${results.rid}`)).status;
  log('done');
}, { deadlineMs: 75000 });
