// The dashboard of a production server (authentication on): the token prompt, a wrong
// token refused, a viewer token read-only (no control can change anything, and no write
// request leaves the page), then an admin token creating a session.
// Env: BASE_URL, CHROMIUM, ARTIFACTS, ADMIN_TOKEN, VIEWER_TOKEN, WRONG_TOKEN,
// SESSION_ID (exists, with a paused replay), SOURCE_ID (exists), VIEWER_SESSION_ID (the
// viewer tries to create it), ADMIN_SESSION_ID (the admin creates it), RECORDING_ID (a
// stopped recording), RUNNING_RECORDING_ID (a running one).
import { env, sleep, run, until, text, onPage } from './lib.mjs';

const BASE = env('BASE_URL');
const ADMIN = env('ADMIN_TOKEN');
const VIEWER = env('VIEWER_TOKEN');
const WRONG = env('WRONG_TOKEN');
const SESSION = env('SESSION_ID');
const SOURCE = env('SOURCE_ID');
const VIEWER_SESSION = env('VIEWER_SESSION_ID');
const ADMIN_SESSION = env('ADMIN_SESSION_ID');
const RECORDING = env('RECORDING_ID');
const RUNNING_RECORDING = env('RUNNING_RECORDING_ID');

const modalShown = (page) => page.$eval('[data-test=token-modal]', (m) => !m.hidden);

