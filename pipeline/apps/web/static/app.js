"use strict";
// Bukong live view: SSE batches of hits, rendered at most once per animation frame, capped at MAX_ROWS.
// Chinese (zh-CN) or English: zh when the browser asks for Chinese first, else English; the header switch
// overrides it and is remembered in localStorage. Numbers and dates follow the chosen locale.
const MAX_ROWS = 500;
const LANG_KEY = "bukong.lang";
const $ = (s) => document.querySelector(s);
let role = null, hits = [], pending = [], selected = null, geo = null, dirty = false;
let rulesById = {}, lastStats = null, lastDetail = null, detailPoll = null, actMsg = null;
const seenRules = new Set(), seenPorts = new Set();
let known = new Set(); // command ids on the page: a stream that resumes may send a hit twice
const epsSeries = [], latSeries = [];
let lastEvents = null;

const LANES = ["physical_inspection", "intercept", "document_check", "post_clearance_audit", "release"];
const SEVERITIES = ["critical", "high", "medium", "low"];

const I18N = {
  en: {
    title: "Bukong · live hits", subtitle: "live hit stream", token: "Access token", open: "Open",
    unknown_token: "unknown token", all_ports: "all ports", all_lanes: "all lanes",
    all_severities: "all severities", all_rules: "all rules",
    counter: "{shown} shown · {received} received", eps: "events/s", latency: "hit latency ms",
    col_time: "time", col_port: "port", col_lane: "lane", col_sev: "severity", col_conveyance: "conveyance",
    col_rules: "rules", col_score: "score", col_status: "status",
    select_hit: "Select a hit to see why it was targeted.",
    versions: "rule pack v{pack} · model v{model} · budget {budget} · {events} events · {commands} commands · {dead} dead letters",
    role_analyst: "analyst (read-only)", role_operator: "operator",
    lane: {release: "release", document_check: "document check", physical_inspection: "physical inspection",
      intercept: "intercept", post_clearance_audit: "post-clearance audit"},
    severity: {low: "low", medium: "medium", high: "high", critical: "critical"},
    status: {sent: "sent", acknowledged: "acknowledged", result: "result reported", result_sent: "result sent"},
    outcome: {violation: "violation found", clean: "clean", not_found: "not found"},
    selection: {rule: "rule", hard_rule: "hard rule (always inspected)", model: "model",
      random: "random check (double random)", explore: "exploration check (model uncertain)",
      release: "release"},
    kind: {watchlist: "watchlist", budget: "site capacity", emergency_release: "emergency release"},
    d_status: "status", d_outcome: "outcome", d_deadline: "deadline", d_officers: "officers",
    d_selection: "selection", d_pack: "rule pack", d_model: "model", d_why: "Why",
    d_factors: "Model factors", d_missing: "scored without", d_facts: "Joined facts", d_track: "Track",
    raises: "raises risk", lowers: "lowers risk",
    map_legend: "border (dashed), corridors (green), track (blue)",
    ack: "Acknowledge", report: "Report result", value_found: "value found (CNY)", notes: "notes",
    read_only: "Analysts read only: operators acknowledge and report results.",
    per_rule: "Per rule", per_site: "Per site", s_hits: "hits", s_dispatched: "dispatched", s_results: "results",
    s_confirmed: "confirmed", s_hit_rate: "hit rate", drift: "Drift events",
    per_lead: "Lead sources", no_leads: "no results yet for declarations on a watchlist",
    lead: {informant: "informant", "border-police": "border police", "other-agency": "other agency",
      hotline: "hotline", analyst: "analyst", "(other)": "other sources"},
    drift_line: "{time} model error {before} → {after} (model v{model})",
  },
  zh: {
    title: "布控 · 实时命中", subtitle: "实时布控命中", token: "访问令牌", open: "登录",
    unknown_token: "令牌无效", all_ports: "全部口岸", all_lanes: "全部处置方式",
    all_severities: "全部风险等级", all_rules: "全部规则",
    counter: "显示 {shown} 条 · 已收到 {received} 条", eps: "事件/秒", latency: "命中时延（毫秒）",
    col_time: "时间", col_port: "口岸", col_lane: "处置方式", col_sev: "风险等级", col_conveyance: "运输工具",
    col_rules: "规则", col_score: "风险分", col_status: "状态",
    select_hit: "选择一条命中，查看布控理由。",
    versions: "规则包 v{pack} · 模型 v{model} · 查验预算 {budget} · 事件 {events} · 指令 {commands} · 死信 {dead}",
    role_analyst: "分析员（只读）", role_operator: "处置员",
    lane: {release: "放行", document_check: "单证审核", physical_inspection: "查验", intercept: "拦截",
      post_clearance_audit: "稽查（后续稽查）"},
    severity: {low: "低", medium: "中", high: "高", critical: "紧急"},
    status: {sent: "已下发", acknowledged: "已签收", result: "已反馈", result_sent: "结果已提交"},
    outcome: {violation: "查获违规", clean: "未见异常", not_found: "未找到"},
    selection: {rule: "规则命中", hard_rule: "硬性规则（必查）", model: "模型选中", random: "随机抽查（双随机）",
      explore: "探索性查验（模型不确定）", release: "放行"},
    kind: {watchlist: "情报布控名单", budget: "现场处置能力", emergency_release: "应急放行"},
    d_status: "状态", d_outcome: "结果", d_deadline: "处置时限", d_officers: "执法人员",
    d_selection: "选中方式", d_pack: "规则包", d_model: "模型", d_why: "布控理由",
    d_factors: "模型主要因素", d_missing: "评分时缺少", d_facts: "信息对碰（关联数据）", d_track: "车辆轨迹",
    raises: "提高风险", lowers: "降低风险",
    map_legend: "国境线（虚线）、通道（绿）、轨迹（蓝）",
    ack: "签收", report: "反馈结果", value_found: "查获货值（元）", notes: "备注",
    read_only: "分析员只读：签收和反馈结果由处置员操作。",
    per_rule: "按规则", per_site: "按口岸", s_hits: "命中", s_dispatched: "下发", s_results: "已反馈",
    s_confirmed: "查实", s_hit_rate: "命中率", drift: "模型漂移",
    per_lead: "线索来源", no_leads: "布控名单上的申报尚无反馈结果",
    lead: {informant: "线人举报", "border-police": "边境管理部门", "other-agency": "其他执法部门",
      hotline: "举报热线", analyst: "风险分析员", "(other)": "其他来源"},
    drift_line: "{time} 模型误差 {before} → {after}（模型 v{model}）",
  },
};

