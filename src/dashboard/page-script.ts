/**
 * The dashboard's browser script, served as /page.js. Plain ES2020 for any current browser, no
 * framework: it polls /api/snapshot, fills text with textContent (stderr tails are untrusted
 * text), and draws the charts and the chunk grid on canvases — one rectangle per grid cell.
 */
export const PAGE_SCRIPT = String.raw`'use strict';
(function () {
  var REFRESH_MS = 2000;
  var COLORS = { done: '#2da44e', running: '#0969da', pending: '#d0d7de', retrying: '#fb8f44', stale: '#bf8700', failed: '#cf222e' };
  var grid = null;
  var updates = 0;
  function $(id) { return document.getElementById(id); }
  function setText(id, value) { $(id).textContent = value; }
  function num(n) { return Number(n).toLocaleString('en-US'); }
  // An argument as a shell would need it written, so that a command reads unambiguously.
  function shellWord(a) { return /^[\w@%+=:,.\/-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'"; }
  function duration(s) {
    if (s === null || !isFinite(s)) return '–';
    if (s < 60) return Math.round(s) + 's';
    var m = Math.floor(s / 60); if (m < 60) return m + 'm' + String(Math.round(s % 60)).padStart(2, '0') + 's';
    var h = Math.floor(m / 60); if (h < 48) return h + 'h' + String(m % 60).padStart(2, '0') + 'm';
    return Math.floor(h / 24) + 'd' + String(h % 24).padStart(2, '0') + 'h';
  }
  function rate(perSecond) {
    if (perSecond <= 0) return '0/s';
    if (perSecond >= 1) return (perSecond >= 10 ? Math.round(perSecond) : perSecond.toFixed(1)) + '/s';
    var perMinute = perSecond * 60;
    return perMinute >= 1 ? perMinute.toFixed(1) + '/min' : (perMinute * 60).toFixed(1) + '/h';
  }
  function element(tag, text, className) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (className) e.className = className;
    return e;
  }

  async function refresh() {
    try {
      var response = await fetch('/api/snapshot', { cache: 'no-store' });
      var data = await response.json();
      if (response.ok) { showError(null); render(data); }
      else showError(data.error + (data.hint ? ' — ' + data.hint : ''));
    } catch (error) {
      showError('cannot reach the dashboard server: ' + error.message);
    }
    setTimeout(refresh, REFRESH_MS);
  }
  function showError(message) {
    $('error').hidden = !message;
    $('error').textContent = message || '';
  }

  function render(data) {
    var s = data.status, n = s.counts;
    var state = s.complete ? 'complete' : s.stopRequested ? 'stopped' : s.workers.alive ? 'running' : 'idle';
    $('state').textContent = state;
    $('state').className = 'badge ' + state;
    setText('job', s.job);
    document.title = Math.floor(100 * n.done / Math.max(n.chunks, 1)) + '% · ' + s.job.split('/').pop() + ' · piecework';
    setText('updated', 'checked ' + new Date().toLocaleTimeString() + ' · scan ' + data.scanMs + ' ms' + (s.splitComplete ? '' : ' · the split is still adding chunks'));
    setText('done', num(n.done));
    setText('chunks', num(n.chunks));
    var percent = n.chunks ? 100 * n.done / n.chunks : 0;
    setText('percent', percent.toFixed(1) + '%');
    $('progress-bar').style.width = percent + '%';
    setText('running', num(n.running));
    setText('lanes', s.workers.alive + ' workers, ' + s.workers.lanes + ' lanes');
    setText('pending', num(n.pending));
    setText('retrying', n.retrying ? num(n.retrying) + ' to retry' : '');
    setText('failed', num(n.failed));
    setText('stale', n.stale ? num(n.stale) + ' stale claims' : 'no stale claims');
    setText('rate', rate(s.rate.chunksPerSecond));
    setText('rate-window', 'last ' + s.rate.windowMinutes + ' min');
    setText('eta', s.complete ? 'done' : duration(s.etaSeconds));
    setText('finishes', s.etaSeconds === null ? (s.complete ? '' : s.workers.alive ? 'no recent progress' : 'no live worker') : 'about ' + new Date(Date.now() + s.etaSeconds * 1000).toLocaleTimeString());
    drawHistory(data.history, n.chunks);
    drawThroughput(s.throughput);
    grid = data.grid;
    drawGrid();
    renderHosts(s.hosts);
    renderCommands(s.commands || []);
    renderFailures(s);
    document.body.dataset.updates = String(++updates);
  }

  function canvas2d(id, cssHeight) {
    var canvas = $(id), ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth;
    canvas.style.height = cssHeight + 'px';
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    var ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, cssHeight);
    ctx.font = '11px system-ui, sans-serif';
    return { ctx: ctx, width: width, height: cssHeight };
  }

  function drawHistory(history, total) {
    var c = canvas2d('history', 160), ctx = c.ctx, pad = 24;
    ctx.fillStyle = '#656d76';
    ctx.fillText(num(total), 2, 10);
    ctx.fillText('0', 2, c.height - 2);
    if (history.length < 2) { ctx.fillText('collecting…', c.width / 2 - 30, c.height / 2); return; }
    var t0 = history[0].t, span = Math.max(history[history.length - 1].t - t0, 1);
    ctx.strokeStyle = COLORS.done;
    ctx.lineWidth = 2;
    ctx.beginPath();
    history.forEach(function (p, i) {
      var x = pad + (c.width - pad - 4) * (p.t - t0) / span;
      var y = c.height - 4 - (c.height - 16) * p.done / Math.max(total, 1);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = '#656d76';
    ctx.textAlign = 'right';
    ctx.fillText('last ' + duration(span / 1000), c.width - 2, c.height - 2);
  }

  function drawThroughput(series) {
    var c = canvas2d('throughput', 160), ctx = c.ctx;
    var max = Math.max.apply(null, series.map(function (p) { return p.done; }).concat([1]));
    var w = c.width / series.length;
    ctx.fillStyle = COLORS.running;
    series.forEach(function (p, i) {
      var h = (c.height - 16) * p.done / max;
      ctx.fillRect(i * w + 1, c.height - h, Math.max(w - 2, 1), h);
    });
    ctx.fillStyle = '#656d76';
    ctx.fillText('max ' + num(max) + '/min', 2, 10);
  }

  function cellSize(cells, width) {
    return Math.max(3, Math.min(28, Math.floor(Math.sqrt(width * 320 / Math.max(cells, 1)))));
  }
  function mix(a, b, f) {
    var pa = parseInt(a.slice(1), 16), pb = parseInt(b.slice(1), 16), out = 0;
    for (var shift = 16; shift >= 0; shift -= 8) {
      var ca = (pa >> shift) & 255, cb = (pb >> shift) & 255;
      out |= Math.round(ca + (cb - ca) * f) << shift;
    }
    return '#' + out.toString(16).padStart(6, '0');
  }
  function cellColor(i) {
    if (grid.failed[i]) return COLORS.failed;
    if (grid.stale[i]) return COLORS.stale;
    if (grid.running[i]) return COLORS.running;
    if (grid.retrying[i]) return COLORS.retrying;
    var size = Math.min(grid.chunksPerCell, grid.chunks - i * grid.chunksPerCell);
    var f = grid.done[i] / size;
    return f === 0 ? COLORS.pending : mix(COLORS.pending, COLORS.done, 0.35 + 0.65 * f);
  }
  function drawGrid() {
    var width = $('grid').clientWidth, side = cellSize(grid.cells, width);
    var cols = Math.max(1, Math.floor(width / side)), rows = Math.ceil(grid.cells / cols);
    var c = canvas2d('grid', Math.max(rows * side, side)), ctx = c.ctx, gap = side >= 6 ? 1 : 0;
    for (var i = 0; i < grid.cells; i++) {
      ctx.fillStyle = cellColor(i);
      ctx.fillRect((i % cols) * side, Math.floor(i / cols) * side, side - gap, side - gap);
    }
    $('grid').dataset.cells = String(grid.cells);
    setText('grid-caption', num(grid.chunks) + ' chunks' + (grid.chunksPerCell > 1 ? ', ' + num(grid.chunksPerCell) + ' per cell' : ''));
  }
  $('grid').addEventListener('mousemove', function (event) {
    if (!grid) return;
    var rect = event.target.getBoundingClientRect(), side = cellSize(grid.cells, rect.width);
    var cols = Math.max(1, Math.floor(rect.width / side));
    var i = Math.floor((event.clientY - rect.top) / side) * cols + Math.floor((event.clientX - rect.left) / side);
    if (i < 0 || i >= grid.cells) return;
    var first = i * grid.chunksPerCell, size = Math.min(grid.chunksPerCell, grid.chunks - first);
    var parts = [grid.done[i] + ' done'];
    ['running', 'stale', 'failed', 'retrying'].forEach(function (k) { if (grid[k][i]) parts.push(grid[k][i] + ' ' + k); });
    setText('tooltip', (size > 1 ? size + ' chunks from ' : 'chunk ') + grid.firstChunk[i] + ': ' + parts.join(', '));
  });

  function renderHosts(hosts) {
    var body = $('hosts'), maxRate = Math.max.apply(null, hosts.map(function (h) { return h.chunksPerSecond; }).concat([1e-9]));
    body.replaceChildren();
    hosts.forEach(function (h) {
      var row = element('tr');
      row.append(element('td', h.host), element('td', h.state, 'state-' + h.state), element('td', String(h.workers.alive)), element('td', String(h.lanes)),
        element('td', String(h.busy)), element('td', num(h.done)), element('td', num(h.failedAttempts)), element('td', rate(h.chunksPerSecond)));
      var barCell = element('td'), bar = element('div', undefined, 'bar');
      bar.style.width = Math.round(120 * h.chunksPerSecond / maxRate) + 'px';
      barCell.append(bar);
      row.append(barCell, element('td', duration(h.lastHeartbeatSeconds) + ' ago'));
      body.append(row);
    });
    if (!hosts.length) {
      var empty = element('tr');
      empty.append(element('td', 'no worker has started yet'));
      body.append(empty);
    }
  }

  // More than one command among the job's workers: their outputs are merged together.
  function renderCommands(uses) {
    var lines = uses.length < 2 ? [] : [element('div', "this job's workers ran " + uses.length + ' different commands — their outputs are merged together:', 'warning')].concat(uses.map(function (u) {
      return element('div', u.command.map(shellWord).join(' ') + ' (' + u.workers + (u.workers === 1 ? ' worker' : ' workers') + (u.alive ? ', ' + u.alive + ' alive' : '') + ', ' + num(u.done) + ' done, on ' + u.hosts.join(', ') + ')', 'command');
    }));
    $('commands').replaceChildren.apply($('commands'), lines);
  }

  function renderFailures(s) {
    $('reasons').replaceChildren.apply($('reasons'), s.failureReasons.map(function (r) {
      return element('li', r.chunks + '× ' + r.reason + ' (e.g. chunk ' + r.example + (r.failedForGood ? '; ' + r.failedForGood + ' failed for good' : '') + ')');
    }));
    $('failures').replaceChildren.apply($('failures'), s.recentFailures.map(function (f) {
      var box = element('div', undefined, 'failure');
      box.append(element('div', 'chunk ' + f.chunk + ' on ' + f.host + ', attempt ' + f.attempts + '/' + f.maxAttempts + (f.final ? ' (failed for good)' : '') + ', ' + new Date(f.at).toLocaleString() + ': ' + f.reason));
      if (f.stderrTail) box.append(element('pre', f.stderrTail));
      return box;
    }));
    $('stale-claims').replaceChildren.apply($('stale-claims'), s.staleClaims.map(function (c) {
      return element('div', 'stale claim ' + c.chunk + ': silent ' + duration(c.ageSeconds) + (c.owner ? ', held by ' + c.owner.host + ' pid ' + c.owner.pid : ''), 'failure');
    }));
    if (!s.failureReasons.length && !s.staleClaims.length) $('reasons').append(element('li', 'no failures'));
  }

  window.addEventListener('resize', function () { if (grid) drawGrid(); });
  refresh();
})();
`;