await run('auth', async ({ page, results, step, shot, fail }) => {
  // Every request that could change something, with the token it carried.
  const writes = [];
  let phase = 'start';
  page.on('request', (r) => {
    if (!['GET', 'HEAD', 'OPTIONS'].includes(r.method()) && r.url().startsWith(BASE)) {
      const auth = r.headers().authorization || '';
      writes.push({ phase, method: r.method(), url: r.url().slice(BASE.length), token: auth === 'Bearer ' + VIEWER ? 'viewer' : auth === 'Bearer ' + ADMIN ? 'admin' : auth ? 'other' : 'none' });
    }
  });
  const signIn = async (token) => {
    await page.click('[data-test=token-input]', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    await page.type('[data-test=token-input]', token);
    await page.click('[data-test=token-submit]');
  };

  step('token prompt');
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded', timeout: 15000 });
  await until(page, 'the token prompt ([data-test=token-modal] shown)', () => document.querySelector('[data-test=token-modal]')?.hidden === false);
  await shot('prompt');

  step('wrong token');
  phase = 'wrong';
  await signIn(WRONG);
  results.wrong_token_message = await until(page, 'a refusal message ([data-test=token-error]) with the prompt still shown',
    () => !document.querySelector('[data-test=token-modal]').hidden && document.querySelector('[data-test=token-error]').textContent.trim(), { timeout: 5000 });
  await sleep(500);
  results.prompt_after_wrong = await modalShown(page);
  await shot('wrong-token');

  step('viewer token');
  phase = 'viewer';
  await signIn(VIEWER);
  await until(page, 'the prompt to close and body.readonly', () => document.querySelector('[data-test=token-modal]').hidden && document.body.classList.contains('readonly'), { timeout: 5000 });
  results.viewer_role_text = await text(page, '[data-test=role]');
  await onPage(page, 'overview');
  results.viewer_health = await until(page, 'the health pill', () => document.querySelector('[data-test=overview-health] .pill')?.textContent.trim() || false);
  await shot('viewer-overview');

  step('viewer: sessions page');
  await page.click('[data-test=nav-sessions]');
  await onPage(page, 'sessions');
  await until(page, `the row of session ${SESSION}`, (id) => !!document.querySelector(`[data-test=session-row][data-id="${id}"]`), { args: [SESSION] });
  // Every control that writes: absent, hidden or disabled.
  const enabledWriteControls = () => page.$$eval('button.mut, [data-test=new-session-submit], [data-test=new-session-validate], [data-test=session-close], [data-test=distributor-enable], [data-test=distributor-disable], [data-test=distributor-apply], [data-test=routing-save], [data-test=draw-line], [data-test=draw-zone], [data-test=shape-save], [data-test=shape-delete], input.mut, [data-test=rec-submit], [data-test=recording-stop], [data-test=recording-delete], [data-test=recording-replay], [data-test=replay-pause], [data-test=replay-resume], [data-test=replay-stop], [data-test=replay-seek-go]',
    (els) => els.filter((e) => !e.disabled && !e.hidden && e.offsetParent !== null).map((e) => e.dataset.test || e.textContent.trim()));
  results.viewer_enabled_controls = { sessions: await enabledWriteControls() };
  // Try anyway: the id, the disabled button, Enter in the field.
  await page.type('[data-test=new-session-id]', VIEWER_SESSION);
  await page.click('[data-test=new-session-submit]').catch(() => {});
  await page.focus('[data-test=new-session-id]');
  await page.keyboard.press('Enter');
  await sleep(800);
  await shot('viewer-sessions');

  step('viewer: session page');
  await page.click(`[data-test=session-row][data-id="${SESSION}"] a[href^="#/sessions/"]`);
  await onPage(page, 'session');
  await until(page, 'the distributor cards', () => document.querySelectorAll('[data-test=distributor]').length > 0);
  results.viewer_replay_state = await until(page, 'the replay card ([data-test=replay-state])', () => document.querySelector('[data-test=replay-state]')?.textContent.trim() || false);
  results.viewer_enabled_controls.session = await enabledWriteControls();
  results.viewer_disabled_replay_controls = await page.$$eval('[data-test=session-replay] button, [data-test=session-replay] input, [data-test=session-recording-stop]',
    (els) => els.filter((e) => e.disabled).map((e) => e.dataset.test));
  await page.click('[data-test=distributor][data-kind=sse] [data-test=distributor-disable]').catch(() => {});
  await page.click('[data-test=session-close]').catch(() => {});
  await page.click('[data-test=replay-resume]').catch(() => {});
  await sleep(500);
  await shot('viewer-session');

  step('viewer: recordings page');
  await page.click('[data-test=nav-recordings]');
  await onPage(page, 'recordings');
  const rowOf = (id) => `[data-test=recording-row][data-id="${id}"]`;
  await until(page, 'both recordings in the table', (a, b) => !!document.querySelector(a) && !!document.querySelector(b), { args: [rowOf(RECORDING), rowOf(RUNNING_RECORDING)] });
  results.viewer_recordings = await page.$$eval('[data-test=recording-row]', (rs) => rs.map((r) => r.dataset.id));
  results.viewer_enabled_controls.recordings = await enabledWriteControls();
  results.viewer_download_enabled = await page.$eval(`${rowOf(RECORDING)} [data-test=recording-download]`, (a) => !a.disabled && a.offsetParent !== null);
  await page.click(`${rowOf(RUNNING_RECORDING)} [data-test=recording-stop]`).catch(() => {});
  await page.click(`${rowOf(RECORDING)} [data-test=recording-replay]`).catch(() => {});
  await page.click('[data-test=rec-submit]').catch(() => {});
  // Reading is allowed: the download is fetched with the viewer's token.
  await page.click(`${rowOf(RECORDING)} [data-test=recording-download]`);
  results.viewer_download_status = await until(page, 'the download in the status line', () => {
    const t = document.querySelector('[data-test=status]')?.textContent.trim();
    return /download/.test(t || '') && t;
  }, { timeout: 5000 });
  await sleep(300);
  await shot('viewer-recordings');

  step('viewer: source page');
  await page.goto(`${BASE}/#/sources/${encodeURIComponent(SOURCE)}`, { waitUntil: 'domcontentloaded' });
  await onPage(page, 'source');
  results.viewer_enabled_controls.source = await enabledWriteControls();
  await page.click('[data-test=draw-line]').catch(() => {});
  await shot('viewer-source');
  results.viewer_writes = writes.filter((w) => w.phase === 'viewer');

  step('sign out');
  phase = 'signed-out';
  await page.click('[data-test=sign-out]');
  await until(page, 'the token prompt after signing out', () => document.querySelector('[data-test=token-modal]')?.hidden === false, { timeout: 5000 });

  step('admin token');
  phase = 'admin';
  await signIn(ADMIN);
  await until(page, 'the prompt to close, without body.readonly', () => document.querySelector('[data-test=token-modal]').hidden && !document.body.classList.contains('readonly') && document.querySelector('[data-test=role]').textContent.trim(), { timeout: 5000 });
  results.admin_role_text = await text(page, '[data-test=role]');
  await page.goto(`${BASE}/#/sessions`, { waitUntil: 'domcontentloaded' });
  await onPage(page, 'sessions');
  await until(page, 'the template list', () => !!document.querySelector('[data-test=new-session-template] option[value=local_testing]'));
  if (await page.$eval('[data-test=new-session-submit]', (b) => b.disabled)) fail('Create session is disabled for the admin');
  await page.select('[data-test=new-session-template]', 'local_testing');
  await page.type('[data-test=new-session-id]', ADMIN_SESSION);
  await page.click('[data-test=new-session-submit]');
  await until(page, `the row of session ${ADMIN_SESSION}`, (id) => !!document.querySelector(`[data-test=session-row][data-id="${id}"]`) || document.querySelector('[data-test=form-error]:not([hidden])')?.textContent,
    { args: [ADMIN_SESSION], timeout: 5000 });
  const formError = await page.$eval('[data-test=form-error]', (e) => (e.hidden ? '' : e.textContent.trim()));
  if (formError) fail(`creating a session as admin showed [data-test=form-error]: ${formError}`);
  await shot('admin-sessions');
  results.admin_writes = writes.filter((w) => w.phase === 'admin');
}, { deadlineMs: 60000 });
