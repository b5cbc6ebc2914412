"use strict";
// Bukong live view: SSE batches of hits, rendered at most once per animation frame, capped at MAX_ROWS.
const MAX_ROWS = 500;
const $ = (s) => document.querySelector(s);
let role = null, hits = [], pending = [], selected = null, geo = null, dirty = false;
const epsSeries = [], latSeries = [];
let lastEvents = null;

function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
function fmtTime(ms) { return new Date(ms).toISOString().substr(11, 8); }
async function api(path, opts) {
  const r = await fetch(path, Object.assign({credentials: "same-origin"}, opts || {}));
  if (r.status === 401) { showLogin(); throw new Error("401"); }
  return r;
}
function showLogin() { $("#login").hidden = false; $("#app").hidden = true; }

async function login(ev) {
  ev.preventDefault();
  const r = await fetch("/api/login", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: $("#token").value}), credentials: "same-origin"});
  $("#token").value = "";
  if (!r.ok) { $("#login-error").textContent = "unknown token"; return; }
  history.replaceState(null, "", "/");
  start();
}

function filters() {
  return {port: $("#f-port").value, lane: $("#f-lane").value, severity: $("#f-severity").value, rule: $("#f-rule").value.trim()};
}
function matches(h, f) {
  return (!f.port || h.port === f.port) && (!f.lane || h.lane === f.lane) &&
    (!f.severity || h.severity === f.severity) && (!f.rule || h.rule_ids.includes(f.rule));
}
function render() {
  dirty = false;
  if (pending.length) { hits = pending.reverse().concat(hits).slice(0, 5000); pending = []; }
  const f = filters(), rows = [];
  for (const h of hits) {
    if (!matches(h, f)) continue;
    rows.push(`<tr data-id="${esc(h.command_id)}" class="${h.command_id === selected ? "sel" : ""}"><td>${fmtTime(h.decided_ts_ms)}</td>` +
      `<td>${esc(h.port)}</td><td>${esc(h.lane)}</td><td><span class="sev-${esc(h.severity)}">${esc(h.severity)}</span></td>` +
      `<td>${esc(h.conveyance_id)}</td><td>${esc(h.rule_ids.join(", ") || h.selection)}</td><td>${h.score.toFixed(2)}</td>` +
      `<td>${esc(h.status || "sent")}</td></tr>`);
    if (rows.length >= MAX_ROWS) break;
  }
  $("#hits tbody").innerHTML = rows.join("");
  $("#counter").textContent = `${rows.length} shown · ${hits.length} received`;
}
function schedule() { if (!dirty) { dirty = true; requestAnimationFrame(render); } }

function onHits(batch) {
  for (const h of batch) {
    pending.push(h);
    if (h.trigger && h.trigger.produced_ms && h.dispatched_ms) latSeries.push(h.dispatched_ms - h.trigger.produced_ms);
  }
  while (latSeries.length > 60) latSeries.shift();
  schedule();
}