// ------------------------------------------------------------------------------------------ language
function storedLang() { try { return localStorage.getItem(LANG_KEY); } catch (e) { return null; } }
function detectLang() {
  const saved = storedLang();
  if (saved === "zh" || saved === "en") return saved;
  for (const l of navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]) {
    const s = String(l).toLowerCase();
    if (s.startsWith("zh")) return "zh";
    if (s.startsWith("en")) return "en";
  }
  return "en";
}
let lang = detectLang(), fmt = null;
function localeOf(l) {
  if (l === "zh") return "zh-CN";
  const en = (navigator.languages || []).find((x) => String(x).toLowerCase().startsWith("en"));
  return en || "en-GB";
}
function makeFormatters() {
  const loc = localeOf(lang);
  fmt = {
    locale: loc,
    int: new Intl.NumberFormat(loc, {maximumFractionDigits: 0}),
    num: new Intl.NumberFormat(loc, {maximumFractionDigits: 3}),
    score: new Intl.NumberFormat(loc, {minimumFractionDigits: 2, maximumFractionDigits: 2}),
    pct: new Intl.NumberFormat(loc, {style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1}),
    time: new Intl.DateTimeFormat(loc, {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false}),
    dateTime: new Intl.DateTimeFormat(loc, {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      second: "2-digit", hour12: false}),
  };
}
makeFormatters();
function t(key, params) {
  const s = I18N[lang][key] ?? I18N.en[key] ?? key;
  return params ? s.replace(/\{(\w+)\}/g, (_, k) => (k in params ? params[k] : "")) : s;
}
function term(group, value) { // a lane, severity, status, outcome, selection or reason kind in the chosen language
  const g = I18N[lang][group] || {};
  return value in g ? g[value] : String(value ?? "");
}
const HAN = /\p{Script=Han}/u;
const memo = new Map(); // label and time strings of the current language (cleared on a switch; bounded)
function cached(key, make) {
  let v = memo.get(key);
  if (v === undefined) { if (memo.size > 20000) memo.clear(); v = make(); memo.set(key, v); }
  return v;
}
function pick(text) { return cached("p" + text, () => pickNow(text)); }
function pickNow(text) { // "English (中文)" or "English 中文" -> the part in the chosen language
  const s = String(text ?? "");
  const m = s.match(/^(.*?)\s*[(（]([^()（）]*\p{Script=Han}[^()（）]*)[)）]\s*$/u);
  if (m && m[1]) return lang === "zh" ? m[2].trim() : m[1].trim();
  const i = s.search(HAN);
  if (i > 0 && /[A-Za-z]/.test(s.slice(0, i))) return lang === "zh" ? s.slice(i).trim() : s.slice(0, i).trim();
  return s;
}
function ruleName(id) { const r = rulesById[id]; return r && r.title ? pick(r.title) : String(id); }
function portName(code) {
  const p = geo && geo.ports.find((x) => x.code === code);
  return p ? pick(p.name) : String(code ?? "");
}
function setLang(l) {
  lang = l === "zh" ? "zh" : "en";
  try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* private mode: the switch still works */ }
  makeFormatters();
  memo.clear();
  applyLang();
}
function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const b of document.querySelectorAll("#lang button")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  if (role) $("#who").textContent = t("role_" + role);
  fillFilters();
  if (lastStats) renderStats(lastStats);
  if (lastDetail) renderDetail(); else $("#detail").innerHTML = `<p class="muted">${esc(t("select_hit"))}</p>`;
  if ($("#login-error").textContent) $("#login-error").textContent = t("unknown_token");
  schedule(true);
}

