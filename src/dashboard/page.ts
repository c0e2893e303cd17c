/**
 * The dashboard page and its stylesheet. Self-contained: no fonts, scripts or styles from
 * anywhere else (the server's Content-Security-Policy forbids them), so it works on a cluster
 * without internet access. The script is in page-script.ts.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>piecework</title>
<link rel="stylesheet" href="/page.css">
<link rel="icon" href="data:,">
</head>
<body>
<header>
  <h1><span id="state" class="badge">loading</span> <span id="job">…</span></h1>
  <div id="updated" class="muted"></div>
</header>
<div id="error" hidden></div>
<section class="tiles">
  <div class="tile wide"><div class="label">done</div><div class="value"><span id="done">–</span> / <span id="chunks">–</span></div><div id="percent" class="muted"></div></div>
  <div class="tile"><div class="label">running</div><div class="value" id="running">–</div><div id="lanes" class="muted"></div></div>
  <div class="tile"><div class="label">pending</div><div class="value" id="pending">–</div><div id="retrying" class="muted"></div></div>
  <div class="tile"><div class="label">failed</div><div class="value" id="failed">–</div><div id="stale" class="muted"></div></div>
  <div class="tile"><div class="label">rate</div><div class="value" id="rate">–</div><div id="rate-window" class="muted"></div></div>
  <div class="tile"><div class="label">ETA</div><div class="value" id="eta">–</div><div id="finishes" class="muted"></div></div>
</section>
<div class="progress"><div id="progress-bar"></div></div>
<section class="row">
  <div class="panel"><h2>Done over time</h2><canvas id="history" height="160"></canvas><div class="muted">the last minutes from the heartbeats, then as this dashboard saw it</div></div>
  <div class="panel"><h2>Chunks per minute</h2><canvas id="throughput" height="160"></canvas><div class="muted">all workers, last 15 minutes (from heartbeats)</div></div>
</section>
<section class="panel">
  <h2>Chunks <span id="grid-caption" class="muted"></span></h2>
  <canvas id="grid" height="200"></canvas>
  <div class="legend"><i class="done"></i>done <i class="running"></i>running <i class="pending"></i>pending <i class="retrying"></i>retrying <i class="stale"></i>stale claim <i class="failed"></i>failed for good</div>
  <div id="tooltip" class="muted">&nbsp;</div>
</section>
<section class="panel">
  <h2>Hosts</h2>
  <table><thead><tr><th>host</th><th>state</th><th>workers</th><th>lanes</th><th>busy</th><th>done</th><th>failed</th><th>rate</th><th></th><th>last beat</th></tr></thead><tbody id="hosts"></tbody></table>
  <div id="commands"></div>
</section>
<section class="panel" id="failures-panel">
  <h2>Failures</h2>
  <ul id="reasons"></ul>
  <div id="failures"></div>
  <div id="stale-claims"></div>
</section>
<script src="/page.js"></script>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --done: #2da44e; --running: #0969da; --pending: #d0d7de; --retrying: #fb8f44; --stale: #bf8700; --failed: #cf222e; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 16px 24px; max-width: 1200px; color: #1f2328; background: #f6f8fa; }
header { display: flex; justify-content: space-between; align-items: baseline; gap: 16px; }
h1 { font-size: 18px; margin: 0 0 12px; word-break: break-all; }
h2 { font-size: 14px; margin: 0 0 8px; }
.muted { color: #656d76; font-size: 12px; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 10px; background: var(--pending); font-size: 13px; }
.badge.complete { background: var(--done); color: #fff; } .badge.running { background: var(--running); color: #fff; }
.badge.idle, .badge.stopped { background: var(--stale); color: #fff; }
#error { background: #ffebe9; border: 1px solid var(--failed); padding: 8px 12px; margin-bottom: 12px; border-radius: 6px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.tile.wide { grid-column: span 2; }
.tile, .panel { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
.tile .label { color: #656d76; font-size: 12px; text-transform: uppercase; }
.tile .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.progress { height: 10px; background: var(--pending); border-radius: 5px; margin: 12px 0; overflow: hidden; }
#progress-bar { height: 100%; width: 0; background: var(--done); }
.row { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-bottom: 12px; }
.panel { margin-bottom: 12px; }
canvas { width: 100%; display: block; }
.legend { margin-top: 6px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; vertical-align: -1px; }
.legend i.done { background: var(--done); } .legend i.running { background: var(--running); } .legend i.pending { background: var(--pending); }
.legend i.retrying { background: var(--retrying); } .legend i.stale { background: var(--stale); } .legend i.failed { background: var(--failed); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eaeef2; }
td .bar { height: 8px; background: var(--done); border-radius: 4px; min-width: 1px; }
.state-alive { color: var(--done); } .state-dead { color: var(--failed); } .state-exited { color: #656d76; }
.failure { border-top: 1px solid #eaeef2; padding: 6px 0; }
#commands .warning { color: var(--stale); margin-top: 10px; } #commands .command { font-family: ui-monospace, monospace; padding: 2px 0 0 12px; }
pre { background: #f6f8fa; padding: 6px 8px; margin: 4px 0 0; overflow-x: auto; font-size: 12px; max-height: 160px; }
@media (max-width: 800px) { .row { grid-template-columns: 1fr; } }
`;
