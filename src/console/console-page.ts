/**
 * The console's HTML and CSS. Static text with no build step: the page loads exactly one script
 * and one stylesheet, both from this server (KS-11.1.1), and holds no data and no secret, so it is
 * served without a token; everything it shows comes from the authenticated API.
 */

/** The page served at `/`. Every dynamic value is filled in by the script with `textContent`. */
export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>killswitch console</title>
<link rel="stylesheet" href="/console/app.css">
<script src="/console/app.js" defer></script>
</head>
<body>
<header class="bar">
  <h1>killswitch</h1>
  <span id="stream-status" class="pill pill-off" role="status" aria-live="polite">signed out</span>
  <span id="head" class="muted"></span>
  <button type="button" id="signout" class="link" hidden>forget token</button>
  <div id="halt-banner" class="banner" role="alert" hidden></div>
</header>

<main>
<section id="login" class="card">
  <h2>Sign in</h2>
  <p class="muted">Paste a control-plane token. It is kept in this tab's session storage only and sent in the
  <code>Authorization</code> header; it is never shown again and never put in a URL.</p>
  <form id="login-form" method="post" autocomplete="off">
    <label for="token">Token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required>
    <button type="submit" class="primary">Use token</button>
  </form>
  <p id="login-error" class="error" role="alert"></p>
</section>

<div id="app" hidden>
<section class="card" id="flip-card">
  <h2>Halt</h2>
  <form id="flip-form" method="post" autocomplete="off" novalidate>
    <div class="grid">
      <div>
        <label for="target">Target (capability, run id, tenant or feature)</label>
        <input id="target" name="target" type="text" spellcheck="false" placeholder="payments.refund, run-42, acme…">
      </div>
      <div>
        <label for="tf-kind">Tenant or feature</label>
        <select id="tf-kind" name="tf-kind">
          <option value="tenant">tenant</option>
          <option value="feature">feature</option>
        </select>
      </div>
      <div>
        <label for="narrow-tenant">Narrow a capability halt to a tenant (optional)</label>
        <input id="narrow-tenant" name="narrow-tenant" type="text" spellcheck="false">
      </div>
      <div>
        <label for="mode">Queued tasks</label>
        <select id="mode" name="mode">
          <option value="discard" selected>discard (journal, remove)</option>
          <option value="hold">hold (keep, paused)</option>
          <option value="drain">drain (no intake, finish queued)</option>
        </select>
      </div>
    </div>
    <label for="reason">Reason (required)</label>
    <textarea id="reason" name="reason" rows="2" maxlength="2000" required></textarea>
    <div class="buttons">
      <button type="submit" class="danger" data-level="capability" id="btn-capability">Halt capability</button>
      <button type="submit" class="danger" data-level="run" id="btn-run">Halt run + descendants</button>
      <button type="submit" class="danger" data-level="tenant-or-feature" id="btn-tenant">Halt tenant / feature</button>
      <button type="submit" class="danger big" data-level="global" id="btn-global">Halt everything</button>
    </div>
    <p id="flip-result" class="result" role="status" aria-live="polite"></p>
  </form>
</section>

<section class="card">
  <h2>Active halts <span id="halt-count" class="count"></span></h2>
  <p id="no-halts" class="muted">No active halt.</p>
  <ul id="halts" class="list"></ul>
  <button type="button" id="halts-more" class="small" hidden>Show more halts</button>
</section>

<section class="card" id="fleet-card">
  <h2>Fleet <span id="fleet-summary" class="count"></span></h2>
  <div class="scroll">
  <table id="fleet">
    <thead><tr><th>worker</th><th>release</th><th>connected</th><th>acked seq</th><th>lag</th><th>lease</th><th>state</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
</section>

<section class="card" id="gateways-card" hidden>
  <h2>Gateways <span id="gateways-summary" class="count"></span></h2>
  <p class="muted small">Gateways enforce for agents in any language at the MCP and LLM boundary. In flight: calls through each seam at the gateway's last acknowledgement.</p>
  <div class="scroll">
  <table id="gateways">
    <thead><tr><th>gateway</th><th>seams (in flight)</th><th>as of</th><th>last flip</th><th>state</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
</section>

<section class="card" id="release-card">
  <h2>Releases</h2>
  <p class="muted small">A resume names the release the work resumes on, and is refused until that release is marked green.</p>
  <form id="release-form" method="post" autocomplete="off" novalidate>
    <div class="grid">
      <div>
        <label for="release-name">Release</label>
        <input id="release-name" name="release-name" type="text" spellcheck="false" placeholder="v42">
      </div>
      <div>
        <label for="release-reason">Reason (required)</label>
        <input id="release-reason" name="release-reason" type="text">
      </div>
    </div>
    <button type="submit" class="primary" id="release-green">Mark release green</button>
    <p id="release-result" class="result" role="status" aria-live="polite"></p>
  </form>
</section>

<section class="card" id="flips-card">
  <h2>Flip log <span class="muted small">(live, newest first)</span></h2>
  <ol id="flips" class="list"></ol>
  <button type="button" id="flips-more" class="small" hidden>Show older flips</button>