// ------------------------------------------------------------------------------------------- helpers
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
function fmtTime(ms) { return cached("t" + ms, () => fmt.time.format(new Date(ms))); }
function fmtDateTime(ms) { return fmt.dateTime.format(new Date(ms)); }
function fmtValue(v, key) {
  if (typeof v === "number" && key && key.endsWith("ts_ms")) return fmtDateTime(v);
  if (typeof v === "number") return Number.isInteger(v) ? fmt.int.format(v) : fmt.num.format(v);
  if (Array.isArray(v)) return v.join(", ");
  return String(v);
}
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
  if (!r.ok) { $("#login-error").textContent = t("unknown_token"); return; }
  $("#login-error").textContent = "";
  history.replaceState(null, "", "/");
  start();
}

// ------------------------------------------------------------------------------------------- filters
function fillSelect(sel, allKey, items) { // items: [[value, label]]; keeps the current choice
  const keep = sel.value;
  sel.innerHTML = "";
  sel.add(new Option(t(allKey), ""));
  for (const [v, label] of items) sel.add(new Option(label, v));
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "";
}
function fillFilters() {
  const ports = new Set([...(geo ? geo.ports.map((p) => p.code) : []), ...seenPorts]);
  fillSelect($("#f-port"), "all_ports", [...ports].map((c) => [c, `${portName(c)} ${c}`]));
  fillSelect($("#f-lane"), "all_lanes", LANES.map((l) => [l, term("lane", l)]));
  fillSelect($("#f-severity"), "all_severities", SEVERITIES.map((s) => [s, term("severity", s)]));
  const ids = [...Object.keys(rulesById), ...[...seenRules].filter((r) => !(r in rulesById)).sort()];
  fillSelect($("#f-rule"), "all_rules", ids.map((r) => [r, ruleName(r)]));
}
function noteSeen(h) { // a port or rule id not known yet gets a filter option
  let add = false;
  if (h.port && !seenPorts.has(h.port)) { seenPorts.add(h.port); add = add || !(geo && geo.ports.some((p) => p.code === h.port)); }
  for (const r of h.rule_ids || []) if (!seenRules.has(r)) { seenRules.add(r); add = add || !(r in rulesById); }
  return add;
}
function filters() {
  return {port: $("#f-port").value, lane: $("#f-lane").value, severity: $("#f-severity").value, rule: $("#f-rule").value};
}
function matches(h, f) {
  return (!f.port || h.port === f.port) && (!f.lane || h.lane === f.lane) &&
    (!f.severity || h.severity === f.severity) && (!f.rule || h.rule_ids.includes(f.rule));
}

