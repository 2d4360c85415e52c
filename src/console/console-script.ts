/**
 * The console's script: plain browser JavaScript, served as is (no build step, no CDN; the page
 * reaches nothing outside the control plane). Kept as a string here so `tsc` ships it inside
 * dist/ with the server. It must never contain a backtick or a dollar-brace (it is a template).
 *
 * Rules it follows (KS-11.1.2, KS-11.1.3):
 * - the token lives in sessionStorage only, is sent only in the `Authorization` header (never a
 *   URL, so no access log or history holds it) and is never written back into the page;
 * - the stream is read with fetch (EventSource cannot send headers) and resumed by Last-Event-ID;
 * - every server-supplied string reaches the DOM through `textContent`, never as markup.
 */
export const CONSOLE_SCRIPT = String.raw`'use strict';
(function () {
  var TOKEN_KEY = 'killswitch.token';
  var MAX_FLIPS = 200;
  /** Flips shown at first and added by each "Show older flips" (the page stays short on a phone). */
  var FLIPS_PAGE = 20;
  /** Active halts shown at first and added by each "Show more halts" (KS-16.5.2). */
  var HALTS_PAGE = 10;
  var STALE_MS = 5000;
  var LEVELS = ['capability', 'runId', 'tenant', 'feature'];
  var S = {
    token: null,
    head: 0,
    lastEventId: null,
    halts: new Map(),
    flips: [],
    fleet: new Map(),
    workers: [],
    streamAbort: null,
    lastMessageAt: 0,
    generation: 0,
    timers: [],
    shownFlips: FLIPS_PAGE,
    shownHalts: HALTS_PAGE
  };

  function $(id) { return document.getElementById(id); }

  /** Creates an element; text goes through textContent only. */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function selectorKey(sel) {
    return LEVELS.map(function (k) { return k + '=' + (sel[k] === undefined ? '' : sel[k]); }).join('\u0000');
  }

  function formatSelector(sel) {
    var parts = LEVELS.filter(function (k) { return sel[k] !== undefined; }).map(function (k) { return k + '=' + sel[k]; });
    return '{' + parts.join(', ') + '}';
  }

  function levelOf(sel) {
    if (sel.capability !== undefined) return 'capability';
    if (sel.runId !== undefined) return 'run';
    if (sel.tenant !== undefined) return 'tenant';
    if (sel.feature !== undefined) return 'feature';
    return 'global';
  }

  function fmtTime(v) {
    var d = new Date(v);
    if (isNaN(d.getTime())) return String(v);
    return d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
  }

  function setStatus(kind, text) {
    var s = $('stream-status');
    s.className = 'pill pill-' + kind;
    s.textContent = text;
  }

  function randomId() {
    if (window.crypto && crypto.randomUUID) return 'console-' + crypto.randomUUID();
    var a = new Uint8Array(16);
    crypto.getRandomValues(a);
    return 'console-' + Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join('');
  }

  // --- API ---------------------------------------------------------------------------------

  function ApiError(message, status, code) {
    this.message = message;
    this.status = status;
    this.code = code;
  }

  async function api(method, path, body) {
    if (!S.token) throw new ApiError('no token', 401, 'KS_UNAUTHORIZED');
    var headers = { accept: 'application/json', authorization: 'Bearer ' + S.token };
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var res = await fetch(path, init);
    var text = await res.text();
    var json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
    if (res.status === 401) {
      signOut('The token was refused (' + ((json && json.error && json.error.message) || 'unauthorized') + ').');
      throw new ApiError('unauthorized', 401, 'KS_UNAUTHORIZED');
    }
    if (!res.ok) {
      var err = json && json.error;
      var msg = (err && err.message) || ('HTTP ' + res.status);
      if (err && Array.isArray(err.issues) && err.issues.length > 0) {
        msg += '\n' + err.issues.map(function (i) { return '- ' + (i.path || []).join('.') + ': ' + i.message; }).join('\n');
      }
      throw new ApiError(msg, res.status, err && err.code);
    }
    return json;
  }

  // --- sign in / out -----------------------------------------------------------------------

  function signIn(token) {
    S.token = token;
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode: memory only */ }
    $('login').hidden = true;
    $('app').hidden = false;
    $('signout').hidden = false;
    start();
  }

  function signOut(message) {
    stop();
    S.token = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    $('login').hidden = false;
    $('app').hidden = true;
    $('signout').hidden = true;
    $('login-error').textContent = message || '';
    setStatus('off', 'signed out');
  }

  function start() {
    S.generation++;
    S.head = 0;
    S.lastEventId = null;
    S.halts = new Map();
    S.flips = [];
    S.fleet = new Map();
    render();
    streamLoop(S.generation);
    S.timers.push(setInterval(pollWorkers, 2000));
    S.timers.push(setInterval(pollFleet, 1000));
    S.timers.push(setInterval(checkStale, 1000));
    pollWorkers();
  }

  function stop() {
    S.generation++;
    if (S.streamAbort) S.streamAbort.abort();
    S.streamAbort = null;
    S.timers.forEach(function (t) { clearInterval(t); });
    S.timers = [];
  }

  // --- the stream --------------------------------------------------------------------------

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  async function streamLoop(gen) {
    var backoff = 500;
    while (gen === S.generation && S.token) {
      var ctrl = new AbortController();
      S.streamAbort = ctrl;
      try {
        var headers = { accept: 'text/event-stream', authorization: 'Bearer ' + S.token };
        if (S.lastEventId !== null) headers['last-event-id'] = String(S.lastEventId);
        setStatus('stale', 'connecting');
        var res = await fetch('/v1/stream', { headers: headers, signal: ctrl.signal, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
        if (res.status === 401) { signOut('The token was refused by the stream.'); return; }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        S.lastMessageAt = Date.now();
        setStatus('live', 'live');
        backoff = 500;
        var reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        var buf = '';
        for (;;) {
          var r = await reader.read();
          if (r.done) break;
          S.lastMessageAt = Date.now();
          buf += r.value.replace(/\r\n?/g, '\n');
          var idx;
          while ((idx = buf.indexOf('\n\n')) >= 0) {
            var block = buf.slice(0, idx);
            buf = buf.slice(idx + 2);
            if (onBlock(block) === 'resync') { ctrl.abort(); break; }
          }
        }
      } catch (e) {
        /* dropped or aborted: reconnect below */
      }
      if (gen !== S.generation) return;
      setStatus('stale', 'reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 8000);
    }
  }

  function checkStale() {
    if (S.lastMessageAt && Date.now() - S.lastMessageAt > STALE_MS) {
      setStatus('stale', 'stale: no heartbeat');
      if (S.streamAbort) S.streamAbort.abort();
      S.lastMessageAt = Date.now();
    }
  }

  function onBlock(block) {
    var event = 'message';
    var data = [];
    var id = null;
    block.split('\n').forEach(function (line) {
      if (line === '' || line.charAt(0) === ':') return;
      var c = line.indexOf(':');
      var field = c < 0 ? line : line.slice(0, c);
      var value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    });
    if (data.length === 0) return;
    var payload;
    try { payload = JSON.parse(data.join('\n')); } catch (e) { return; }
    if (event === 'snapshot') return onSnapshot(payload);
    if (event === 'flip') return onFlip(payload, id);
    if (event === 'heartbeat') {
      if (typeof payload.head === 'number' && payload.head > S.head) return resync();
      return;
    }
    // Signatures are for workers that hold the public key (KS-17.7.9); the console shows, never enforces.
    if (event === 'sig') return;
    // KS-17.4.1 a flip outside this token's scopes: the position moves on, nothing shows.
    if (event === 'skip') return onSkip(payload, id);
  }

  function resync() {
    // A gap: forget the position so the next connection starts from a snapshot.
    S.lastEventId = null;
    return 'resync';
  }

  function onSnapshot(snap) {
    S.halts = new Map();
    (snap.halts || []).forEach(function (h) { S.halts.set(selectorKey(h.selector), h); });
    S.head = snap.seq;
    S.lastEventId = snap.seq;
    $('head').textContent = 'head #' + S.head;
    loadRecentFlips(snap.seq);
    render();
  }

  async function loadRecentFlips(seq) {
    var after = Math.max(0, seq - 50);
    try {
      var page = await api('GET', '/v1/flips?after=' + after + '&limit=50');
      var have = new Set(S.flips.map(function (f) { return f.seq; }));
      page.flips.forEach(function (f) { if (!have.has(f.seq)) S.flips.push(f); });
      S.flips.sort(function (a, b) { return b.seq - a.seq; });
      S.flips = S.flips.slice(0, MAX_FLIPS);
      renderFlips();
      pollFleet();
    } catch (e) { /* the stream keeps the log live anyway */ }
  }

  function onSkip(rec, id) {
    if (typeof rec.seq !== 'number' || rec.seq <= S.head) return;
    if (rec.seq !== S.head + 1) return resync();
    S.head = rec.seq;
    S.lastEventId = id !== null ? id : rec.seq;
    $('head').textContent = 'head #' + S.head;
  }

  function onFlip(rec, id) {
    if (typeof rec.seq !== 'number' || rec.seq <= S.head) return;
    if (rec.seq !== S.head + 1) return resync();
    var key = selectorKey(rec.selector);
    if (rec.action === 'halt') S.halts.set(key, rec);
    else S.halts.delete(key);
    S.head = rec.seq;
    S.lastEventId = id !== null ? id : rec.seq;
    $('head').textContent = 'head #' + S.head;
    S.flips.unshift(rec);
    if (S.flips.length > MAX_FLIPS) S.flips.length = MAX_FLIPS;
    render();
    pollFleet();
  }

  // --- fleet polling -------------------------------------------------------------------------

  async function pollWorkers() {
    if (!S.token) return;
    try {
      var w = await api('GET', '/v1/workers');
      S.workers = w.workers || [];
      renderFleet();
    } catch (e) { /* shown as a stale stream soon enough */ }
  }

  /**
   * Records a flip's fleet status. A stop that was complete stays complete: an answer that was
   * in flight before it completed must not replace it (nothing would poll again to fix it).
   */
  function setFleet(seq, st) {
    var prev = S.fleet.get(seq);
    if (prev && prev !== 'untracked' && prev.complete && !st.complete) return;
    S.fleet.set(seq, st);
  }

  /** Per-flip acknowledgements for the newest flips until their stop is complete. */
  async function pollFleet() {
    if (!S.token) return;
    var recent = S.flips.slice(0, 8).filter(function (f) {
      var st = S.fleet.get(f.seq);
      return !st || (!st.complete && st !== 'untracked');
    });
    await Promise.all(recent.map(async function (f) {
      try {
        setFleet(f.seq, await api('GET', '/v1/flips/' + f.seq + '/fleet'));
      } catch (e) {
        if (e && e.status === 404) S.fleet.set(f.seq, 'untracked');
      }
    }));
    if (recent.length > 0) {
      renderFlips();
      renderGateways();
    }
  }

  // --- flipping --------------------------------------------------------------------------------

  var armedGlobal = null;

  function selectorFor(level) {
    var target = $('target').value.trim();
    var narrow = $('narrow-tenant').value.trim();
    if (level === 'global') return {};
    if (!target) throw new Error('Enter a target for this halt.');
    if (level === 'capability') {
      var s = { capability: target };
      if (narrow) s.tenant = narrow;
      return s;
    }
    if (level === 'run') return { runId: target };
    if ($('tf-kind').value === 'feature') return { feature: target };
    return { tenant: target };
  }

  function setBusy(busy) {
    Array.prototype.forEach.call(document.querySelectorAll('#flip-form button'), function (b) { b.disabled = busy; });
  }

  function showResult(id, ok, text) {
    var r = $(id);
    r.className = 'result ' + (ok ? 'ok' : 'bad');
    r.textContent = text;
  }

  async function onFlipSubmit(ev) {
    ev.preventDefault();
    var button = ev.submitter || document.activeElement;
    var level = button && button.getAttribute('data-level');
    if (!level) return;
    var reason = $('reason').value.trim();
    var selector;
    try {
      if (!reason) throw new Error('A reason is required.');
      selector = selectorFor(level);
    } catch (e) {
      showResult('flip-result', false, e.message);
      return;
    }
    if (level === 'global' && armedGlobal === null) {
      // Halting everything takes a second, deliberate click.
      var b = $('btn-global');
      b.classList.add('armed');
      b.textContent = 'Click again: halt EVERYTHING';
      armedGlobal = setTimeout(disarmGlobal, 5000);
      return;
    }
    disarmGlobal();
    setBusy(true);
    showResult('flip-result', true, 'Flipping ' + formatSelector(selector) + '…');
    try {
      var ans = await api('POST', '/v1/flips', {
        id: randomId(), action: 'halt', selector: selector, reason: reason, mode: $('mode').value, source: 'console', wait: 10000
      });
      if (ans.fleet) setFleet(ans.flip.seq, ans.fleet);
      var nothing = matchedNothingText(ans.fleet, ans.flip.selector);
      showResult('flip-result', true, 'Halted ' + formatSelector(ans.flip.selector) + ' as flip #' + ans.flip.seq +
        (ans.duplicate ? ' (already recorded)' : '') + '. ' + (ans.covers ? 'Covers ' + ans.covers + '. ' : '') +
        fleetText(ans.fleet) + (nothing ? '\n' + nothing : ''));
      if (nothing) $('flip-result').classList.add('warn');
      $('reason').value = '';
      renderFlips();
    } catch (e) {
      showResult('flip-result', false, 'Not flipped: ' + e.message);
    } finally {
      setBusy(false);
    }
  }

  function disarmGlobal() {
    if (armedGlobal !== null) clearTimeout(armedGlobal);
    armedGlobal = null;
    var b = $('btn-global');
    b.classList.remove('armed');
    b.textContent = 'Halt everything';
  }

  async function resume(halt, release, reason, out, buttons) {
    buttons.forEach(function (b) { b.disabled = true; });
    out.className = 'result ok';
    out.textContent = 'Resuming…';
    try {
      var ans = await api('POST', '/v1/flips', {
        id: randomId(), action: 'resume', selector: halt.selector, reason: reason, release: release, source: 'console', wait: 10000
      });
      if (ans.fleet) setFleet(ans.flip.seq, ans.fleet);
      renderFlips();
      out.textContent = 'Resumed as flip #' + ans.flip.seq + '. ' + fleetText(ans.fleet);
    } catch (e) {
      out.className = 'result bad';
      out.textContent = 'Not resumed: ' + e.message;
      buttons.forEach(function (b) { b.disabled = false; });
    }
  }

  /**
   * The warning when a halt matched nothing anywhere (KS-16.4.2): every worker that acknowledged
   * reported what the halt matched, and it was nothing; a near miss is offered.
   */
  function matchedNothingText(st, selector) {
    var m = st && st !== 'untracked' ? st.matched : null;
    if (!m || Object.keys(selector).length === 0) return '';
    if (m.workers === 0 || m.workers < st.applied) return '';
    if (m.inFlight + m.queued + m.recent > 0) return '';
    var words = Object.keys(selector).map(function (k) { return (k === 'runId' ? 'run' : k) + ' ' + selector[k]; }).join(' and ');
    return 'WARNING: no worker has seen ' + words + ': the halt matched no call in flight, no queued task and no context evaluated in the last 10 minutes on ' +
      m.workers + ' worker(s)' + (m.similar && m.similar.length ? '; did you mean ' + m.similar.join(' or ') + '?' : '');
  }

  async function onReleaseSubmit(ev) {
    ev.preventDefault();
    var release = $('release-name').value.trim();
    var reason = $('release-reason').value.trim();
    var out = $('release-result');
    if (!release || !reason) { showResult('release-result', false, 'A release and a reason are required.'); return; }
    $('release-green').disabled = true;
    try {
      var ans = await api('POST', '/v1/releases', { release: release, status: 'green', reason: reason });
      var r = ans.release || {};
      showResult('release-result', true, 'Release ' + release + ' marked green' + (r.seq ? ' (#' + r.seq + ' by ' + r.actor + ')' : '') +
        '. A resume on it may pass now.');
      $('release-reason').value = '';
    } catch (e) {
      showResult('release-result', false, 'Not marked: ' + e.message);
    } finally {
      $('release-green').disabled = false;
      out.hidden = false;
    }
  }

  // --- rendering (textContent only) ------------------------------------------------------------

  /**
   * The sticky banner: shown while any halt is active, unmistakable for a global one (KS-16.5.1).
   */
  function renderBanner(halts) {
    var b = $('halt-banner');
    var global = halts.filter(function (h) { return Object.keys(h.selector).length === 0; })[0];
    b.hidden = halts.length === 0;
    b.className = 'banner' + (global ? ' global' : '');
    if (global) {
      b.textContent = 'EVERYTHING IS HALTED (flip #' + global.seq + ' by ' + global.actor + ': ' + global.reason + ')' +
        (halts.length > 1 ? ' and ' + (halts.length - 1) + ' more halt(s)' : '');
    } else if (halts.length > 0) {
      b.textContent = halts.length + ' halt' + (halts.length === 1 ? '' : 's') + ' active: ' +
        halts.slice(0, 3).map(function (h) { return formatSelector(h.selector); }).join(', ') +
        (halts.length > 3 ? ', …' : '');
    } else {
      b.textContent = '';
    }
  }

  function fleetText(st) {
    if (!st || st === 'untracked') return '';
    var parts = [st.applied + ' worker' + (st.applied === 1 ? '' : 's') + ' acknowledged'];
    var waiting = (st.laggards || []).filter(function (l) { return !l.leaseExpired; });
    if (waiting.length > 0) parts.push('waiting for ' + waiting.map(function (l) { return l.workerId; }).join(', '));
    var expired = (st.laggards || []).filter(function (l) { return l.leaseExpired; });
    if (expired.length > 0) parts.push('lease ran out (failed closed): ' + expired.map(function (l) { return l.workerId; }).join(', '));
    if (st.alreadyStale && st.alreadyStale.length > 0) parts.push('already stale: ' + st.alreadyStale.map(function (w) { return w.workerId; }).join(', '));
    parts.push(st.complete ? 'stop complete after ' + st.completeAfterMs + ' ms' : 'stop not complete yet');
    return parts.join('; ') + '.';
  }

  function render() {
    renderHalts();
    renderFlips();
  }

  function renderHalts() {
    var ul = $('halts');
    ul.replaceChildren();
    var halts = Array.from(S.halts.values()).sort(function (a, b) { return a.seq - b.seq; });
    renderBanner(halts);
    $('no-halts').hidden = halts.length > 0;
    $('halt-count').textContent = halts.length ? '(' + halts.length + ')' : '';
    // Paged, so the fleet stays near the top on a phone: a global halt first, then the newest.
    var isGlobal = function (h) { return Object.keys(h.selector).length === 0; };
    var shown = halts.slice().sort(function (a, b) {
      return (isGlobal(b) ? 1 : 0) - (isGlobal(a) ? 1 : 0) || b.seq - a.seq;
    });
    var more = $('halts-more');
    more.hidden = shown.length <= S.shownHalts;
    more.textContent = 'Show ' + (shown.length - S.shownHalts) + ' more halt(s)';
    shown.slice(0, S.shownHalts).forEach(function (h) {
      var li = el('li', 'item halt-item');
      li.setAttribute('data-seq', String(h.seq));
      var top = el('div', 'top');
      top.append(el('span', 'tag halt', levelOf(h.selector)), el('span', 'sel', formatSelector(h.selector)),
        el('span', 'muted', '#' + h.seq + ' by ' + h.actor + ' at ' + fmtTime(h.at) + (h.mode ? ' · ' + h.mode : '') + (h.source ? ' · via ' + h.source : '')));
      li.append(top, el('p', 'why', h.reason));
      var open = el('button', 'small resume-open', 'Resume…');
      open.type = 'button';
      var form = el('form', 'resume-form');
      form.hidden = true;
      form.setAttribute('novalidate', '');
      var relLabel = el('label', null, 'Release to resume on (required)');
      var rel = el('input');
      rel.type = 'text'; rel.className = 'resume-release'; rel.required = true; rel.spellcheck = false;
      var whyLabel = el('label', null, 'Reason (required)');
      var why = el('input');
      why.type = 'text'; why.className = 'resume-reason'; why.required = true;
      var go = el('button', 'primary small resume-go', 'Resume on this release');
      go.type = 'submit';
      var out = el('p', 'result');
      form.append(relLabel, rel, whyLabel, why, go, out);
      open.addEventListener('click', function () { form.hidden = !form.hidden; if (!form.hidden) rel.focus(); });
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var release = rel.value.trim();
        var reason = why.value.trim();
        if (!release || !reason) {
          out.className = 'result bad';
          out.textContent = 'A release and a reason are required to resume.';
          return;
        }
        resume(h, release, reason, out, [go, open]);
      });
      li.append(open, form);
      ul.append(li);
    });
  }

  function renderFlips() {
    var ol = $('flips');
    ol.replaceChildren();
    var more = $('flips-more');
    more.hidden = S.flips.length <= S.shownFlips;
    more.textContent = 'Show older flips (' + (S.flips.length - S.shownFlips) + ' more)';
    S.flips.slice(0, S.shownFlips).forEach(function (f) {
      var li = el('li', 'item flip-item');
      li.setAttribute('data-seq', String(f.seq));
      var top = el('div', 'top');
      top.append(el('span', 'muted', '#' + f.seq), el('span', 'tag ' + (f.action === 'halt' ? 'halt' : 'resume'), f.action),
        el('span', 'sel', formatSelector(f.selector)),
        el('span', 'muted', fmtTime(f.at) + ' by ' + f.actor + (f.mode ? ' · ' + f.mode : '') +
          (f.release ? ' · release ' + f.release : '') + (f.source ? ' · via ' + f.source : '')));
      li.append(top, el('p', 'why', f.reason));
      var st = S.fleet.get(f.seq);
      if (st && st !== 'untracked') {
        var acks = el('div', 'acks');
        var status = el('p', st.complete ? 'done stop-status' : 'wait stop-status',
          st.complete ? 'Stop complete at ' + fmtTime(st.completeAt) + ' (+' + st.completeAfterMs + ' ms)' : 'Waiting for the fleet…');
        acks.append(status);
        (st.acknowledged || []).forEach(function (a) {
          acks.append(el('p', 'ack', 'acknowledged by ' + a.workerId + (a.release ? ' (' + a.release + ')' : '') +
            ' at ' + fmtTime(a.at) + ' (+' + a.latencyMs + ' ms)'));
        });
        (st.laggards || []).forEach(function (l) {
          acks.append(el('p', 'laggard', (l.leaseExpired ? 'lease ran out, failed closed: ' : 'not yet acknowledged: ') + l.workerId +
            (l.release ? ' (' + l.release + ')' : '')));
        });
        (st.alreadyStale || []).forEach(function (w) {
          acks.append(el('p', 'laggard', 'already stale when flipped: ' + w.workerId));
        });
        (st.unenforced || []).forEach(function (u) {
          acks.append(el('p', 'unenforced', 'NOT ENFORCED by ' + u.workerId + ': ' + u.reason));
        });
        li.append(acks);
      }
      ol.append(li);
    });
  }

  function renderFleet() {
    var tbody = document.querySelector('#fleet tbody');
    tbody.replaceChildren();
    var stale = 0;
    S.workers.forEach(function (w) {
      if (w.stale) stale++;
      var tr = el('tr');
      tr.setAttribute('data-worker', w.id);
      function cell(label, text, cls) {
        var td = el('td', cls || null, text);
        td.setAttribute('data-label', label);
        tr.append(td);
      }
      var who = el('td', null, w.id);
      who.setAttribute('data-label', 'worker');
      if (w.gateway) who.append(el('span', 'tag gateway', 'gateway'));
      tr.append(who);
      cell('release', w.release || '');
      cell('connected', w.connected ? 'yes (' + w.connections + ')' : 'no');
      cell('acked seq', w.lastAckSeq === null ? '–' : w.lastAckSeq);
      cell('lag', w.lag === null ? '–' : w.lag);
      cell('lease', w.leaseExpiresAt === null ? '–' : fmtTime(w.leaseExpiresAt));
      cell('state', w.stale ? 'stale (failing closed)' : 'fresh', w.stale ? 'stale' : 'fresh');
      tbody.append(tr);
    });
    $('fleet-summary').textContent = '(' + S.workers.length + ' worker' + (S.workers.length === 1 ? '' : 's') +
      (stale ? ', ' + stale + ' stale' : '') + ')';
    renderGateways();
  }

  /**
   * Where a gateway stands on a flip (KS-11.1.10): enforced (it acknowledged), not enforced (its
   * negative acknowledgement, with the reason), failed closed on its lease, or not yet.
   */
  function gatewayOnFlip(st, id) {
    if (!st || st === 'untracked') return { cls: 'pending', text: 'not tracked' };
    var u = (st.unenforced || []).find(function (x) { return x.workerId === id; });
    if (u) return { cls: 'unenforced', text: 'NOT ENFORCED: ' + u.reason };
    var a = (st.acknowledged || []).find(function (x) { return x.workerId === id; });
    if (a) return { cls: 'enforced', text: 'enforced (+' + a.latencyMs + ' ms)' };
    var l = (st.laggards || []).find(function (x) { return x.workerId === id; });
    if (l) return l.leaseExpired ? { cls: 'enforced', text: 'lease ran out (failed closed)' } : { cls: 'pending', text: 'not yet acknowledged' };
    if ((st.alreadyStale || []).some(function (x) { return x.workerId === id; })) return { cls: 'enforced', text: 'stale (failed closed)' };
    return { cls: 'pending', text: 'joined after this flip' };
  }

  /** The gateway members: their seams, calls in flight at each, and the last flip's state there. */
  function renderGateways() {
    var gws = S.workers.filter(function (w) { return !!w.gateway; });
    $('gateways-card').hidden = gws.length === 0;
    var tbody = document.querySelector('#gateways tbody');
    tbody.replaceChildren();
    var last = S.flips[0];
    var unenforced = 0;
    gws.forEach(function (w) {
      var tr = el('tr');
      tr.setAttribute('data-gateway', w.id);
      function cell(label, text, cls) {
        var td = el('td', cls || null, text);
        td.setAttribute('data-label', label);
        tr.append(td);
        return td;
      }
      cell('gateway', w.id);
      var seams = cell('seams (in flight)', '');
      w.gateway.seams.forEach(function (x, i) {
        var sp = el('span', 'seam', x.seam + ': ' + x.inFlight);
        sp.setAttribute('data-seam', x.seam);
        if (i > 0) seams.append(document.createTextNode(' · '));
        seams.append(sp);
      });
      cell('as of', fmtTime(w.gateway.at));
      if (last) {
        var on = gatewayOnFlip(S.fleet.get(last.seq), w.id);
        if (on.cls === 'unenforced') unenforced++;
        cell('last flip', '#' + last.seq + ' ' + on.text, 'last-flip ' + on.cls);
      } else {
        cell('last flip', '–', 'last-flip');
      }
      cell('state', w.stale ? 'stale (failing closed)' : 'fresh', w.stale ? 'stale' : 'fresh');
      tbody.append(tr);
    });
    $('gateways-summary').textContent = '(' + gws.length + ' gateway' + (gws.length === 1 ? '' : 's') +
      (unenforced ? ', ' + unenforced + ' not enforcing the last flip' : '') + ')';
  }

  // --- wiring --------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', function () {
    $('login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var input = $('token');
      var token = input.value.trim();
      input.value = '';
      if (!token) return;
      $('login-error').textContent = '';
      signIn(token);
    });
    $('signout').addEventListener('click', function () { signOut('Token forgotten.'); });
    $('flip-form').addEventListener('submit', onFlipSubmit);
    $('release-form').addEventListener('submit', onReleaseSubmit);
    $('halts-more').addEventListener('click', function () {
      S.shownHalts += HALTS_PAGE;
      renderHalts();
    });
    $('flips-more').addEventListener('click', function () {
      S.shownFlips = Math.min(MAX_FLIPS, S.shownFlips + FLIPS_PAGE);
      renderFlips();
    });
    var saved = null;
    try { saved = sessionStorage.getItem(TOKEN_KEY); } catch (e) { saved = null; }
    if (saved) signIn(saved);
  });
})();
`;
