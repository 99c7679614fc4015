// The inspector page's script: it polls the inspector's own JSON endpoints
// and redraws the tables. Every piece of user data (job IDs, keys, values,
// error messages) reaches the page through textContent, never innerHTML.
//
// Why polling rather than server-sent events: a poll is an ordinary short
// request, so the page holds no connection open on the server (an SSE
// stream would hold a goroutine per open tab and keep the user's
// http.Server.Shutdown waiting), it passes unchanged through the user's
// auth middleware, proxies and http.TimeoutHandler, and it reads the same
// JSON a program does. The ledger tail stays incremental: each poll asks
// only for changes after the last sequence it has (history?since=).
'use strict';
(function () {
  const root = document.getElementById('qpool');
  const pollMs = Math.max(100, Number(root.dataset.poll) || 1000);
  const canCancel = root.dataset.cancel === 'true';
  const tailLength = 20;      // ledger entries kept per entanglement
  const finishedLength = 20;  // finished jobs kept

  // el builds an element; children are elements or strings (as text).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) {
      if (k === null || k === undefined) continue;
      e.append(typeof k === 'string' || typeof k === 'number' ? document.createTextNode(String(k)) : k);
    }
    return e;
  }

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
    let body = {};
    try { body = await r.json(); } catch (_) { /* not JSON: report the status */ }
    if (!r.ok) {
      const err = new Error((body && body.error) || ('HTTP ' + r.status));
      err.status = r.status;
      throw err;
    }
    return body;
  }

  const enc = encodeURIComponent;
  const jobKey = (j) => j.pool + '\u0000' + j.id;
  const seconds = (s) => (s < 10 ? s.toFixed(1) : Math.round(s)) + ' s';

  function valueCell(v, truncated) {
    return el('td', { class: 'value' }, v, truncated ? el('span', { class: 'cut', title: 'cut at the value limit' }, '…') : null);
  }

  function fill(tbody, rows, cols, emptyText) {
    if (rows.length === 0) rows = [el('tr', {}, el('td', { colspan: String(cols), class: 'empty' }, emptyText))];
    tbody.replaceChildren(...rows);
  }

  // ---- pools
  function drawPools(pools) {
    fill(document.querySelector('#pools tbody'), pools.map((p) => el('tr', { 'data-pool': p.name },
      el('td', {}, p.name), el('td', {}, p.workers + ' / ' + p.max_workers), el('td', {}, p.running),
      el('td', {}, p.queued), el('td', {}, p.waiting), el('td', {}, seconds(p.oldest_queued_seconds)),
      el('td', {}, p.submitted), el('td', {}, p.succeeded), el('td', {}, p.failed),
      el('td', {}, p.panicked), el('td', {}, p.retried))), 11, 'no pool given to the inspector');
  }

  // ---- jobs
  let live = new Map();        // jobKey -> job, from the last poll
  const finished = [];         // newest first
  const pending = new Set();   // jobKeys whose outcome is being fetched

  function cancelButton(j) {
    const b = el('button', { type: 'button', class: 'cancel' }, 'cancel');
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const r = await fetch('jobs/' + enc(j.id) + '/cancel?pool=' + enc(j.pool),
          { method: 'POST', headers: { 'X-Qpool-Inspect': 'cancel' } });
        if (!r.ok) b.textContent = 'not cancelled';
      } catch (_) { b.textContent = 'not cancelled'; }
    });
    return b;
  }

  function drawJobs(jobs) {
    const cols = canCancel ? 6 : 5;
    fill(document.querySelector('#jobs tbody'), jobs.map((j) => el('tr', { 'data-state': j.state },
      el('td', {}, j.pool), el('td', { class: 'id' }, j.id),
      el('td', {}, el('span', { class: 'state ' + j.state }, j.state)),
      el('td', {}, j.attempt), el('td', {}, j.age_seconds === undefined ? '' : seconds(j.age_seconds)),
      canCancel ? el('td', {}, cancelButton(j)) : null)), cols, 'no live job');
  }

  function drawFinished() {
    fill(document.querySelector('#finished tbody'), finished.map((f) => el('tr', { 'data-outcome': f.outcome },
      el('td', {}, f.pool), el('td', { class: 'id' }, f.id),
      el('td', {}, el('span', { class: 'state ' + f.outcome }, f.outcome)),
      el('td', {}, f.attempt === undefined ? '' : f.attempt),
      valueCell(f.error || '', f.error_truncated))), 5, 'none seen since the page was loaded');
  }

  // A job that left the live list has finished (or the list's limit hid
  // it): ask for it by ID to learn its outcome while the pool remembers it.
  async function settle(j) {
    const k = jobKey(j);
    if (pending.has(k)) return;
    pending.add(k);
    try {
      let f;
      try {
        const got = await getJSON('jobs/' + enc(j.id) + '?pool=' + enc(j.pool));
        if (got.state !== 'done') return; // still live, beyond the limit
        f = { pool: j.pool, id: j.id, outcome: got.error ? 'failed' : 'done', attempt: got.attempt, error: got.error, error_truncated: got.error_truncated };
      } catch (e) {
        if (e.status !== 404) throw e;
        f = { pool: j.pool, id: j.id, outcome: 'finished', attempt: j.attempt, error: '(outcome no longer kept by the pool)' };
      }
      finished.unshift(f);
      finished.length = Math.min(finished.length, finishedLength);
      drawFinished();
    } catch (_) { /* try again at the next poll */ } finally { pending.delete(k); }
  }

  function updateJobs(jobs) {
    const now = new Map(jobs.map((j) => [jobKey(j), j]));
    for (const [k, j] of live) if (!now.has(k)) settle(j);
    live = now;
    drawJobs(jobs);
  }

  // ---- entanglements
  const tails = new Map(); // id -> {next, changes (newest first)}

  function entArticle(ent) {
    const t = tails.get(ent.id);
    const state = el('tbody', {}, ...ent.state.map((kv) => el('tr', {},
      el('td', { class: 'id' }, kv.key), valueCell(kv.value, kv.truncated))));
    if (ent.state.length < ent.keys) state.append(el('tr', {}, el('td', { colspan: '2', class: 'empty' }, (ent.keys - ent.state.length) + ' more keys')));
    const ledger = el('ol', { class: 'ledger' }, ...(t ? t.changes : []).map((c) => el('li', { 'data-seq': String(c.sequence) },
      el('span', { class: 'seq' }, '#' + c.sequence), ' ',
      el('time', { datetime: c.timestamp }, new Date(c.timestamp).toLocaleTimeString()), ' ',
      el('span', { class: 'id' }, c.key), ' ',
      c.deleted ? el('em', {}, 'deleted') : el('span', { class: 'value' }, c.value, c.truncated ? '…' : ''))));
    return el('article', { class: 'ent', 'data-id': ent.id },
      el('h3', {}, el('span', { class: 'id' }, ent.id), ' ',
        ent.ended ? el('span', { class: 'state ended' }, ent.ended) : null, ' ',
        el('small', {}, ent.keys + ' keys')),
      el('div', { class: 'cols' },
        el('div', {}, el('h4', {}, 'state'), el('table', { class: 'kv' }, el('thead', {}, el('tr', {}, el('th', {}, 'key'), el('th', {}, 'value'))), state)),
        el('div', {}, el('h4', {}, 'ledger tail'), ledger.children.length ? ledger : el('p', { class: 'empty' }, 'no change yet'))));
  }

  async function pollTail(ent) {
    if (ent.ended) return;
    let t = tails.get(ent.id);
    if (!t) { t = { next: 0, changes: [] }; tails.set(ent.id, t); }
    const h = await getJSON('entanglements/' + enc(ent.id) + '/history?since=' + t.next + '&limit=' + tailLength);
    for (const c of h.changes) t.changes.unshift(c);
    t.changes.length = Math.min(t.changes.length, tailLength);
    t.next = h.next;
  }

  async function updateEntanglements(ents) {
    await Promise.all(ents.map((e) => pollTail(e).catch(() => {})));
    const shown = new Set(ents.map((e) => e.id));
    for (const id of tails.keys()) if (!shown.has(id)) tails.delete(id); // gone from a source
    const box = document.getElementById('entanglements');
    if (ents.length === 0) box.replaceChildren(el('p', { class: 'empty' }, 'no entanglement given to the inspector'));
    else box.replaceChildren(...ents.map(entArticle));
  }

  // ---- the loop: one poll at a time, the next one pollMs after the end of
  // the last, so a slow server is never asked twice at once.
  const status = document.getElementById('status');
  let polls = 0;
  async function tick() {
    try {
      const [pools, jobs, ents] = await Promise.all([getJSON('pools'), getJSON('jobs'), getJSON('entanglements')]);
      drawPools(pools.pools);
      updateJobs(jobs.jobs);
      await updateEntanglements(ents.entanglements);
      polls++;
      status.textContent = 'live: updated ' + new Date().toLocaleTimeString() + ' (every ' + pollMs + ' ms)';
      status.className = 'status ok';
      root.dataset.polls = String(polls);
    } catch (e) {
      status.textContent = 'not updating: ' + e.message;
      status.className = 'status err';
    }
    setTimeout(tick, pollMs);
  }
  tick();
})();