// ---------------------------------------------------------------------------------------------- list
// New hits are prepended as rows (cost ~ the new hits); the whole list is redrawn only when the filters,
// the language, the rule names or a status change.
let fullRender = true, shown = 0;
function rowHtml(h) {
  const st = h.status || "sent";
  return `<tr data-id="${esc(h.command_id)}" data-port="${esc(h.port)}" data-lane="${esc(h.lane)}" ` +
    `data-severity="${esc(h.severity)}" data-rules="${esc(h.rule_ids.join(" "))}"` +
    `${h.command_id === selected ? ' class="sel"' : ""}><td>${fmtTime(h.decided_ts_ms)}</td>` +
    `<td>${esc(portName(h.port))}</td><td>${esc(term("lane", h.lane))}</td>` +
    `<td><span class="sev-${esc(h.severity)}">${esc(term("severity", h.severity))}</span></td>` +
    `<td>${esc(h.conveyance_id)}</td>` +
    `<td>${esc(h.rule_ids.length ? h.rule_ids.map(ruleName).join(lang === "zh" ? "、" : ", ") : term("selection", h.selection))}</td>` +
    `<td>${fmt.score.format(h.score)}</td><td>${esc(term("status", st))}</td></tr>`;
}
function render() {
  dirty = false;
  const f = filters(), tbody = $("#hits tbody");
  if (pending.length) {
    const fresh = pending.reverse();
    pending = [];
    hits = fresh.concat(hits);
    if (hits.length > 5000) hits.length = 5000;
    if (!fullRender) {
      const rows = [];
      for (const h of fresh) if (matches(h, f)) { rows.push(rowHtml(h)); if (rows.length >= MAX_ROWS) break; }
      if (rows.length) {
        tbody.insertAdjacentHTML("afterbegin", rows.join(""));
        shown += rows.length;
        for (; shown > MAX_ROWS; shown--) tbody.lastElementChild.remove();
      }
    }
  }
  if (fullRender) {
    fullRender = false;
    const rows = [];
    for (const h of hits) {
      if (!matches(h, f)) continue;
      rows.push(rowHtml(h));
      if (rows.length >= MAX_ROWS) break;
    }
    tbody.innerHTML = rows.join("");
    shown = rows.length;
  }
  $("#counter").textContent = t("counter", {shown: fmt.int.format(shown), received: fmt.int.format(hits.length)});
}
function schedule(full) {
  if (full) fullRender = true;
  if (!dirty) { dirty = true; requestAnimationFrame(render); }
}
function markSelected(id) {
  for (const tr of document.querySelectorAll("#hits tbody tr.sel")) tr.classList.remove("sel");
  for (const tr of document.querySelectorAll("#hits tbody tr")) if (tr.dataset.id === id) tr.classList.add("sel");
}

function onHits(batch) {
  let newOptions = false;
  for (const h of batch) {
    if (known.has(h.command_id)) continue;
    known.add(h.command_id);
    if (known.size > 20000) known = new Set(hits.concat(pending, [h]).map((x) => x.command_id));
    pending.push(h);
    newOptions = noteSeen(h) || newOptions;
    if (h.trigger && h.trigger.produced_ms && h.dispatched_ms) latSeries.push(h.dispatched_ms - h.trigger.produced_ms);
  }
  while (latSeries.length > 60) latSeries.shift();
  if (newOptions) fillFilters();
  schedule();
}

