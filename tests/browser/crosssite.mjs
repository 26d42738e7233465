// A page on a site the server does not list (http://127.0.0.2:PORT, served by this script)
// tries everything a browser lets any page do without asking the server first: a fetch
// with a text/plain body, one with no content type, a text/plain form whose fields spell
// JSON, a URL-encoded form, and a JSON fetch (which needs a preflight). Then a page whose
// own name is made to resolve to the server (DNS rebinding: Chromium's host resolver maps
// rebind.test to 127.0.0.1) loads from the server's port and posts to it as its own origin.
// Prints what each attempt saw; tests/api/browser.rs checks the server created nothing.
// Env: BASE_URL (http://127.0.0.1:PORT), CHROMIUM, ARTIFACTS, SESSION_ID (exists).
import http from 'node:http';
import { env, log, run, until } from './lib.mjs';

const BASE = env('BASE_URL');
const SESSION = env('SESSION_ID');
const REBOUND = 'rebind.test';

// Runs in the attacking page: every outcome recorded, nothing thrown.
function pageScript() {
  const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  const out = (window.results = { origin: location.origin, attempts: {} });
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const create = (id) => JSON.stringify({ id, template: 'local_testing', sources: ['*'], devices: ['*'] });
  const note = async (name, p) => {
    try { const r = await p; out.attempts[name] = { sent: true, type: r.type, status: r.status }; } catch (e) { out.attempts[name] = { sent: false, error: String(e) }; }
  };
  const form = (id, enctype, field, value, action) => new Promise((resolve) => {
    const frame = document.createElement('iframe');
    frame.name = 'sink-' + id;
    document.body.appendChild(frame);
    const f = document.createElement('form');
    f.method = 'POST'; f.enctype = enctype; f.action = action; f.target = frame.name;
    const input = document.createElement('input');
    input.type = 'hidden'; input.name = field; input.value = value;
    f.appendChild(input);
    document.body.appendChild(f);
    const done = () => { out.attempts[id] = { sent: true, kind: 'form ' + enctype }; resolve(); };
    frame.addEventListener('load', done, { once: true });
    setTimeout(done, 4000);
    f.submit();
  });
  (async () => {
    const sessions = cfg.base + '/api/v1/sessions';
    await note('text_plain', fetch(sessions, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: create('csrf-text') }));
    await note('no_type', fetch(sessions, { method: 'POST', mode: 'no-cors', body: new Blob([create('csrf-blob')]) }));
    await note('events_text_plain', fetch(`${sessions}/${encodeURIComponent(cfg.session)}/events`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ event: 'forged', data: {} }) }));
    await note('json_cors', fetch(sessions, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: create('csrf-json') }));
    // `name=value` with the JSON split across the two: {"id":"csrf-form","pad":"="}
    await form('form_text_plain', 'text/plain', '{"id":"csrf-form","template":"local_testing","pad":"', '"}', sessions);
    await form('form_urlencoded', 'application/x-www-form-urlencoded', 'id', 'csrf-urlencoded', sessions);
    await wait(300);
    window.done = true;
  })();
}

const html = `<!doctype html><meta charset="utf-8"><title>another site</title>
<h1>A page on another site</h1>
<script>(${pageScript.toString()})();</script>`;

const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(req.url === '/' ? html : 'not found');
});
// Another loopback address: another origin, and one the default cors_origins do not list.
await new Promise((r) => server.listen(0, '127.0.0.2', r));
const pageUrl = `http://127.0.0.2:${server.address().port}/`;
log('attacking page at', pageUrl);

await run('crosssite', async ({ page, results, step, shot }) => {
  step('open the page on another site');
  const cfg = encodeURIComponent(JSON.stringify({ base: BASE, session: SESSION }));
  await page.goto(pageUrl + '#' + cfg, { waitUntil: 'domcontentloaded', timeout: 10000 });
  step('simple requests and forms');
  await until(page, 'the attempts to finish (window.done)', () => window.done === true, { timeout: 30000 });
  results.page = await page.evaluate(() => window.results);
  await shot('page');

  step('a page of a name that resolves to the server (DNS rebinding)');
  const port = new URL(BASE).port;
  const rebound = `http://${REBOUND}:${port}`;
  const answer = await page.goto(rebound + '/', { waitUntil: 'domcontentloaded', timeout: 10000 });
  results.rebound = { url: rebound, status: answer ? answer.status() : null, text: (await page.evaluate(() => document.body.innerText)).slice(0, 300) };
  // Same origin as far as the browser knows: no CORS stands in the way of this one.
  results.rebound.post = await page.evaluate(async (body) => {
    try {
      const r = await fetch('/api/v1/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      return { status: r.status, body: (await r.text()).slice(0, 300) };
    } catch (e) { return { error: String(e) }; }
  }, JSON.stringify({ id: 'csrf-rebound', template: 'local_testing' }));
  results.rebound.read = await page.evaluate(async () => {
    try { const r = await fetch('/api/config'); return { status: r.status }; } catch (e) { return { error: String(e) }; }
  });
  await shot('rebound');
}, { deadlineMs: 60000, args: [`--host-resolver-rules=MAP ${REBOUND} 127.0.0.1`] }).finally(() => server.close());