function spark(svg, values) {
  if (!values.length) return;
  const w = 160, h = 28, max = Math.max(...values, 1);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - (v / max) * (h - 2) - 1}`).join(" ");
  svg.innerHTML = `<polyline fill="none" stroke="#12324a" stroke-width="1.5" points="${pts}"/>` +
    `<text x="${w - 2}" y="10" text-anchor="end" font-size="9">${Math.round(values[values.length - 1])}</text>`;
}

function project(lat, lon, box) {
  const x = (lon - box.lon0) / (box.lon1 - box.lon0) * box.w, y = box.h - (lat - box.lat0) / (box.lat1 - box.lat0) * box.h;
  return [x.toFixed(1), y.toFixed(1)];
}
function drawMap(track, cmd) {
  const w = 520, h = 260;
  const pts = track.length ? track : [{lat: (geo.ports.find((p) => p.code === cmd.port) || geo.ports[0]).lat,
    lon: (geo.ports.find((p) => p.code === cmd.port) || geo.ports[0]).lon}];
  const lats = pts.map((p) => p.lat), lons = pts.map((p) => p.lon);
  const pad = 0.25;
  const box = {w, h, lat0: Math.min(...lats) - pad, lat1: Math.max(...lats) + pad, lon0: Math.min(...lons) - pad * 1.6, lon1: Math.max(...lons) + pad * 1.6};
  const line = (arr) => arr.map((p) => project(p[0], p[1], box).join(",")).join(" ");
  let svg = `<svg id="map" viewBox="0 0 ${w} ${h}" xmlns="http://www.w3.org/2000/svg">`;
  svg += `<polyline points="${line(geo.border)}" fill="none" stroke="#a4161a" stroke-dasharray="6 4" stroke-width="2"/>`;
  for (const k of Object.keys(geo.corridors)) svg += `<polyline points="${line(geo.corridors[k])}" fill="none" stroke="#9fb3a0" stroke-width="3"/>`;
  for (const p of geo.ports) { const [x, y] = project(p.lat, p.lon, box);
    svg += `<rect x="${x - 4}" y="${y - 4}" width="8" height="8" fill="#12324a"/><text x="${+x + 6}" y="${+y - 5}" font-size="10">${esc(p.code)}</text>`; }
  if (track.length) {
    svg += `<polyline points="${track.map((p) => project(p.lat, p.lon, box).join(",")).join(" ")}" fill="none" stroke="#1f77b4" stroke-width="2"/>`;
    const last = track[track.length - 1], [x, y] = project(last.lat, last.lon, box);
    svg += `<circle cx="${x}" cy="${y}" r="5" fill="#1f77b4"/>`;
  }
  return svg + `<text x="6" y="${h - 6}" font-size="10" fill="#555">border (dashed), corridors (green), track (blue)</text></svg>`;
}

async function openDetail(id) {
  selected = id; schedule();
  const r = await api(`/api/commands/${encodeURIComponent(id)}`);
  if (!r.ok) { $("#detail").innerHTML = `<p class="error">${esc((await r.json()).error)}</p>`; return; }
  const d = await r.json(), cmd = d.command, st = d.status;
  const reasons = cmd.reasons.map((x) => `<li><b>${esc(x.rule_id || x.kind || "")}</b> ${esc(x.text)}</li>`).join("");
  const factors = cmd.factors.map((x) => `<li>${esc(x.text)}</li>`).join("");
  const facts = Object.entries(cmd.facts).filter(([, v]) => v !== "" && v !== 0 && v !== false && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `<div>${esc(k)}: ${esc(typeof v === "number" ? +v.toFixed(3) : v)}</div>`).join("");
  let actions = "";
  if (role === "operator") {
    actions = `<div class="actions"><button id="b-ack">Acknowledge</button>
      <select id="r-outcome"><option>violation</option><option>clean</option><option>not_found</option></select>
      <input id="r-value" type="number" min="0" placeholder="value found CNY"><input id="r-notes" placeholder="notes">
      <button id="b-result">Report result</button> <span id="act-msg"></span></div>`;
  }
  $("#detail").innerHTML = `<h2>${esc(cmd.lane)} · ${esc(cmd.conveyance_id)} · ${esc(cmd.port)}</h2>
    <div>status <b id="st">${esc(st.status)}</b>${st.outcome ? " · outcome " + esc(st.outcome) : ""} · deadline ${fmtTime(cmd.deadline_ts_ms)}
    · officers ${esc(cmd.officers.join(", ") || "-")} · selection ${esc(cmd.selection)} · pack v${cmd.pack_version} · model v${cmd.model_version}</div>
    <h3>Why</h3><ul class="reasons">${reasons}</ul>${factors ? `<h3>Model factors</h3><ul>${factors}</ul>` : ""}
    ${cmd.missing.length ? `<p class="muted">scored without: ${esc(cmd.missing.join(", "))}</p>` : ""}
    <h3>Joined facts</h3><div class="facts">${facts}</div><h3>Track</h3>${drawMap(d.track, cmd)}${actions}`;
  if (role === "operator") {
    $("#b-ack").onclick = () => act(id, "ack", {});
    $("#b-result").onclick = () => act(id, "result", {outcome: $("#r-outcome").value,
      found_value_cny: +($("#r-value").value || 0), notes: $("#r-notes").value});
  }
}
async function act(id, what, body) {
  const r = await api(`/api/commands/${encodeURIComponent(id)}/${what}`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const j = await r.json();
  $("#act-msg").textContent = r.ok ? j.status : j.error;
  for (const h of hits) if (h.command_id === id && r.ok) h.status = what === "ack" ? "acknowledged" : "result";
  schedule();
}

async function refreshStats() {
  const r = await api("/api/stats"); const s = await r.json();
  const ev = s.totals.events || 0;
  if (lastEvents !== null) { epsSeries.push(Math.max(0, (ev - lastEvents) / 2)); if (epsSeries.length > 60) epsSeries.shift(); }
  lastEvents = ev;
  spark($("#spark-eps"), epsSeries); spark($("#spark-lat"), latSeries);
  $("#versions").textContent = `rule pack v${s.meta.pack_version || "?"} · model v${s.meta.model_version || "?"} · ` +
    `${s.totals.events || 0} events · ${s.totals.commands || 0} commands · ${s.totals.dead_letters || 0} dead letters`;
  const table = (title, obj) => `<h3>${title}</h3><table><tr><th></th><th>hits</th><th>dispatched</th><th>results</th><th>confirmed</th><th>hit rate</th></tr>` +
    Object.entries(obj).sort().map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v.hits || 0}</td><td>${v.dispatched || 0}</td><td>${v.results || 0}</td>` +
    `<td>${v.confirmed || 0}</td><td>${v.hit_rate === null ? "-" : (v.hit_rate * 100).toFixed(1) + "%"}</td></tr>`).join("") + "</table>";
  const drift = s.drift.length ? `<h3>Drift</h3><ul>${s.drift.map((d) => `<li>${fmtTime(d.ts_ms)} error ${d.error_before} → ${d.error_after} (model v${d.model_version})</li>`).join("")}</ul>` : "";
  $("#stats").innerHTML = table("Per rule", s.rules) + table("Per site", s.sites) + drift;
  const ports = Object.keys(s.sites).sort(), sel = $("#f-port");
  for (const p of ports) if (![...sel.options].some((o) => o.value === p)) sel.add(new Option(p, p));
}

async function start() {
  const r = await fetch("/api/whoami", {credentials: "same-origin"});
  if (!r.ok) { showLogin(); return; }
  role = (await r.json()).role;
  $("#who").textContent = role;
  $("#login").hidden = true; $("#app").hidden = false;
  geo = await (await api("/api/geo")).json();
  onHits((await (await api("/api/hits?limit=500")).json()).hits.reverse());
  const es = new EventSource("/api/stream");
  es.addEventListener("hits", (e) => onHits(JSON.parse(e.data)));
  $("#hits tbody").addEventListener("click", (e) => { const tr = e.target.closest("tr"); if (tr) openDetail(tr.dataset.id); });
  for (const id of ["#f-port", "#f-lane", "#f-severity", "#f-rule"]) $(id).addEventListener("input", schedule);
  refreshStats(); setInterval(refreshStats, 2000);
}

$("#login-form").addEventListener("submit", login);
const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) { $("#token").value = params.get("token"); history.replaceState(null, "", "/"); login(new Event("submit")); }
else start();