function spark(svg, values) {
  if (!values.length) return;
  const w = 160, h = 28, max = Math.max(...values, 1);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - (v / max) * (h - 2) - 1}`).join(" ");
  svg.innerHTML = `<polyline fill="none" stroke="#12324a" stroke-width="1.5" points="${pts}"/>` +
    `<text x="${w - 2}" y="10" text-anchor="end" font-size="9">${fmt.int.format(Math.round(values[values.length - 1]))}</text>`;
}

// ----------------------------------------------------------------------------------------------- map
function project(lat, lon, box) {
  const x = (lon - box.lon0) / (box.lon1 - box.lon0) * box.w, y = box.h - (lat - box.lat0) / (box.lat1 - box.lat0) * box.h;
  return [x.toFixed(1), y.toFixed(1)];
}
function drawMap(track, cmd) {
  const w = 520, h = 260;
  const port = geo.ports.find((p) => p.code === cmd.port) || geo.ports[0];
  const pts = track.length ? track : [{lat: port.lat, lon: port.lon}];
  const lats = pts.map((p) => p.lat), lons = pts.map((p) => p.lon);
  const pad = 0.25;
  const box = {w, h, lat0: Math.min(...lats) - pad, lat1: Math.max(...lats) + pad, lon0: Math.min(...lons) - pad * 1.6, lon1: Math.max(...lons) + pad * 1.6};
  const line = (arr) => arr.map((p) => project(p[0], p[1], box).join(",")).join(" ");
  let svg = `<svg id="map" viewBox="0 0 ${w} ${h}" xmlns="http://www.w3.org/2000/svg">`;
  svg += `<polyline points="${line(geo.border)}" fill="none" stroke="#a4161a" stroke-dasharray="6 4" stroke-width="2"/>`;
  for (const k of Object.keys(geo.corridors)) svg += `<polyline points="${line(geo.corridors[k])}" fill="none" stroke="#9fb3a0" stroke-width="3"/>`;
  for (const p of geo.ports) { const [x, y] = project(p.lat, p.lon, box);
    svg += `<rect x="${x - 4}" y="${y - 4}" width="8" height="8" fill="#12324a"/><text x="${+x + 6}" y="${+y - 5}" font-size="10">${esc(portName(p.code))}</text>`; }
  if (track.length) {
    svg += `<polyline class="track" points="${track.map((p) => project(p.lat, p.lon, box).join(",")).join(" ")}" fill="none" stroke="#1f77b4" stroke-width="2"/>`;
    const last = track[track.length - 1], [x, y] = project(last.lat, last.lon, box);
    svg += `<circle cx="${x}" cy="${y}" r="5" fill="#1f77b4"/>`;
  }
  return svg + `<text x="6" y="${h - 6}" font-size="10" fill="#555">${esc(t("map_legend"))}</text></svg>`;
}

// -------------------------------------------------------------------------------------------- detail
async function openDetail(id) {
  if (selected !== id) stopDetailPoll();
  selected = id; markSelected(id);
  const r = await api(`/api/commands/${encodeURIComponent(id)}`);
  if (!r.ok) { lastDetail = null; $("#detail").innerHTML = `<p class="error">${esc((await r.json()).error)}</p>`; return; }
  if (selected !== id) return; // another hit was opened meanwhile
  lastDetail = await r.json();
  renderDetail();
}
function evidence(ev) {
  const items = Object.entries(ev || {}).map(([k, v]) => `<code>${esc(k)}</code> = ${esc(fmtValue(v, k))}`);
  return items.length ? `<div class="evidence">${items.join(" · ")}</div>` : "";
}
function renderDetail() {
  const d = lastDetail, cmd = d.command, st = d.status, id = cmd.command_id;
  const keep = $("#r-outcome") ? {o: $("#r-outcome").value, v: $("#r-value").value, n: $("#r-notes").value} : null;
  const reasons = cmd.reasons.map((x) => {
    const head = x.rule_id ? `<b>${esc(ruleName(x.rule_id))}</b> <code>${esc(x.rule_id)}</code>`
      : `<b>${esc(term(x.kind in I18N.en.kind ? "kind" : "selection", x.kind || ""))}</b>`;
    return `<li data-rule="${esc(x.rule_id || "")}">${head} <span class="reason">${esc(x.text)}</span>${evidence(x.evidence)}</li>`;
  }).join("");
  const factors = cmd.factors.map((x) => lang === "en" ? `<li>${esc(x.text)}</li>` :
    `<li><code>${esc(x.feature)}</code> = ${esc(fmtValue(x.value))} · ${esc(t(x.contribution >= 0 ? "raises" : "lowers"))}` +
    ` (${x.contribution >= 0 ? "+" : ""}${esc(fmt.num.format(x.contribution))})</li>`).join("");
  const facts = Object.entries(cmd.facts).filter(([, v]) => v !== "" && v !== 0 && v !== false && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `<div>${esc(k)}: ${esc(fmtValue(v, k))}</div>`).join("");
  let actions = "";
  if (role === "operator") {
    const done = st.status === "result" || st.status === "result_sent" || !!st.result_sent;
    const off = (yes) => (yes ? " disabled" : "");
    actions = `<div class="actions"><button id="b-ack"${off(st.status !== "sent")}>${esc(t("ack"))}</button>
      <select id="r-outcome">${["violation", "clean", "not_found"].map((o) => `<option value="${o}">${esc(term("outcome", o))}</option>`).join("")}</select>
      <input id="r-value" type="number" min="0" placeholder="${esc(t("value_found"))}"><input id="r-notes" placeholder="${esc(t("notes"))}">
      <button id="b-result"${off(done)}>${esc(t("report"))}</button> <span id="act-msg"></span></div>`;
  } else {
    actions = `<p class="muted">${esc(t("read_only"))}</p>`;
  }
  const officers = cmd.officers.length ? cmd.officers.join(", ") : "-";
  $("#detail").innerHTML = `<h2>${esc(term("lane", cmd.lane))} · ${esc(cmd.conveyance_id)} · ${esc(portName(cmd.port))}</h2>
    <div class="meta">${esc(t("d_status"))} <b id="st" data-status="${esc(st.status)}">${esc(term("status", st.status))}</b>` +
    `${st.outcome ? ` · ${esc(t("d_outcome"))} <b id="outcome" data-outcome="${esc(st.outcome)}">${esc(term("outcome", st.outcome))}</b>` : ""}` +
    ` · ${esc(t("d_deadline"))} ${esc(fmtDateTime(cmd.deadline_ts_ms))} · ${esc(t("d_officers"))} ${esc(officers)}` +
    ` · ${esc(t("d_selection"))} ${esc(term("selection", cmd.selection))} · ${esc(t("d_pack"))} v${esc(cmd.pack_version)}` +
    ` · ${esc(t("d_model"))} v${esc(cmd.model_version)}</div>
    <h3>${esc(t("d_why"))}</h3><ul class="reasons">${reasons}</ul>${factors ? `<h3>${esc(t("d_factors"))}</h3><ul class="factors">${factors}</ul>` : ""}
    ${cmd.missing.length ? `<p class="muted">${esc(t("d_missing"))}${lang === "zh" ? "：" : ": "}${esc(cmd.missing.join(", "))}</p>` : ""}
    <h3>${esc(t("d_facts"))}</h3><div class="facts">${facts}</div><h3>${esc(t("d_track"))}</h3>${drawMap(d.track, cmd)}${actions}`;
  if (role === "operator") {
    if (actMsg && actMsg.id === id) { // the answer to the last action stays until another hit is opened
      $("#act-msg").textContent = actMsg.status === "error" ? actMsg.error : term("status", actMsg.status);
      $("#act-msg").dataset.status = actMsg.status;
    }
    if (keep) { $("#r-outcome").value = keep.o; $("#r-value").value = keep.v; $("#r-notes").value = keep.n; }
    $("#b-ack").onclick = () => act(id, "ack", {});
    $("#b-result").onclick = () => act(id, "result", {outcome: $("#r-outcome").value,
      found_value_cny: +($("#r-value").value || 0), notes: $("#r-notes").value});
  }
}
function stopDetailPoll() { if (detailPoll) { clearInterval(detailPoll); detailPoll = null; } }
async function act(id, what, body) {
  const r = await api(`/api/commands/${encodeURIComponent(id)}/${what}`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const j = await r.json();
  const status = r.ok ? (what === "ack" ? String(j.status) : "result_sent") : null;
  if (status) for (const h of hits) if (h.command_id === id) h.status = status;
  if (status && lastDetail && lastDetail.command.command_id === id && lastDetail.status.status !== "result") {
    lastDetail.status.status = status;
  }
  actMsg = {id, status: r.ok ? j.status : "error", error: j.error};
  if (lastDetail && lastDetail.command.command_id === id) renderDetail();
  if (status === "result_sent") { // the worker records the result: show it when it lands (up to a minute)
    stopDetailPoll();
    let tries = 0;
    detailPoll = setInterval(async () => {
      if (++tries > 30 || selected !== id) { stopDetailPoll(); return; }
      const rr = await api(`/api/commands/${encodeURIComponent(id)}`);
      if (!rr.ok) return;
      const dd = await rr.json();
      if (dd.status.status === "result" && selected === id) {
        stopDetailPoll();
        lastDetail = dd; renderDetail();
        for (const h of hits) if (h.command_id === id) h.status = "result";
        schedule(true);
      }
    }, 2000);
  }
  if (status) schedule(true);
}

// --------------------------------------------------------------------------------------------- stats
async function refreshStats() {
  const r = await api("/api/stats"); const s = await r.json();
  const ev = s.totals.events || 0;
  if (lastEvents !== null) { epsSeries.push(Math.max(0, (ev - lastEvents) / 2)); if (epsSeries.length > 60) epsSeries.shift(); }
  lastEvents = ev;
  lastStats = s;
  renderStats(s);
  let newOptions = false;
  for (const p of Object.keys(s.sites)) if (!seenPorts.has(p)) { seenPorts.add(p); newOptions = true; }
  if (newOptions) fillFilters();
}
function renderStats(s) {
  spark($("#spark-eps"), epsSeries); spark($("#spark-lat"), latSeries);
  const share = parseFloat(s.meta.budget_share);  // the workers' inspection budget (BUKONG_POLICY)
  $("#versions").textContent = t("versions", {pack: s.meta.pack_version || "?", model: s.meta.model_version || "?",
    budget: Number.isFinite(share) ? `${+(share * 100).toFixed(2)}%` : "?",
    events: fmt.int.format(s.totals.events || 0), commands: fmt.int.format(s.totals.commands || 0),
    dead: fmt.int.format(s.totals.dead_letters || 0)});
  const table = (id, title, obj, name) => `<h3>${esc(title)}</h3><table id="${id}"><tr><th></th><th>${esc(t("s_hits"))}</th>` +
    `<th>${esc(t("s_dispatched"))}</th><th>${esc(t("s_results"))}</th><th>${esc(t("s_confirmed"))}</th><th>${esc(t("s_hit_rate"))}</th></tr>` +
    Object.entries(obj).sort().map(([k, v]) => `<tr data-key="${esc(k)}" data-results="${v.results || 0}" ` +
    `data-confirmed="${v.confirmed || 0}" data-hit-rate="${v.hit_rate === null ? "" : v.hit_rate}"><td>${name(k)}</td>` +
    `<td>${fmt.int.format(v.hits || 0)}</td><td>${fmt.int.format(v.dispatched || 0)}</td><td>${fmt.int.format(v.results || 0)}</td>` +
    `<td>${fmt.int.format(v.confirmed || 0)}</td><td class="rate">${v.hit_rate === null ? "-" : fmt.pct.format(v.hit_rate)}</td></tr>`).join("") + "</table>";
  const drift = s.drift.length ? `<h3>${esc(t("drift"))}</h3><ul id="drift">${s.drift.map((d) => `<li data-ts="${esc(d.ts_ms)}">` +
    `${esc(t("drift_line", {time: fmtDateTime(d.ts_ms), before: fmt.num.format(d.error_before), after: fmt.num.format(d.error_after),
      model: d.model_version}))}</li>`).join("")}</ul>` : "";
  $("#stats").innerHTML = table("per-rule", t("per_rule"), s.rules, (k) => `${esc(ruleName(k))} <code>${esc(k)}</code>`) +
    table("per-site", t("per_site"), s.sites, (k) => `${esc(portName(k))} <code>${esc(k)}</code>`) +
    leadTable(s.leads || {}) + drift;
}
function leadTable(leads) { // results and hit rate per intelligence-lead source (watchlist entries' source)
  const name = (k) => (term("lead", k) === k ? esc(k) : `${esc(term("lead", k))} <code>${esc(k)}</code>`);
  const rows = Object.entries(leads).sort().map(([k, v]) => `<tr data-key="${esc(k)}" data-results="${v.results || 0}" ` +
    `data-confirmed="${v.confirmed || 0}" data-hit-rate="${v.hit_rate === null ? "" : v.hit_rate}"><td>${name(k)}</td>` +
    `<td>${fmt.int.format(v.results || 0)}</td><td>${fmt.int.format(v.confirmed || 0)}</td>` +
    `<td class="rate">${v.hit_rate === null ? "-" : fmt.pct.format(v.hit_rate)}</td></tr>`).join("");
  return `<h3>${esc(t("per_lead"))}</h3><table id="per-lead"><tr><th></th><th>${esc(t("s_results"))}</th>` +
    `<th>${esc(t("s_confirmed"))}</th><th>${esc(t("s_hit_rate"))}</th></tr>` +
    (rows || `<tr><td colspan="4" class="muted">${esc(t("no_leads"))}</td></tr>`) + "</table>";
}

async function refreshRules() {
  const r = await api("/api/rules");
  if (!r.ok) return; // the list and stats fall back to rule ids
  const byId = {};
  for (const rule of (await r.json()).rules) byId[rule.id] = rule;
  rulesById = byId;
  fillFilters();
  if (lastStats) renderStats(lastStats);
  schedule(true);
}

async function start() {
  const r = await fetch("/api/whoami", {credentials: "same-origin"});
  if (!r.ok) { showLogin(); return; }
  role = (await r.json()).role;
  $("#who").textContent = t("role_" + role);
  $("#login").hidden = true;
  geo = await (await api("/api/geo")).json();
  await refreshRules().catch(() => {});
  fillFilters();
  const recent = (await (await api("/api/hits?limit=500")).json()).hits;
  onHits(recent.slice().reverse());
  // the stream resumes after the newest hit listed, so a hit that lands in between is not missed
  const since = recent.length && recent[0].stream_id ? `?since=${encodeURIComponent(recent[0].stream_id)}` : "";
  const es = new EventSource("/api/stream" + since);
  es.addEventListener("hits", (e) => onHits(JSON.parse(e.data)));
  $("#app").hidden = false;
  $("#hits tbody").addEventListener("click", (e) => { const tr = e.target.closest("tr"); if (tr) openDetail(tr.dataset.id); });
  for (const id of ["#f-port", "#f-lane", "#f-severity", "#f-rule"]) $(id).addEventListener("input", () => schedule(true));
  refreshStats(); setInterval(refreshStats, 2000);
  setInterval(() => refreshRules().catch(() => {}), 30000); // a published pack renames and adds rules
}

for (const b of document.querySelectorAll("#lang button")) b.addEventListener("click", () => setLang(b.dataset.lang));
applyLang();
$("#login-form").addEventListener("submit", login);
const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) { $("#token").value = params.get("token"); history.replaceState(null, "", "/"); login(new Event("submit")); }
else start();
