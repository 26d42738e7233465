// Re-analysis from the dashboard, as a researcher does it: the live events of the session
// to replay into are open in one tab, the recordings page in another; the recording's
// detections are replayed through a source's current line with the rules dry-run box
// left on, then again with it off. The first tab shows the re-analysed events, and the
// rule's would-be match after the crossing only the first time.
// Env: BASE_URL, CHROMIUM, ARTIFACTS, RECORDING_ID (a recording with the source's
// detections), SOURCE_ID (to re-analyse with), TARGET_ID (an open session to replay into).
import { env, run, until, onPage } from './lib.mjs';

const BASE = env('BASE_URL');
const RECORDING = env('RECORDING_ID');
const SOURCE = env('SOURCE_ID');
const TARGET = env('TARGET_ID');

await run('reanalysis', async ({ browser, page, results, step, shot, fail }) => {
  step("the target session's live events, open");
  await page.goto(`${BASE}/#/events/${encodeURIComponent(TARGET)}`, { waitUntil: 'domcontentloaded', timeout: 15000 });
  await onPage(page, 'events');
  // Connected, so nothing published afterwards is missed.
  await until(page, 'the live feed connected ([data-test=events-conn])', () => /connected/.test(document.querySelector('[data-test=events-conn]')?.textContent || ''));
  const shown = () => page.$$eval('[data-test=event-row]', (rows) => rows.map((r) => r.dataset.event).reverse());

  const recordings = await browser.newPage();
  await recordings.setViewport({ width: 1280, height: 800 });
  const replay = async (dryRun, label) => {
    await recordings.goto(`${BASE}/#/recordings`, { waitUntil: 'domcontentloaded', timeout: 15000 });
    await onPage(recordings, 'recordings');
    const row = `[data-test=recording-row][data-id="${RECORDING}"]`;
    await until(recordings, `the recording ${RECORDING} in the table`, (s) => !!document.querySelector(s), { args: [row] });
    await recordings.click(`${row} [data-test=recording-replay]`);
    await until(recordings, 'the replay panel', () => document.querySelector('[data-test=replay-panel]')?.hidden === false);
    await until(recordings, `session ${TARGET} among the targets`, (id) => !!document.querySelector(`[data-test=replay-session] option[value="${id}"]`), { args: [TARGET] });
    await recordings.select('[data-test=replay-session]', TARGET);
    await recordings.click('[data-test=replay-rate]', { clickCount: 3 });
    await recordings.keyboard.press('Backspace');
    await recordings.type('[data-test=replay-rate]', '0');
    await until(recordings, `source ${SOURCE} among the re-analysis choices`, (id) => !!document.querySelector(`[data-test=replay-reanalyze] option[value="${id}"]`), { args: [SOURCE] });
    await recordings.select('[data-test=replay-reanalyze]', SOURCE);
    const checked = await recordings.$eval('[data-test=replay-rules]', (c) => c.checked);
    if (checked !== dryRun) await recordings.click('[data-test=replay-rules]');
    await shot(label);
    await recordings.click('[data-test=replay-submit]');
    const said = await until(recordings, 'the replay started ([data-test=replay-open-session]) or an error', () =>
      (document.querySelector('[data-test=replay-open-session]') && document.querySelector('[data-test=replay-result]').textContent.trim())
      || (!document.querySelector('[data-test=replay-error]').hidden && 'error: ' + document.querySelector('[data-test=replay-error]').textContent), { timeout: 6000 });
    if (said.startsWith('error')) fail(`starting the replay showed [data-test=replay-error]: ${said}`);
    return { checked_by_default: checked, said };
  };

  step('re-analyse with the rules dry-run (the default)');
  results.first = await replay(true, 'reanalysis-form');
  // The list draws on animation frames, which a tab in the background does not get.
  await page.bringToFront();
  await until(page, 'four events in the target session', () => document.querySelectorAll('[data-test=event-row]').length >= 4, { timeout: 10000 });
  results.after_first = await shown();
  results.matched_text = await page.$eval('[data-test=event-row][data-event=rule_matched] .data', (c) => c.title || c.textContent).catch(() => null);
  await shot('reanalysis-events');

  step('re-analyse again without the rules');
  await recordings.bringToFront();
  results.second = await replay(false, 'reanalysis-form-no-rules');
  await page.bringToFront();
  await until(page, 'three more events in the target session', () => document.querySelectorAll('[data-test=event-row]').length >= 7, { timeout: 10000 });
  await new Promise((r) => setTimeout(r, 500));
  results.after_second = await shown();
});