</section>
</div>
</main>
</body>
</html>
`;

/** The console's stylesheet: readable at 3am, usable on a phone (KS-11.1.8). */
export const CONSOLE_CSS = `:root {
  --bg: #0f1115; --card: #181b22; --fg: #e8e8ea; --muted: #9aa0aa; --line: #2a2f3a;
  --danger: #d93a3a; --danger-dark: #a82424; --ok: #2e9d5b; --warn: #d99a1e; --accent: #3a7bd9;
  color-scheme: dark;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.bar { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: center; padding: .7rem 1rem;
  border-bottom: 1px solid var(--line); position: sticky; top: 0; background: var(--bg); z-index: 1; }
.bar h1 { font-size: 1.15rem; margin: 0; letter-spacing: .02em; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem; display: grid; gap: 1rem; }
#app { display: grid; gap: 1rem; }
#app[hidden], [hidden] { display: none !important; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1rem; min-width: 0; }
.card h2 { margin: 0 0 .7rem; font-size: 1.05rem; }
label { display: block; font-size: .85rem; color: var(--muted); margin: .5rem 0 .2rem; }
input, select, textarea { width: 100%; font: inherit; color: var(--fg); background: #0c0e12;
  border: 1px solid var(--line); border-radius: 6px; padding: .55rem .6rem; min-height: 2.6rem; }
textarea { resize: vertical; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 0 1rem; }
.buttons { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: .6rem; margin-top: .9rem; }
button { font: inherit; border-radius: 8px; border: 1px solid var(--line); background: #252a35; color: var(--fg);
  padding: .65rem .8rem; min-height: 2.9rem; cursor: pointer; }
button:disabled { opacity: .55; cursor: progress; }
button.primary { background: var(--accent); border-color: var(--accent); margin-top: .7rem; }
button.danger { background: var(--danger-dark); border-color: var(--danger); font-weight: 600; }
button.danger.big { background: var(--danger); }
button.danger.armed { background: #ff4d4d; outline: 3px solid #ffd0d0; }
button.link { background: none; border: none; color: var(--muted); text-decoration: underline; min-height: 0; padding: 0; margin-left: auto; }
button.small { min-height: 2.2rem; padding: .35rem .7rem; }
.muted { color: var(--muted); }
.small { font-size: .8rem; font-weight: normal; }
.error { color: #ff8080; white-space: pre-wrap; overflow-wrap: anywhere; }
.result { min-height: 1.2rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.result.ok { color: #7fe0a5; }
.result.bad { color: #ff8080; }
.banner { flex-basis: 100%; border-radius: 8px; padding: .5rem .8rem; font-weight: 700;
  background: var(--danger-dark); border: 1px solid var(--danger); overflow-wrap: anywhere; }
.banner.global { background: #ff2d2d; color: #fff; font-size: 1.25rem; letter-spacing: .03em; text-align: center; }
#flips-more, #halts-more { margin-top: .7rem; }
.warn { color: #ffd27f; }
.pill { border-radius: 999px; padding: .15rem .6rem; font-size: .8rem; border: 1px solid var(--line); }
.pill-live { background: #143a24; color: #7fe0a5; border-color: var(--ok); }
.pill-off { background: #2a2f3a; color: var(--muted); }
.pill-stale { background: #3a2a10; color: #ffd27f; border-color: var(--warn); }
.count { color: var(--muted); font-weight: normal; font-size: .9rem; }
.list { list-style: none; margin: 0; padding: 0; display: grid; gap: .5rem; }
.item { border: 1px solid var(--line); border-radius: 8px; padding: .6rem .7rem; min-width: 0; overflow-wrap: anywhere; }
.item .top { display: flex; flex-wrap: wrap; gap: .3rem .7rem; align-items: baseline; }
.tag { font-size: .75rem; border-radius: 4px; padding: .05rem .4rem; background: #2a2f3a; }
.tag.halt { background: var(--danger-dark); }
.tag.resume { background: #1f5a37; }
.sel { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9rem; }
.why { margin: .3rem 0 0; white-space: pre-wrap; }
.acks { margin: .35rem 0 0; font-size: .85rem; color: var(--muted); }
.acks .done { color: #7fe0a5; }
.acks .wait { color: #ffd27f; }
.resume-form { margin-top: .5rem; display: grid; gap: .3rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.stale { color: #ffd27f; }
td.fresh { color: #7fe0a5; }
td.enforced { color: #7fe0a5; }
td.unenforced { color: #ff8080; white-space: normal; overflow-wrap: anywhere; }
td.pending { color: #ffd27f; }
.tag.gateway { background: #23406a; margin-left: .4rem; }
.acks .unenforced { color: #ff8080; }
@media (max-width: 700px) {
  main { padding: .6rem; }
  .grid { grid-template-columns: 1fr; }
  .buttons { grid-template-columns: 1fr 1fr; }
  .buttons .big { grid-column: 1 / -1; }
  #fleet thead, #gateways thead { display: none; }
  #fleet tr, #gateways tr { display: block; border-bottom: 1px solid var(--line); padding: .3rem 0; }
  #fleet td, #gateways td { display: inline-block; border: none; padding: .15rem .5rem .15rem 0; white-space: normal; }
  #fleet td::before, #gateways td::before { content: attr(data-label) ": "; color: var(--muted); }
}
`;
