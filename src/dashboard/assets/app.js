// forklb live dashboard.
//
// Polls `?json` (same route, relative URL), derives rates from the deltas of
// the cumulative counters between polls and latency percentiles from the
// deltas of the duration histograms over the last minute, and keeps the DOM
// in place between polls (keyed by upstream and server name) so that a
// focused input, the scroll position and the collapsed state survive.
//
// The page runs under a strict CSP: no inline script or style, no eval.
// Everything data-derived goes into the DOM with textContent, never as HTML.
'use strict';

(function () {
  // ---- settings ----------------------------------------------------------

  const LATENCY_WINDOW_MS = 60 * 1000; // p50/p99 over the last minute
  const CHART_WINDOW_MS = 5 * 60 * 1000; // request-rate charts: 5 minutes
  const COLLAPSE_ABOVE = 12; // more upstreams than this start collapsed

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const hashParams = new URLSearchParams(location.hash.slice(1));

  /** `?refresh=N` (or `#refresh=N`; seconds, 0 = paused) from the page URL, else 2 s. */
  function initialInterval() {
    const raw = params.get('refresh') ?? hashParams.get('refresh');
    if (raw === null) return 2;
    const n = Number(raw);
    return Number.isFinite(n) && n >= 0 && n <= 3600 ? n : 2;
  }

  // ---- state -------------------------------------------------------------

  let intervalSec = initialInterval();
  let timer = null; // next scheduled poll
  let polling = false; // a poll is in flight
  let pollAgain = false; // someone asked for a poll while one was in flight
  let polls = 0; // successful polls, exposed as body[data-polls] for tests
  let prev = null; // the previous JSON document (for deltas)
  let token = null; // newest admin token (each poll carries a fresh one)
  let admin = false;
  let defaultOpen = true; // decided from the upstream count on first data

  const open = new Map(); // upstream name -> explicitly expanded?
  const views = new Map(); // upstream name -> view (DOM + references)
  const durHist = new Map(); // entity key -> [{t, d}] duration snapshots
  const rateSeries = new Map(); // upstream name -> [{t, v}] req/s samples
  let instanceSeries = [];

  // ---- small helpers -----------------------------------------------------

  /** Creates an element: h('td', {class: 'n', 'data-label': 'req/s'}, child...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /** Sets text only when it changed (avoids needless layout work). */
  function setText(el, s) {
    if (el.textContent !== s) el.textContent = s;
  }

  function setTitle(el, s) {
    if (el.title !== s) el.title = s;
  }

  function setClass(el, cls) {
    if (el.className !== cls) el.className = cls;
  }

  /** Rate between two cumulative counter values; null on reset or no data. */
  function rate(cur, old, dtSec) {
    if (old === undefined || old === null || cur === undefined || dtSec <= 0) return null;
    if (cur < old) return null; // counter reset (restart): no meaningful delta
    return (cur - old) / dtSec;
  }

  function fmtRate(x) {
    if (x === null || x === undefined) return '–';
    if (x === 0) return '0';
    if (x < 0.1) return '<0.1';
    if (x < 10) return x.toFixed(1);
    if (x < 10000) return String(Math.round(x));
    return (x / 1000).toFixed(x < 100000 ? 1 : 0) + 'k';
  }

  // One formatter: toLocaleString builds a new one per call (slow x 300 rows).
  const intFormat = new Intl.NumberFormat('en-US');

  function fmtInt(n) {
    if (n === null || n === undefined) return '–';
    return n < 1000 ? String(n) : intFormat.format(n);
  }

  /** Large counts shortened for the KPI tiles: 66.9M. */
  function fmtCompact(n) {
    if (n === null || n === undefined) return '–';
    if (n < 1e6) return fmtInt(n);
    if (n < 1e9) return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + 'M';
    return (n / 1e9).toFixed(n < 1e10 ? 2 : 1) + 'G';
  }

  function fmtMs(q) {
    if (!q) return '–';
    const ms = q.ms;
    // A bucket's bound, e.g. "<5 ms": no decimals that would suggest precision.
    if (q.under) return ms < 1000 ? '<' + Math.round(ms) + ' ms' : '<' + ms / 1000 + ' s';
    const prefix = q.over ? '>' : '';
    if (ms < 10) return prefix + ms.toFixed(1) + ' ms';
    if (ms < 1000) return prefix + Math.round(ms) + ' ms';
    return prefix + (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  }

  function fmtAge(sec) {
    if (sec === null || sec === undefined) return '–';
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return sec + 's';
    if (sec < 3600) return Math.floor(sec / 60) + 'm ' + (sec % 60) + 's';
    if (sec < 86400) return Math.floor(sec / 3600) + 'h ' + Math.floor((sec % 3600) / 60) + 'm';
    return Math.floor(sec / 86400) + 'd ' + Math.floor((sec % 86400) / 3600) + 'h';
  }


  /** CSS class of a `show stat` status string (colour coding). */
  function statusClass(s) {
    if (typeof s !== 'string') return 'st st-none';
    if (s.startsWith('MAINT')) return 'st st-maint';
    // DRAIN, NOLB (health stopping), a PAUSED listener: taking no new work.
    if (s.startsWith('DRAIN') || s.startsWith('NOLB') || s === 'PAUSED') return 'st st-drain';
    if (s === 'UP' || s === 'OPEN') return 'st st-up';
    if (s === 'DOWN' || s === 'STOP') return 'st st-down';
    if (s === 'no check') return 'st st-nocheck';
    if (/^(UP|DOWN) \d+\/\d+/.test(s)) return 'st st-trans'; // going down / coming up
    return 'st st-none';
  }

  // ---- latency percentiles -------------------------------------------------

  /**
   * Quantile q of a histogram (`counts[i]` requests took at most
   * `bounds[i]` ms and more than `bounds[i-1]`; the last bucket is +Inf),
   * linearly interpolated inside its bucket. Returns {ms, over, under} or
   * null without data. over: in the +Inf bucket, only a lower bound is
   * known. under: in the first bucket, only its upper bound is shown -
   * interpolating inside [0, 5 ms] would say 2.5 ms for answers that take
   * 0.2 ms on a LAN.
   */
  function quantile(counts, bounds, q) {
    let total = 0;
    for (const c of counts) total += c;
    if (total <= 0) return null;
    const target = q * total;
    let acc = 0;
    for (let i = 0; i < counts.length; i++) {
      const c = counts[i];
      if (c > 0 && acc + c >= target) {
        if (i === 0 && bounds.length > 0) return { ms: bounds[0], over: false, under: true };
        const lo = i === 0 ? 0 : bounds[i - 1];
        if (i >= bounds.length) return { ms: lo, over: true };
        const hi = bounds[i];
        return { ms: lo + (hi - lo) * ((target - acc) / c), over: false };
      }
      acc += c;
    }
    return null;
  }

  /**
   * Records the duration histogram of `key` at time t and returns the
   * histogram of the requests of (about) the last minute: the current
   * counts minus the oldest snapshot still inside the window.
   */
  function windowDurations(key, t, durations) {
    if (!Array.isArray(durations)) return null;
    let hist = durHist.get(key);
    if (!hist) {
      hist = [];
      durHist.set(key, hist);
    }
    hist.push({ t, d: durations.slice() });
    // Keep one snapshot at or before the window start as the baseline.
    while (hist.length > 2 && hist[1].t <= t - LATENCY_WINDOW_MS) hist.shift();
    const base = hist[0].d;
    if (hist.length < 2 || base.length !== durations.length) return null;
    const diff = durations.map((c, i) => c - base[i]);
    if (diff.some((c) => c < 0)) {
      // Counters went backwards (restart): start over from now.
      hist.splice(0, hist.length - 1);
      return null;
    }
    return diff;
  }

  function percentiles(key, t, durations, bounds) {
    const d = windowDurations(key, t, durations);
    if (!d) return { p50: null, p99: null };
    return { p50: quantile(d, bounds, 0.5), p99: quantile(d, bounds, 0.99) };
  }

  // ---- charts --------------------------------------------------------------

  function pushSample(series, t, v) {
    if (v !== null) series.push({ t, v });
    while (series.length && series[0].t < t - CHART_WINDOW_MS) series.shift();
  }

  // Chart colours come from the stylesheet's custom properties, read once
  // (getComputedStyle per chart would force a style recalculation each).
  const colours = {};
  function cssVar(name) {
    if (!(name in colours)) {
      colours[name] = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    }
    return colours[name];
  }

  /**
   * Draws `series` (req/s samples) on `canvas` over the chart window ending
   * at `now`; `axis` adds a max label and grid lines (the big chart).
   */
  function drawChart(canvas, series, now, axis) {
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (w === 0 || hgt === 0) return; // hidden (collapsed or filtered out)
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    let max = 0;
    for (const p of series) max = Math.max(max, p.v);
    const top = axis ? 14 : 2;
    const scale = max > 0 ? (hgt - top - 1) / (max * 1.1) : 0;
    const x = (t) => w - ((now - t) / CHART_WINDOW_MS) * w;
    const y = (v) => hgt - 1 - v * scale;
    if (axis) {
      ctx.strokeStyle = cssVar('--grid');
      ctx.lineWidth = 1;
      for (let i = 1; i <= 4; i++) {
        const gx = Math.round((w * i) / 5) + 0.5;
        ctx.beginPath();
        ctx.moveTo(gx, top);
        ctx.lineTo(gx, hgt);
        ctx.stroke();
      }
      ctx.fillStyle = cssVar('--muted');
      ctx.font = '11px system-ui, sans-serif';
      ctx.textBaseline = 'top';
      ctx.fillText('req/s · max ' + fmtRate(max), 4, 1);
      ctx.textAlign = 'right';
      ctx.fillText('−5 min … now', w - 4, 1);
      ctx.textAlign = 'left';
    }
    if (series.length < 2) return;
    const line = cssVar('--accent');
    ctx.beginPath();
    ctx.moveTo(x(series[0].t), y(series[0].v));
    for (const p of series) ctx.lineTo(x(p.t), y(p.v));
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = line;
    ctx.stroke();
    ctx.lineTo(x(series[series.length - 1].t), hgt);
    ctx.lineTo(x(series[0].t), hgt);
    ctx.closePath();
    ctx.fillStyle = cssVar('--accent-fill');
    ctx.fill();
  }

  // ---- admin actions ---------------------------------------------------------

  function showError(text) {
    setText($('action-error-text'), text);
    $('action-error').hidden = false;
  }

  /**
   * POSTs one change (`state` ready/drain/maint or `weight` N) for server
   * UP/SRV with the newest token; on success polls at once, on failure shows
   * the server's error text.
   */
  async function act(action, up, srv, value, control, onSuccess) {
    const url = '?action=' + encodeURIComponent(action) +
      '&server=' + encodeURIComponent(up + '/' + srv) +
      '&value=' + encodeURIComponent(value);
    control.disabled = true;
    try {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'X-Forklb-Token': token || '' },
        cache: 'no-store',
        credentials: 'same-origin',
      });
      let body = null;
      try {
        body = await r.json();
      } catch (_) {
        body = null;
      }
      if (!r.ok || !body || body.ok !== true) {
        throw new Error((body && body.error) || 'HTTP ' + r.status);
      }
      $('action-error').hidden = true;
      if (onSuccess) onSuccess();
      pollNow();
    } catch (e) {
      showError(`${action} ${up}/${srv} → ${value}: ${e.message}`);
    } finally {
      control.disabled = false;
    }
  }

  // ---- views -----------------------------------------------------------------

  const SERVER_COLUMNS = [
    ['server', ''], ['address', 'addr'], ['status', ''], ['weight', 'n'], ['in flight', 'n'],
    ['queue', 'n'], ['req/s', 'n'], ['4xx/s', 'n'], ['5xx/s', 'n'], ['p50', 'n'], ['p99', 'n'],
    ['last check', 'chk'], ['changed', 'n'],
  ];

  /** One table row for server `s` of upstream `up` (cells kept for updates). */
  function serverRow(up, s) {
    const cells = {};
    const td = (key, label, cls) => (cells[key] = h('td', { class: cls, 'data-label': label }));
    const tr = h('tr', { 'data-server': up + '/' + s.name });
    cells.name = h('span', { class: 'srv-name' }, s.name);
    const nameTd = h('td', { class: 'name', 'data-label': 'server' }, cells.name);
    if (s.backup) nameTd.append(h('span', { class: 'tag' }, 'backup'));
    tr.append(nameTd, td('addr', 'address', 'addr'));
    cells.status = h('span', { class: 'st' });
    cells.queued = h('span', { class: 'tag queued', hidden: true }, 'queued');
    tr.append(h('td', { class: 'status', 'data-label': 'status' }, cells.status, cells.queued));
    for (const [key, label] of [['weight', 'weight'], ['inflight', 'in flight'], ['queue', 'queue'],
      ['rps', 'req/s'], ['r4', '4xx/s'], ['r5', '5xx/s'], ['p50', 'p50'], ['p99', 'p99']]) {
      tr.append(td(key, label, 'n'));
    }
    tr.append(td('check', 'last check', 'chk'), td('changed', 'changed', 'n'));
    if (admin) tr.append(controls(up, s, cells));
    return { tr, cells };
  }

  /** The admin cell: ready/drain/maint buttons and a weight input. */
  function controls(up, s, cells) {
    const cell = h('td', { class: 'ctl', 'data-label': 'admin' });
    const group = h('span', { class: 'seg', role: 'group', 'aria-label': 'state' });
    cells.buttons = {};
    for (const v of ['ready', 'drain', 'maint']) {
      const b = h('button', { type: 'button', 'data-action': v, title: `set server ${up}/${s.name} state ${v}` }, v);
      b.addEventListener('click', () => act('state', up, s.name, v, b));
      cells.buttons[v] = b;
      group.append(b);
    }
    const input = h('input', {
      type: 'number', min: 0, max: 256, step: 1, class: 'weight', value: s.weight, 'data-shown': s.weight,
      'aria-label': `weight of ${up}/${s.name}`,
    });
    const set = h('button', { type: 'button', 'data-action': 'weight' }, 'set');
    const submit = () => {
      const v = input.value.trim();
      if (!/^\d+$/.test(v)) {
        showError(`weight ${up}/${s.name}: "${v}" is not a number`);
        return;
      }
      // Once set, the input follows the server's weight again.
      act('weight', up, s.name, v, set, () => {
        input.dataset.shown = input.value;
      });
    };
    set.addEventListener('click', submit);
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') submit();
    });
    cells.weightInput = input;
    cell.append(group, h('span', { class: 'wt' }, input, set));
    return cell;
  }

  /** The DOM of one upstream: a clickable summary line and its server table. */
  function upstreamView(u) {
    const v = { name: u.name, servers: new Map(), serverKey: '' };
    v.caret = h('span', { class: 'caret', 'aria-hidden': 'true' });
    v.status = h('span', { class: 'st' });
    v.meta = h('span', { class: 'meta' });
    v.stats = {};
    const statBox = h('div', { class: 'up-stats' });
    for (const [key, label] of [['rps', 'req/s'], ['r4', '4xx/s'], ['r5', '5xx/s'], ['p50', 'p50'],
      ['p99', 'p99'], ['inflight', 'in flight'], ['queue', 'queue']]) {
      v.stats[key] = h('span', { class: 'v' });
      statBox.append(h('span', { class: 'stat stat-' + key }, h('span', { class: 'k' }, label), v.stats[key]));
    }
    v.spark = h('canvas', { class: 'spark', 'aria-hidden': 'true' });
    v.head = h('div', { class: 'up-head', role: 'button', tabindex: 0 },
      v.caret, h('span', { class: 'up-name' }, u.name), v.status, v.meta, statBox, v.spark);
    const toggle = () => {
      open.set(u.name, !isOpen(u.name));
      applyOpen(v);
    };
    v.head.addEventListener('click', toggle);
    v.head.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        toggle();
      }
    });
    const headRow = h('tr');
    for (const [label, cls] of SERVER_COLUMNS) headRow.append(h('th', { class: cls }, label));
    if (admin) headRow.append(h('th', { class: 'ctl' }, 'admin'));
    v.tbody = h('tbody');
    v.body = h('div', { class: 'up-body' },
      h('div', { class: 'scroll' }, h('table', { class: 'grid servers' }, h('thead', {}, headRow), v.tbody)));
    v.el = h('article', { class: 'up', 'data-upstream': u.name }, v.head, v.body);
    applyOpen(v);
    return v;
  }

  function isOpen(name) {
    return open.has(name) ? open.get(name) : defaultOpen;
  }

  function applyOpen(v) {
    const o = isOpen(v.name);
    v.el.classList.toggle('closed', !o);
    v.head.setAttribute('aria-expanded', String(o));
    if (o) drawChart(v.spark, rateSeries.get(v.name) || [], lastTime, false);
  }

  // ---- rendering -------------------------------------------------------------

  let lastTime = 0;
  const pendingCharts = []; // [canvas, series] to draw at the end of render()

  /** Updates everything from a fresh JSON document `doc`. */
  function render(doc) {
    const t = doc.time_ms;
    const bounds = doc.duration_buckets_ms || [];
    const dt = prev ? (t - prev.time_ms) / 1000 : 0;
    lastTime = t;

    if (Boolean(doc.admin) !== admin) {
      // Controls appear or disappear: rebuild every view.
      admin = Boolean(doc.admin);
      for (const v of views.values()) v.el.remove();
      views.clear();
    }
    token = admin ? doc.token || null : null;
    document.body.classList.toggle('admin', admin);

    // Instance.
    setText($('version'), 'v' + doc.version);
    setText($('foot-pid'), 'pid ' + doc.pid);
    const rps = prev ? rate(doc.cum_req, prev.cum_req, dt) : null;
    setText($('k-rps'), fmtRate(rps));
    setText($('k-conns'), fmtInt(doc.curr_conns));
    setText($('k-req'), fmtCompact(doc.cum_req));
    setTitle($('k-req'), fmtInt(doc.cum_req));
    setText($('k-uptime'), fmtAge(doc.uptime_sec));
    setText($('k-workers'), String(doc.workers));
    setText($('k-gen'), String(doc.generation));
    pushSample(instanceSeries, t, rps);

    // Listeners.
    const prevLis = new Map((prev && prev.listeners || []).map((l) => [l.name, l]));
    const lisRows = [];
    let r5total = null;
    for (const l of doc.listeners || []) {
      const p = prevLis.get(l.name);
      const r4 = p ? rate(l.hrsp[3], p.hrsp[3], dt) : null;
      const r5 = p ? rate(l.hrsp[4], p.hrsp[4], dt) : null;
      if (r5 !== null) r5total = (r5total || 0) + r5;
      const cell = (label, text, cls) => h('td', { class: cls || 'n', 'data-label': label }, text);
      lisRows.push(h('tr', { 'data-listener': l.name },
        cell('name', l.name, 'name'),
        cell('bind', (l.bind || []).join(', '), 'addr'),
        h('td', { 'data-label': 'status' }, h('span', { class: statusClass(l.status) }, l.status)),
        cell('conns', fmtInt(l.curr_conns)),
        cell('total conns', fmtInt(l.cum_conns)),
        cell('requests', fmtInt(l.cum_req)),
        cell('req/s', fmtRate(p ? rate(l.cum_req, p.cum_req, dt) : null)),
        cell('4xx/s', fmtRate(r4), 'n' + (r4 > 0 ? ' warn' : '')),
        cell('5xx/s', fmtRate(r5), 'n' + (r5 > 0 ? ' bad' : ''))));
    }
    $('listeners').replaceChildren(...lisRows);
    setText($('k-5xx'), fmtRate(r5total));
    $('k-5xx').classList.toggle('bad', r5total > 0);

    // Upstreams.
    const ups = doc.upstreams || [];
    if (polls === 0 && !prev) defaultOpen = ups.length <= COLLAPSE_ABOVE;
    const prevUp = new Map((prev && prev.upstreams || []).map((u) => [u.name, u]));
    const seen = new Set();
    let down = 0;
    let total = 0;
    const rows = []; // [view, sort keys]
    for (const u of ups) {
      seen.add(u.name);
      let v = views.get(u.name);
      if (!v) {
        v = upstreamView(u);
        views.set(u.name, v);
      }
      const stats = updateUpstream(v, u, prevUp.get(u.name), dt, t, bounds);
      down += stats.down;
      total += u.servers.length;
      rows.push(stats);
    }
    for (const [name, v] of views) {
      if (!seen.has(name)) {
        v.el.remove();
        views.delete(name);
        rateSeries.delete(name);
      }
    }
    setText($('k-down'), down + ' / ' + total);
    document.title = (down ? `(${down} down) ` : '') + 'forklb dashboard';
    $('k-down').classList.toggle('bad', down > 0);
    placeUpstreams(rows);

    // Charts last: reading their sizes after all the DOM writes costs one
    // layout, not one per upstream.
    drawChart($('instance-chart'), instanceSeries, t, true);
    for (const [canvas, series] of pendingCharts) drawChart(canvas, series, t, false);
    pendingCharts.length = 0;
    prev = doc;
  }

  /** Updates one upstream view; returns its sort keys and down count. */
  function updateUpstream(v, u, p, dt, t, bounds) {
    setText(v.status, u.status);
    setClass(v.status, statusClass(u.status));
    const rps = p ? rate(u.cum_req, p.cum_req, dt) : null;
    const r4 = p ? rate(u.hrsp[3], p.hrsp[3], dt) : null;
    const r5 = p ? rate(u.hrsp[4], p.hrsp[4], dt) : null;
    const lat = percentiles('u:' + u.name, t, u.durations, bounds);
    setText(v.stats.rps, fmtRate(rps));
    setText(v.stats.r4, fmtRate(r4));
    setText(v.stats.r5, fmtRate(r5));
    setText(v.stats.p50, fmtMs(lat.p50));
    setText(v.stats.p99, fmtMs(lat.p99));
    setText(v.stats.inflight, fmtInt(u.in_flight));
    setText(v.stats.queue, fmtInt(u.queue));
    v.stats.r4.parentNode.classList.toggle('warn', r4 > 0);
    v.stats.r5.parentNode.classList.toggle('bad', r5 > 0);
    v.stats.queue.parentNode.classList.toggle('queued', u.queue > 0);

    // Rebuild the rows only when the set of servers changed (e.g. `add server`).
    const key = u.servers.map((s) => s.name + (s.backup ? '*' : '')).join('\n');
    if (key !== v.serverKey) {
      v.servers.clear();
      const trs = [];
      for (const s of u.servers) {
        const row = serverRow(u.name, s);
        v.servers.set(s.name, row);
        trs.push(row.tr);
      }
      v.tbody.replaceChildren(...trs);
      v.serverKey = key;
    }

    const prevSrv = new Map((p ? p.servers : []).map((s) => [s.name, s]));
    let up = 0;
    let down = 0;
    let problems = 0;
    for (const s of u.servers) {
      const row = v.servers.get(s.name);
      const ps = prevSrv.get(s.name);
      const cls = statusClass(s.status);
      // Serving: UP, UP 1/2 (going down, still in rotation), no check.
      if (s.status.startsWith('UP') || s.status === 'no check') up++;
      if (cls === 'st st-down') down++;
      if (cls !== 'st st-up' && cls !== 'st st-nocheck') problems++;
      updateServer(row, u.name, s, ps, dt, t, bounds);
    }
    const backups = u.servers.filter((s) => s.backup).length;
    setText(v.meta, `${u.balance} · ${up}/${u.servers.length} up` + (backups ? ` · ${backups} backup` : ''));
    v.el.classList.toggle('has-down', down > 0);

    const series = rateSeries.get(u.name) || [];
    rateSeries.set(u.name, series);
    pushSample(series, t, rps);
    pendingCharts.push([v.spark, series]); // drawn after all DOM writes
    return { v, name: u.name, rps: rps || 0, errors: (r5 || 0) * 1000 + (r4 || 0), problems: down * 1000 + problems, down };
  }

  function updateServer(row, up, s, ps, dt, t, bounds) {
    const c = row.cells;
    setText(c.addr, s.addr);
    setText(c.status, s.status);
    setClass(c.status, statusClass(s.status));
    c.queued.hidden = !(s.queue > 0);
    setText(c.weight, s.weight === s.initial_weight ? String(s.weight) : `${s.weight} (${s.initial_weight})`);
    setTitle(c.weight, `weight ${s.weight}, configured ${s.initial_weight}`);
    setText(c.inflight, fmtInt(s.in_flight) + (s.maxconn ? ' / ' + s.maxconn : ''));
    setText(c.queue, fmtInt(s.queue));
    c.queue.classList.toggle('queued', s.queue > 0);
    const r4 = ps ? rate(s.hrsp[3], ps.hrsp[3], dt) : null;
    const r5 = ps ? rate(s.hrsp[4], ps.hrsp[4], dt) : null;
    setText(c.rps, fmtRate(ps ? rate(s.cum_req, ps.cum_req, dt) : null));
    setText(c.r4, fmtRate(r4));
    setText(c.r5, fmtRate(r5));
    c.r4.classList.toggle('warn', r4 > 0);
    c.r5.classList.toggle('bad', r5 > 0);
    const lat = percentiles('s:' + up + '/' + s.name, t, s.durations, bounds);
    setText(c.p50, fmtMs(lat.p50));
    setText(c.p99, fmtMs(lat.p99));
    if (s.check) {
      setText(c.check, s.check.status + (s.check.desc ? ' · ' + s.check.desc : ''));
      setTitle(c.check, `${s.check.status}: ${s.check.desc || ''} (${s.check.duration_ms} ms)`);
    } else {
      setText(c.check, '–');
      setTitle(c.check, 'no active health check');
    }
    setText(c.changed, fmtAge(s.last_change_sec));
    if (c.buttons) {
      for (const [val, b] of Object.entries(c.buttons)) b.classList.toggle('on', s.admin === val);
      // Follow the server's weight, but never overwrite what the operator
      // is typing or has typed and not yet set (value differs from the
      // weight last shown).
      const input = c.weightInput;
      const edited = input.value !== input.dataset.shown;
      if (!edited && document.activeElement !== input) {
        input.value = String(s.weight);
        input.dataset.shown = input.value;
      }
      input.classList.toggle('edited', edited);
    }
    row.tr.classList.toggle('is-backup', Boolean(s.backup));
  }

  /** Filters, sorts and (only if the order changed) reorders the upstreams. */
  function placeUpstreams(rows) {
    const f = $('filter').value.trim().toLowerCase();
    const sort = $('sort').value;
    const cmp = {
      name: (a, b) => a.name.localeCompare(b.name),
      rps: (a, b) => b.rps - a.rps || a.name.localeCompare(b.name),
      errors: (a, b) => b.errors - a.errors || a.name.localeCompare(b.name),
      problems: (a, b) => b.problems - a.problems || a.name.localeCompare(b.name),
    }[sort] || ((a, b) => a.name.localeCompare(b.name));
    rows.sort(cmp);
    let shown = 0;
    for (const r of rows) {
      const byName = !f || r.name.toLowerCase().includes(f);
      // A match on a server (name or address) opens its upstream while the
      // filter is on, so that the server is seen.
      const byServer = !byName && [...r.v.servers].some(([n, row]) =>
        n.toLowerCase().includes(f) || row.cells.addr.textContent.includes(f));
      r.v.el.hidden = !(byName || byServer);
      r.v.el.classList.toggle('force-open', byServer);
      if (byName || byServer) shown++;
    }
    const box = $('upstreams');
    const order = rows.map((r) => r.v.el);
    const same = order.length === box.children.length && order.every((el, i) => box.children[i] === el);
    if (!same) box.append(...order); // append moves existing nodes into place
    setText($('up-count'), f ? `${shown} of ${rows.length}` : String(rows.length));
    $('no-match').hidden = shown > 0 || rows.length === 0;
    lastRows = rows;
  }

  let lastRows = [];

  // ---- polling ---------------------------------------------------------------

  function setConn(ok, why) {
    const body = document.body;
    if (ok) {
      body.dataset.conn = 'ok';
      setText($('conn-text'), 'live · ' + new Date().toLocaleTimeString('en-GB'));
      $('lost').hidden = true;
    } else {
      body.dataset.conn = 'lost';
      setText($('conn-text'), 'connection lost');
      setText($('lost-why'), why);
      $('lost').hidden = false;
    }
  }

  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(timer);
    const abort = new AbortController();
    const limit = setTimeout(() => abort.abort(), Math.max(5000, intervalSec * 1000));
    try {
      const r = await fetch('?json', { cache: 'no-store', signal: abort.signal, headers: { Accept: 'application/json' } });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const doc = await r.json();
      const t0 = performance.now();
      render(doc);
      // What one update costs the browser (shown in the footer's tooltip).
      document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
      polls++;
      document.body.dataset.polls = String(polls);
      setConn(true);
    } catch (e) {
      setConn(false, e.name === 'AbortError' ? 'timed out' : e.message || String(e));
    } finally {
      clearTimeout(limit);
      polling = false;
      if (pollAgain) {
        pollAgain = false;
        poll();
      } else {
        schedule();
      }
    }
  }

  function pollNow() {
    poll();
  }

  function schedule() {
    clearTimeout(timer);
    if (intervalSec > 0) timer = setTimeout(poll, intervalSec * 1000);
  }

  // ---- controls --------------------------------------------------------------

  function init() {
    const sel = $('refresh');
    if (![...sel.options].some((o) => Number(o.value) === intervalSec)) {
      sel.append(h('option', { value: intervalSec }, intervalSec + ' s'));
    }
    sel.value = String(intervalSec);
    sel.addEventListener('change', () => {
      intervalSec = Number(sel.value);
      schedule();
    });
    $('filter').addEventListener('input', () => placeUpstreams(lastRows));
    // "/" focuses the filter, as in many operator tools.
    document.addEventListener('keydown', (e) => {
      const t = e.target;
      if (e.key === '/' && !(t instanceof HTMLInputElement || t instanceof HTMLSelectElement)) {
        e.preventDefault();
        $('filter').focus();
      }
    });
    $('sort').addEventListener('change', () => placeUpstreams(lastRows));
    const all = (o) => {
      defaultOpen = o;
      open.clear();
      for (const v of views.values()) applyOpen(v);
    };
    $('expand-all').addEventListener('click', () => all(true));
    $('collapse-all').addEventListener('click', () => all(false));
    $('action-error-close').addEventListener('click', () => {
      $('action-error').hidden = true;
    });
    // Charts follow the width of the window.
    window.addEventListener('resize', () => {
      drawChart($('instance-chart'), instanceSeries, lastTime, true);
      for (const v of views.values()) drawChart(v.spark, rateSeries.get(v.name) || [], lastTime, false);
    });
    poll();
  }

  init();
})();
