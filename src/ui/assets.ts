/**
 * The dashboard's page, style and script, embedded as strings so that `deno run` and the compiled
 * binary serve the same bytes with nothing fetched at run time. The script is a separate file
 * (`/ui/app.js`) so the Content-Security-Policy needs no inline script. It renders everything that
 * comes from a task with `textContent`, never as HTML.
 */

import { FINAL_STATUSES, TASK_STATUSES } from "../tasks/task_state.ts";

const STATUSES = TASK_STATUSES;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function head(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/ui/app.css">
`;
}

export function loginHtml(error: string | undefined): string {
  return `${head("Klym · log in")}</head>
<body class="login">
<main>
<h1>Klym</h1>
<form method="post" action="/ui/login" autocomplete="off">
<label for="token">Token (<code>KLYM_AUTH_TOKEN</code>)</label>
<input id="token" name="token" type="password" required autofocus>
<button type="submit">Log in</button>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ""}
</form>
</main>
</body>
</html>
`;
}

export function dashboardHtml(): string {
  const options = STATUSES.map((s) => `<option value="${s}">${s}</option>`).join("");
  return `${head("Klym")}<script src="/ui/app.js" defer></script>
</head>
<body>
<header>
<h1>Klym</h1>
<span id="conn" class="conn">connecting…</span>
<span id="who" class="muted"></span>
<form method="post" action="/ui/logout"><button type="submit">Log out</button></form>
</header>
<main>
<section id="server" class="panel">
<h2>Server</h2>
<dl id="server-figures"></dl>
<table id="procs"><thead><tr><th>Task process</th><th>PID</th><th>CPU</th><th>Memory</th></tr></thead><tbody></tbody></table>
<table id="nodes" hidden><caption>Nodes <span id="nodes-note" class="muted"></span></caption><thead><tr><th>Node</th><th>Status</th><th>Renewed</th><th>Running</th></tr></thead><tbody></tbody></table>
<table id="spend" hidden><caption>Model spend, last 24 h</caption><thead><tr><th>Principal</th><th>Model</th><th>Calls</th><th>Refused</th><th>Tokens in</th><th>Tokens out</th></tr></thead><tbody></tbody></table>
</section>
<section id="list-view">
<div class="bar"><h2>Tasks</h2>
<label>Status <select id="status-filter"><option value="">all</option>${options}</select></label>
</div>
<table id="tasks"><thead><tr><th>Task</th><th id="owner-head" hidden>Owner</th><th>Kind</th><th>Status</th><th>Age</th><th>Duration</th><th>Progress</th></tr></thead><tbody></tbody></table>
<p id="empty" class="muted" hidden>No tasks.</p>
</section>
<section id="task-view" hidden>
<p><a href="#">← all tasks</a></p>
<div class="bar"><h2 id="task-title"></h2><button id="cancel" type="button" class="danger">Cancel task</button></div>
<dl id="task-facts"></dl>
<p><progress id="task-progress" max="1" value="0"></progress> <span id="task-progress-text"></span></p>
<div id="task-outcome" hidden><h3 id="task-outcome-title"></h3><pre id="task-result"></pre></div>
<h3>Log <span id="log-note" class="muted"></span></h3>
<div id="log" class="log" role="log" aria-live="polite"></div>
</section>
</main>
</body>
</html>
`;
}

export const APP_CSS = `
:root { color-scheme: light dark; --bg: #fff; --fg: #1d1f23; --muted: #6b7280; --line: #e5e7eb;
  --panel: #f7f7f9; --ok: #15803d; --bad: #b91c1c; --run: #1d4ed8; --wait: #a16207; --err: #b45309; }
@media (prefers-color-scheme: dark) { :root { --bg: #111317; --fg: #e5e7eb; --muted: #9ca3af;
  --line: #2a2e36; --panel: #181b21; --ok: #4ade80; --bad: #f87171; --run: #60a5fa; --wait: #facc15;
  --err: #fbbf24; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem;
  border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2rem; margin: 0; }
header form { margin-left: auto; }
main { padding: 1rem 1.2rem; display: grid; gap: 1.2rem; grid-template-columns: minmax(0, 1fr) 25rem; }
#server { grid-column: 2; grid-row: 1; align-self: start; }
#list-view, #task-view { grid-column: 1; grid-row: 1; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } #server { grid-column: 1; grid-row: 2; } }
h2 { font-size: 1.05rem; margin: 0 0 .6rem; } h3 { font-size: .95rem; margin: 1rem 0 .4rem; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem; }
.bar { display: flex; align-items: center; gap: 1rem; justify-content: space-between; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
#procs th, #procs td { padding: .3rem .3rem; font-size: .82rem; }
#procs td:first-child { max-width: 9rem; overflow: hidden; text-overflow: ellipsis; }
#nodes th, #nodes td { padding: .3rem .3rem; font-size: .82rem; }
#nodes td:first-child { white-space: normal; overflow-wrap: anywhere; }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
td code, dd code { font-size: .85rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0 0 .6rem; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
progress { width: 10rem; vertical-align: middle; }
.st { font-weight: 600; }
.st-succeeded { color: var(--ok); } .st-failed, .st-timed_out, .st-interrupted { color: var(--bad); }
.st-cancelled { color: var(--muted); } .st-running { color: var(--run); } .st-queued { color: var(--wait); }
.muted { color: var(--muted); font-weight: normal; }
.conn { font-size: .85rem; color: var(--muted); } .conn.live { color: var(--ok); }
.log { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; padding: .5rem .7rem; max-height: 60vh;
  overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.line { display: flex; gap: .8rem; } .line .time { color: var(--muted); flex: none; }
.line.stderr .text { color: var(--err); } .line.stderr .time::after { content: " err"; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: .6rem;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 40vh; overflow: auto; margin: 0; }
button { font: inherit; padding: .3rem .8rem; border-radius: 6px; border: 1px solid var(--line);
  background: var(--panel); color: var(--fg); cursor: pointer; }
button.danger { border-color: var(--bad); color: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
a { color: var(--run); }
body.login main { display: block; max-width: 24rem; margin: 12vh auto; }
body.login form { display: grid; gap: .6rem; }
body.login input { font: inherit; padding: .4rem; border: 1px solid var(--line); border-radius: 6px;
  background: var(--bg); color: var(--fg); }
.error { color: var(--bad); }
`;

export const APP_JS = String.raw`"use strict";
(function () {
  var LOG_TAIL_LINES = 2000;
  var FINAL = ${JSON.stringify(FINAL_STATUSES)};
  var view = { filter: "", taskId: null, cursor: 0, task: null, tasks: [], admin: false };
  var loading = { list: false, listAgain: false, task: false, taskAgain: false };

  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function duration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "";
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function time(iso) { return iso ? Date.parse(iso) : null; }
  function runTime(task) {
    var start = time(task.started_at);
    if (start === null) return null;
    var end = time(task.finished_at);
    return (end === null ? Date.now() : end) - start;
  }
  function progressOf(task) {
    var bar = el("progress");
    var p = task.progress;
    if (p && typeof p.total === "number" && p.total > 0) {
      bar.max = p.total;
      bar.value = Math.min(p.done, p.total);
    } else if (FINAL.indexOf(task.status) >= 0) {
      bar.max = 1;
      bar.value = task.status === "succeeded" ? 1 : 0;
    } else {
      bar.removeAttribute("value");
    }
    return bar;
  }
  function progressText(p) {
    if (!p) return "";
    var text = p.done + (typeof p.total === "number" ? " / " + p.total : "");
    return p.message ? text + " · " + p.message : text;
  }
  function getJson(url, options) {
    return fetch(url, Object.assign({ credentials: "same-origin", headers: { accept: "application/json" } }, options || {}))
      .then(function (response) {
        if (response.status === 401) { location.href = "/ui/login"; throw new Error("logged out"); }
        return response.json().then(function (body) { return { ok: response.ok, status: response.status, body: body }; });
      });
  }

  function renderList() {
    var body = $("tasks").tBodies[0];
    clear(body);
    view.tasks.forEach(function (task) {
      var row = el("tr");
      row.dataset.taskId = task.task_id;
      var idCell = el("td");
      var link = el("a", "", task.task_id);
      link.href = "#task/" + encodeURIComponent(task.task_id);
      idCell.appendChild(link);
      row.appendChild(idCell);
      if (view.admin) row.appendChild(el("td", "owner", task.owner));
      row.appendChild(el("td", "", task.kind));
      row.appendChild(el("td", "st st-" + task.status, task.status));
      row.appendChild(el("td", "", duration(Date.now() - time(task.created_at)) + " ago"));
      row.appendChild(el("td", "", duration(runTime(task))));
      var progressCell = el("td");
      progressCell.appendChild(progressOf(task));
      if (task.progress) progressCell.appendChild(el("span", "muted", " " + progressText(task.progress)));
      row.appendChild(progressCell);
      body.appendChild(row);
    });
    $("empty").hidden = view.tasks.length > 0;
  }

  function loadList() {
    if (loading.list) { loading.listAgain = true; return; }
    loading.list = true;
    var query = view.filter ? "?status=" + encodeURIComponent(view.filter) : "";
    getJson("/ui/api/tasks" + query).then(function (answer) {
      if (answer.ok) {
        var viewer = answer.body.viewer;
        view.admin = viewer.admin === true;
        $("owner-head").hidden = !view.admin;
        $("who").textContent = viewer.principal + (view.admin ? " · admin" : "");
        view.tasks = answer.body.tasks;
        renderList();
      }
    }).catch(function () {}).finally(function () {
      loading.list = false;
      if (loading.listAgain) { loading.listAgain = false; loadList(); }
    });
  }

  function fact(list, name, value) {
    if (value === undefined || value === null || value === "") return;
    list.appendChild(el("dt", "", name));
    list.appendChild(el("dd", "", value));
  }

  function renderTask(task) {
    view.task = task;
    $("task-title").textContent = task.task_id;
    var facts = $("task-facts");
    clear(facts);
    fact(facts, "Owner", task.owner);
    fact(facts, "Kind", task.kind);
    var status = el("dd", "st st-" + task.status, task.status);
    status.id = "task-status";
    facts.appendChild(el("dt", "", "Status"));
    facts.appendChild(status);
    fact(facts, "Created", new Date(time(task.created_at)).toLocaleString());
    fact(facts, "Duration", duration(runTime(task)));
    fact(facts, "Timeout", task.timeout_s + " s");
    fact(facts, "Prompt", task.prompt);
    var bar = $("task-progress");
    var fresh = progressOf(task);
    if (fresh.hasAttribute("value")) { bar.max = fresh.max; bar.value = fresh.value; } else bar.removeAttribute("value");
    $("task-progress-text").textContent = progressText(task.progress);
    var final = FINAL.indexOf(task.status) >= 0;
    $("cancel").disabled = final;
    $("task-outcome").hidden = !final;
    if (final) {
      $("task-outcome-title").textContent = task.error ? "Error (" + task.error.code + ")" : "Result";
      $("task-result").textContent = task.error ? task.error.message : JSON.stringify(task.result, null, 2);
    }
    var note = [];
    if (task.logs_dropped) note.push(task.logs_dropped + " oldest lines dropped (KLYM_LOG_LIMIT_BYTES)");
    $("log-note").textContent = note.join(" ");
    var log = $("log");
    var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    task.logs.forEach(function (line) {
      var row = el("div", "line " + (line.stream === "stderr" ? "stderr" : "stdout"));
      row.dataset.seq = line.seq;
      row.dataset.stream = line.stream;
      row.appendChild(el("span", "time", line.time.slice(11, 19)));
      row.appendChild(el("span", "text", line.text));
      log.appendChild(row);
    });
    while (log.childElementCount > LOG_TAIL_LINES) log.removeChild(log.firstElementChild);
    if (stick) log.scrollTop = log.scrollHeight;
    view.cursor = task.next_log_cursor;
    return task.more_logs;
  }

  function loadTask() {
    var id = view.taskId;
    if (!id) return;
    if (loading.task) { loading.taskAgain = true; return; }
    loading.task = true;
    getJson("/ui/api/tasks/" + encodeURIComponent(id) + "?cursor=" + view.cursor).then(function (answer) {
      if (id !== view.taskId) return;
      if (!answer.ok) {
        $("task-title").textContent = id;
        $("task-outcome").hidden = false;
        $("task-outcome-title").textContent = "Not found";
        $("task-result").textContent = answer.body.error || "Unknown task";
        $("cancel").disabled = true;
        return;
      }
      if (renderTask(answer.body)) loading.taskAgain = true;
    }).catch(function () {}).finally(function () {
      loading.task = false;
      if (loading.taskAgain) { loading.taskAgain = false; loadTask(); }
    });
  }

  function route() {
    var match = /^#task\/(.+)$/.exec(location.hash);
    var id = match ? decodeURIComponent(match[1]) : null;
    $("list-view").hidden = !!id;
    $("task-view").hidden = !id;
    if (id !== view.taskId) {
      view.taskId = id;
      view.cursor = 0;
      view.task = null;
      clear($("log"));
      $("task-outcome").hidden = true;
    }
    if (id) loadTask(); else loadList();
  }

  function renderNodes(cluster) {
    var nodes = cluster ? cluster.nodes : [];
    var body = $("nodes").tBodies[0];
    clear(body);
    nodes.forEach(function (n) {
      var row = el("tr");
      row.dataset.node = n.id;
      var name = el("td", "", n.id + (n.self ? " (this one)" : ""));
      if (n.url) {
        name.appendChild(el("br"));
        name.appendChild(el("span", "muted", n.url));
      }
      row.appendChild(name);
      var status = n.status === "alive" ? "st-succeeded" : n.status === "late" ? "st-queued" : "st-failed";
      row.appendChild(el("td", "st " + status, n.status));
      row.appendChild(el("td", "", (n.renewed_ago_ms / 1000).toFixed(1) + " s ago"));
      row.appendChild(el("td", "", n.running + " / " + n.slots));
      body.appendChild(row);
    });
    $("nodes-note").textContent = cluster && cluster.error ? cluster.error : "";
    $("nodes").hidden = !cluster;
  }

  function renderServer(stats) {
    var figures = $("server-figures");
    clear(figures);
    fact(figures, "Version", stats.version);
    fact(figures, "Running", stats.counts.running);
    fact(figures, "Queued", stats.counts.queued);
    var grynya = el("dd", stats.grynya.reachable ? "st st-succeeded" : "st st-failed",
      stats.grynya.reachable ? "answers" : "does not answer");
    grynya.title = stats.grynya.url;
    figures.appendChild(el("dt", "", "grynya"));
    figures.appendChild(grynya);
    fact(figures, "grynya URL", stats.grynya.url);
    fact(figures, "Model", stats.model);
    var body = $("procs").tBodies[0];
    clear(body);
    stats.processes.forEach(function (p) {
      var row = el("tr");
      row.appendChild(el("td", "", p.task_id));
      row.appendChild(el("td", "", p.pid === null ? "n/a" : p.pid));
      row.appendChild(el("td", "", p.cpu_percent === null ? "n/a" : p.cpu_percent.toFixed(1) + " %"));
      row.appendChild(el("td", "", p.rss_bytes === null ? "n/a" : (p.rss_bytes / 1048576).toFixed(1) + " MB"));
      body.appendChild(row);
    });
    $("procs").hidden = stats.processes.length === 0;
    renderNodes(stats.cluster);
    var rows = stats.spend ? stats.spend.rows : [];
    var spend = $("spend").tBodies[0];
    clear(spend);
    rows.forEach(function (r) {
      var row = el("tr");
      [r.principal, r.model, r.calls, r.refusals, r.input_tokens, r.output_tokens].forEach(function (v) {
        row.appendChild(el("td", "", v));
      });
      spend.appendChild(row);
    });
    $("spend").hidden = rows.length === 0;
  }

  function connect() {
    var source = new EventSource("/ui/events");
    source.addEventListener("hello", function () {
      $("conn").textContent = "live";
      $("conn").className = "conn live";
      route();
    });
    source.addEventListener("change", function (event) {
      var change = JSON.parse(event.data);
      var all = change.tasks === "all";
      if (!view.taskId) { if (all || change.tasks.length) loadList(); return; }
      if (all || change.tasks.indexOf(view.taskId) >= 0 || Object.prototype.hasOwnProperty.call(change.logs, view.taskId)) loadTask();
    });
    source.addEventListener("server", function (event) { renderServer(JSON.parse(event.data)); });
    source.onerror = function () {
      $("conn").textContent = "reconnecting…";
      $("conn").className = "conn";
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("status-filter").addEventListener("change", function (event) {
      view.filter = event.target.value;
      loadList();
    });
    $("cancel").addEventListener("click", function () {
      var id = view.taskId;
      if (!id) return;
      $("cancel").disabled = true;
      getJson("/ui/api/tasks/" + encodeURIComponent(id) + "/cancel", { method: "POST" })
        .then(function () { loadTask(); }).catch(function () {});
    });
    window.addEventListener("hashchange", route);
    setInterval(function () { if (!view.taskId && view.tasks.length) renderList(); }, 1000);
    getJson("/ui/api/server").then(function (answer) { if (answer.ok) renderServer(answer.body); }).catch(function () {});
    route();
    connect();
  });
})();
`;
