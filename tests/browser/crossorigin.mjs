// A page on another origin (this script serves it on a loopback port of its own) calls the
// Synopticon server the way a web app would: `fetch` with an Authorization header (so a
// CORS preflight), an `EventSource` and a `WebSocket` on a session, then posts an event and
// waits for both feeds to carry it. Prints what worked; tests/api/browser.rs decides what
// should have.
// Env: BASE_URL, CHROMIUM, ARTIFACTS, SESSION_ID (exists, websocket and sse enabled),
// TOKEN (optional: production), LABEL (names the screenshot).
import http from 'node:http';
import { env, log, run, until } from './lib.mjs';

const BASE = env('BASE_URL');
const SESSION = env('SESSION_ID');
const TOKEN = env('TOKEN', '');
const LABEL = env('LABEL', 'page');

// Runs in the page: every outcome recorded, nothing thrown.
function pageScript() {
  const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  const out = (window.results = { origin: location.origin });
  const show = () => { document.getElementById('out').textContent = JSON.stringify(out, null, 2); };
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const withDeadline = (p, ms, what) => Promise.race([p, wait(ms).then(() => ({ timeout: what }))]);
  const sessionUrl = `${cfg.base}/api/v1/sessions/${encodeURIComponent(cfg.session)}`;
  // A bearer token (any, without authentication) makes every fetch preflighted.
  const headers = { Authorization: 'Bearer ' + (cfg.token || 'browser-cross-origin') };
  const seen = { ws: false, sse: false };
  (async () => {
    try {
      const res = await fetch(sessionUrl, { headers });
      out.fetch = { ok: res.ok, status: res.status, id: (await res.json()).id };
    } catch (e) { out.fetch = { ok: false, error: String(e) }; }
    show();

    const q = cfg.token ? `?access_token=${encodeURIComponent(cfg.token)}` : '';
    const es = new EventSource(`${sessionUrl}/sse${q}`);
    const onEv = (m) => { try { if (JSON.parse(m.data).event === 'cross_origin_ping' || m.type === 'cross_origin_ping') seen.sse = true; } catch { if (m.type === 'cross_origin_ping') seen.sse = true; } };
    es.addEventListener('message', onEv);
    es.addEventListener('cross_origin_ping', onEv);
    out.eventsource = await withDeadline(new Promise((resolve) => {
      es.onopen = () => resolve({ ok: true });
      es.onerror = () => { resolve({ ok: false, readyState: es.readyState }); if (es.readyState === EventSource.CLOSED) es.close(); };
    }), 5000, 'eventsource');
    show();

    const wsUrl = sessionUrl.replace(/^http/, 'ws') + '/ws';
    const ws = cfg.token ? new WebSocket(wsUrl, ['synopticon', 'bearer.' + cfg.token]) : new WebSocket(wsUrl);
    ws.onmessage = (m) => { try { if (JSON.parse(m.data).event === 'cross_origin_ping') seen.ws = true; } catch { /* not JSON */ } };
    out.websocket = await withDeadline(new Promise((resolve) => {
      ws.onopen = () => resolve({ ok: true, protocol: ws.protocol });
      ws.onclose = (c) => resolve({ ok: false, code: c.code, reason: c.reason });
    }), 5000, 'websocket');
    show();

    try {
      const res = await fetch(`${sessionUrl}/events`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify({ event: 'cross_origin_ping', data: { from: location.origin } }) });
      out.post = { ok: res.ok, status: res.status };
    } catch (e) { out.post = { ok: false, error: String(e) }; }
    if (out.post.ok) {
      for (let i = 0; i < 50 && !(seen.ws && seen.sse); i++) await wait(100);
    }
    out.received = { ...seen };
    es.close();
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    show();
    window.done = true;
  })();
}

const html = `<!doctype html><meta charset="utf-8"><title>another origin</title>
<h1>A page on another origin</h1><pre id="out">running…</pre>
<script>(${pageScript.toString()})();</script>`;

const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(req.url === '/' ? html : 'not found');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pageUrl = `http://127.0.0.1:${server.address().port}/`;
log('test page at', pageUrl);

await run(`crossorigin-${LABEL}`, async ({ page, results, step, shot }) => {
  step('open the page on another origin');
  results.page_origin = new URL(pageUrl).origin;
  const cfg = encodeURIComponent(JSON.stringify({ base: BASE, session: SESSION, token: TOKEN }));
  await page.goto(pageUrl + '#' + cfg, { waitUntil: 'domcontentloaded', timeout: 10000 });
  step('fetch, EventSource, WebSocket');
  await until(page, 'the page to finish (window.done)', () => window.done === true, { timeout: 30000 });
  results.page = await page.evaluate(() => window.results);
  await shot('page');
}, { deadlineMs: 50000 }).finally(() => server.close());
