// The llmux gateway dashboard: a thin page over the admin API of the gateway that served it.
// Every value from the API is written with textContent (never parsed as HTML). The admin key
// lives in sessionStorage (this tab only) and is sent as a bearer token to /admin/* and nowhere
// else.
"use strict";

const KEY_STORE = "llmux-admin-key";
const REFRESH_MS = 5000;
let tab = "charts";
let timer = null;

const $ = (id) => document.getElementById(id);

function adminKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

// Calls the admin API; throws an Error with the gateway's message on a non-2xx answer.
async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + adminKey() }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    body = null;
  }
  if (!resp.ok) {
    const msg = body && body.error && body.error.message ? body.error.message : "HTTP " + resp.status;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function showError(el, err) {
  el.textContent = err ? String(err.message || err) : "";
  el.hidden = !err;
}

// A table cell; `cls` adds a class (numbers are right-aligned with "num").
function cell(value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "–" : String(value);
  if (cls) td.className = cls;
  return td;
}

function fillTable(table, rows, render) {
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const td of render(row)) tr.appendChild(td);
    tbody.appendChild(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell("nothing yet");
    td.colSpan = table.tHead.rows[0].cells.length;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const money = (n) => (n === null || n === undefined ? "–" : Number(n).toFixed(6));
const time = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
const date = (secs) => (secs ? new Date(secs * 1000).toISOString().slice(0, 10) : "never");

async function loadChannels() {
  const [channels, ready] = await Promise.all([
    api("/admin/channels"),
    fetch("/readyz").then((r) => r.json()),
  ]);
  $("ready").textContent =
    "readiness: " + ready.status +
    (ready.usable_channels !== undefined ? ` · ${ready.usable_channels} of ${ready.channels} channels usable` : "") +
    (ready.limits ? ` · limits: ${ready.limits}` : "");
  fillTable($("channels"), channels.channels, (c) => [
    cell(c.name),
    cell(c.provider),
    cell(c.base_url),
    cell(Object.entries(c.models).map(([pub, up]) => (pub === up ? pub : `${pub} → ${up}`)).join(", ")),
    cell(c.priority, "num"),
    cell(c.weight, "num"),
    cell(c.breaker, c.breaker),
  ]);
}

async function loadKeys() {
  const { keys } = await api("/admin/keys");
  const now = Date.now() / 1000;
  fillTable($("keys"), keys, (k) => {
    const state = k.revoked ? "revoked" : k.expires_at && k.expires_at <= now ? "expired" : "active";
    const budget = [
      k.budget_tokens !== null && k.budget_tokens !== undefined ? int(k.budget_tokens) + " tokens" : null,
      k.budget_cost !== null && k.budget_cost !== undefined ? money(k.budget_cost) : null,
    ].filter(Boolean).join(" / ");
    const actions = document.createElement("td");
    if (state !== "revoked") {
      const e = document.createElement("button");
      e.textContent = "Edit";
      e.className = "edit";
      e.addEventListener("click", () => startEdit(k));
      actions.appendChild(e);
    }
    if (state === "active") {
      const b = document.createElement("button");
      b.textContent = "Revoke";
      b.className = "danger";
      b.addEventListener("click", () => revoke(k.id, k.name));
      actions.appendChild(b);
    }
    return [
      cell(k.id, "num"),
      cell(k.name),
      cell(k.prefix + "…"),
      cell(k.models.length ? k.models.join(", ") : "all"),
      cell(k.rpm, "num"),
      cell(k.tpm, "num"),
      cell(budget || "–"),
      cell(int(k.spent_tokens), "num"),
      cell(money(k.spent_cost), "num"),
      cell(date(k.expires_at)),
      cell(state, state === "active" ? "active-key" : state),
      actions,
    ];
  });
}

// The key being edited (its id), or null.
let editing = null;

const orEmpty = (v) => (v === null || v === undefined ? "" : String(v));

function startEdit(k) {
  editing = k.id;
  const f = $("edit-form").elements;
  $("edit-title").textContent = `Edit key ${k.id} (${k.prefix}…)`;
  f.name.value = k.name;
  f.models.value = k.models.join(", ");
  f.rpm.value = orEmpty(k.rpm);
  f.tpm.value = orEmpty(k.tpm);
  f.budget_tokens.value = orEmpty(k.budget_tokens);
  f.budget_cost.value = orEmpty(k.budget_cost);
  f.expires.value = k.expires_at ? new Date(k.expires_at * 1000).toISOString().slice(0, 10) : "";
  $("edit").hidden = false;
}

function stopEdit() {
  editing = null;
  $("edit").hidden = true;
}

// A key form's fields as the admin API takes them: an empty limit is null (none), an empty
// model list allows every model, the expiry date is 00:00 UTC that day in unix seconds.
function keyBody(form) {
  const f = new FormData(form);
  const num = (name) => (f.get(name) === "" ? null : Number(f.get(name)));
  return {
    name: String(f.get("name")).trim(),
    models: String(f.get("models")).split(",").map((s) => s.trim()).filter(Boolean),
    rpm: num("rpm"),
    tpm: num("tpm"),
    budget_tokens: num("budget_tokens"),
    budget_cost: num("budget_cost"),
    expires_at: f.get("expires") ? Math.floor(Date.parse(f.get("expires") + "T00:00:00Z") / 1000) : null,
  };
}

// Sends every field: an empty one removes that limit (null), as the form says.
async function saveEdit(ev) {
  ev.preventDefault();
  if (editing === null) return;
  const body = keyBody(ev.target);
  try {
    await api("/admin/keys/" + encodeURIComponent(editing), {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    stopEdit();
    showError($("error"), null);
    await loadKeys();
  } catch (e) {
    showError($("error"), e);
  }
}

async function revoke(id, name) {
  if (!window.confirm(`Revoke key ${id} (${name})? Clients using it get 401 from now on.`)) return;
  try {
    await api("/admin/keys/" + encodeURIComponent(id), { method: "DELETE" });
    await loadKeys();
  } catch (e) {
    showError($("error"), e);
  }
}

async function createKey(ev) {
  ev.preventDefault();
  const body = keyBody(ev.target);
  try {
    const created = await api("/admin/keys", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    $("new-key-value").textContent = created.key;
    $("new-key").hidden = false;
    ev.target.reset();
    showError($("error"), null);
    await loadKeys();
  } catch (e) {
    showError($("error"), e);
  }
}

async function loadUsage() {
  const f = new FormData($("usage-form"));
  const q = new URLSearchParams({ by: f.get("by") });
  if (f.get("since")) q.set("since", f.get("since"));
  const { usage } = await api("/admin/usage?" + q);
  fillTable($("usage"), usage, (u) => [
    cell(u.name ? `${u.name} (#${u.group})` : u.group === "none" ? "no key" : u.group),
    cell(int(u.requests), "num"),
    cell(int(u.input_tokens), "num"),
    cell(int(u.output_tokens), "num"),
    cell(money(u.cost), "num"),
  ]);
  const sum = (k) => usage.reduce((a, u) => a + Number(u[k] || 0), 0);
  const foot = $("usage").tFoot;
  foot.replaceChildren();
  const tr = document.createElement("tr");
  for (const td of [
    cell("total"),
    cell(int(sum("requests")), "num"),
    cell(int(sum("input_tokens")), "num"),
    cell(int(sum("output_tokens")), "num"),
    cell(money(sum("cost")), "num"),
  ]) tr.appendChild(td);
  foot.appendChild(tr);
}

// ---- Request log: search, filters and paging over /admin/usage/records ----

// The cursor of the next (older) page, or null; `pagedOlder` while older pages are shown (the
// periodic refresh then leaves the list alone).
let nextPage = null;
let pagedOlder = false;

function searchQuery() {
  const f = new FormData($("search-form"));
  const q = new URLSearchParams({ limit: "100" });
  for (const name of ["q", "key", "model", "status"]) {
    const v = String(f.get(name) || "").trim();
    if (v) q.set(name, v);
  }
  if (f.get("range")) q.set("from", String(Date.now() - Number(f.get("range"))));
  return q;
}

// MM-DD HH:MM:SS (UTC), the full time in the tooltip.
function timeCell(ms) {
  const td = cell(time(ms).slice(5, 19));
  td.title = time(ms);
  return td;
}

function keyCell(r) {
  if (r.key_id === null || r.key_id === undefined) return cell("static key", "muted");
  const td = cell(r.key_name || "#" + r.key_id);
  td.title = "key id " + r.key_id;
  return td;
}

function requestRow(r) {
  const notes = [
    r.stream ? "stream" : null,
    r.cancelled ? "client cancelled" : null,
    r.usage_estimated ? "usage estimated" : null,
    r.error_kind && !r.cancelled ? r.error_kind : null,
  ].filter(Boolean).join(", ");
  const id = cell(r.request_id.slice(-12), "mono");
  id.title = r.request_id + (r.client_request_id ? "\nclient: " + r.client_request_id : "");
  return [
    timeCell(r.at_ms),
    keyCell(r),
    cell(r.model),
    cell(r.channel),
    cell(r.status, r.cancelled ? "cancelled" : r.status >= 400 || r.status === 0 ? "failed" : "ok-status"),
    cell(int(r.input_tokens), "num"),
    cell(int(r.output_tokens), "num"),
    cell(money(r.cost), "num"),
    cell(int(r.latency_ms), "num"),
    cell(r.ttft_ms === null ? null : int(r.ttft_ms), "num"),
    id,
    cell(notes),
  ];
}

// Fills the key filter with the keys' names (kept when the list is unchanged).
async function loadKeyOptions() {
  const { keys } = await api("/admin/keys");
  const sel = $("search-form").elements.key;
  const current = sel.value;
  const want = keys.map((k) => `${k.id}:${k.name}`).join("\n");
  if (sel.dataset.keys === want) return;
  sel.dataset.keys = want;
  sel.replaceChildren(new Option("any key", ""));
  for (const k of keys) sel.appendChild(new Option(`${k.name} (#${k.id})`, String(k.id)));
  sel.value = current;
}

async function loadRequests(more) {
  const q = searchQuery();
  if (more && nextPage) q.set("before", nextPage);
  const [page] = await Promise.all([api("/admin/usage/records?" + q), more ? null : loadKeyOptions()]);
  const tbody = $("requests").tBodies[0];
  if (more) {
    for (const r of page.records) {
      const tr = document.createElement("tr");
      for (const td of requestRow(r)) tr.appendChild(td);
      tbody.appendChild(tr);
    }
  } else {
    fillTable($("requests"), page.records, requestRow);
    const models = new Set(page.records.map((r) => r.model));
    $("model-names").replaceChildren(...[...models].sort().map((m) => new Option(m)));
  }
  nextPage = page.next;
  $("older").hidden = !page.next;
  pagedOlder = Boolean(more);
  const shown = [...tbody.rows].filter((tr) => tr.cells.length > 1).length;
  const filtered = [...q.keys()].some((k) => k !== "limit" && k !== "before");
  $("search-note").textContent =
    `${shown} request${shown === 1 ? "" : "s"} shown, newest first` +
    (filtered ? " (filtered)" : "") + (page.next ? " · more below" : "");
}

// ---- Overview: charts over /admin/usage/series, drawn as inline SVG ----

const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
  "#db2777", "#4f46e5", "#65a30d", "#0d9488", "#b91c1c", "#7c3aed", "#c2410c", "#0369a1",
  "#a16207", "#be185d", "#15803d", "#6d28d9"];
const OTHER = "__other__";
const SVG = "http://www.w3.org/2000/svg";
let lastSeries = null;

function svg(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

// A short number: 1.2k, 3.4M; costs keep small fractions.
function short(n, kind) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (kind === "cost") return n === 0 ? "0" : n < 0.01 ? n.toPrecision(2) : n < 100 ? n.toFixed(2) : Math.round(n).toLocaleString("en-US");
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(1);
}

// An axis maximum and step: 1, 2 or 5 times a power of ten, four steps or so.
// Counts and milliseconds step by whole numbers.
function niceScale(max, whole) {
  if (!(max > 0)) return whole ? { top: 4, step: 1 } : { top: 1, step: 0.25 };
  const raw = max / 4;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw);
  if (whole) step = Math.max(1, Math.ceil(step));
  return { top: Math.ceil(max / step) * step, step };
}

function bucketLabel(ms, bucket, long) {
  const iso = new Date(ms).toISOString();
  if (bucket === "day") return iso.slice(5, 10);
  return long ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 16);
}

// Draws lines (one per entry of `lines`: {label, color, dashed, values}) over `times` into
// `box`, sized to the box; `kind` formats the axis. Missing values (null) break a line.
function drawChart(box, times, lines, kind, bucket) {
  const width = Math.max(260, Math.floor(box.clientWidth || 480));
  const height = width < 420 ? 170 : 200;
  const pad = { l: 46, r: 10, t: 10, b: 24 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  let max = 0;
  for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
  const { top, step } = niceScale(max, kind !== "cost");
  const n = times.length;
  const x = (i) => pad.l + (n <= 1 ? w / 2 : (i * w) / (n - 1));
  const y = (v) => pad.t + h - (v / top) * h;
  for (let v = 0; v <= top + step / 2; v += step) {
    svg("line", { x1: pad.l, x2: pad.l + w, y1: y(v), y2: y(v), class: v === 0 ? "axis" : "grid" }, root);
    svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, root).textContent = short(v, kind);
  }
  const labels = Math.max(2, Math.min(n, Math.floor(w / 80)));
  for (let j = 0; j < labels && n > 0; j++) {
    const i = n === 1 ? 0 : Math.round((j * (n - 1)) / (labels - 1));
    const anchor = n === 1 ? "middle" : j === 0 ? "start" : j === labels - 1 ? "end" : "middle";
    svg("text", { x: x(i), y: height - 6, "text-anchor": anchor, class: "tick" }, root).textContent =
      bucketLabel(times[i], bucket, false);
  }
  for (const l of lines) {
    let d = "";
    let pen = false;
    let dots = 0;
    l.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
      dots++;
    });
    if (!d) continue;
    svg("path", { d, fill: "none", stroke: l.color, "stroke-width": 1.8, "stroke-dasharray": l.dashed ? "5 3" : "none", "stroke-linejoin": "round", class: "line" }, root);
    if (dots <= 40) {
      l.values.forEach((v, i) => {
        if (v !== null) svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: l.color }, root);
      });
    }
  }
  // One transparent column per bucket, whose tooltip lists every line's value there.
  const colW = n <= 1 ? w : w / (n - 1);
  times.forEach((t, i) => {
    const rows = lines.filter((l) => l.values[i] !== null && l.values[i] !== 0)
      .map((l) => `${l.label}: ${short(l.values[i], kind)}`);
    const r = svg("rect", { x: x(i) - colW / 2, y: pad.t, width: colW, height: h, class: "hover" }, root);
    svg("title", {}, r).textContent = bucketLabel(t, bucket, true) + " UTC\n" + (rows.join("\n") || "nothing");
  });
  box.replaceChildren(root);
}

const METRICS = {
  requests: { kind: "count", get: (p) => p.requests, fill: 0 },
  tokens: { kind: "count", get: (p) => p.input_tokens + p.output_tokens, fill: 0 },
  cost: { kind: "cost", get: (p) => p.cost, fill: 0 },
  errors: { kind: "count", get: (p) => p.errors, fill: 0 },
  latency: { kind: "ms", pct: ["latency_p50_ms", "latency_p99_ms"] },
  ttft: { kind: "ms", pct: ["ttft_p50_ms", "ttft_p99_ms"] },
};

function renderCharts(data) {
  const times = [];
  const first = Math.floor(data.from_ms / data.bucket_ms) * data.bucket_ms;
  for (let t = first; t < data.to_ms && times.length < 1000; t += data.bucket_ms) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const colors = new Map();
  data.series.forEach((s, i) => colors.set(s.id, s.id === OTHER ? "#9ca3af" : PALETTE[i % PALETTE.length]));
  const bySeries = new Map(data.series.map((s) => [s.id, []]));
  for (const p of data.points) if (bySeries.has(p.series)) bySeries.get(p.series).push(p);

  // Totals over the range.
  const sum = (f) => data.points.reduce((a, p) => a + f(p), 0);
  const reqs = sum((p) => p.requests);
  const errs = sum((p) => p.errors);
  const tiles = [
    ["requests", int(reqs)],
    ["tokens", short(sum((p) => p.input_tokens + p.output_tokens), "count")],
    ["cost", short(sum((p) => p.cost), "cost")],
    ["errors", reqs ? `${int(errs)} · ${((100 * errs) / reqs).toFixed(1)}%` : "0"],
  ];
  $("tiles").replaceChildren(...tiles.map(([name, value]) => {
    const d = document.createElement("div");
    d.className = "tile";
    d.dataset.tile = name;
    const v = document.createElement("strong");
    v.textContent = value;
    const l = document.createElement("span");
    l.textContent = name;
    d.append(v, l);
    return d;
  }));

  $("legend").replaceChildren(...data.series.map((s) => {
    const item = document.createElement("span");
    item.className = "item";
    const sw = document.createElement("i");
    sw.className = "swatch";
    sw.dataset.color = colors.get(s.id);
    item.append(sw, document.createTextNode(`${s.label} · ${int(s.requests)}`));
    item.title = data.by === "key" && s.id !== "none" && s.id !== OTHER ? `key id ${s.id}` : s.id;
    return item;
  }));
  // Swatch colors through the CSSOM (the page's policy allows no inline style attributes).
  for (const sw of $("legend").querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;

  for (const fig of document.querySelectorAll("#charts .chart")) {
    const m = METRICS[fig.dataset.metric];
    const lines = [];
    for (const s of data.series) {
      const pts = bySeries.get(s.id);
      const series = (get, dashed, suffix) => {
        const values = times.map(() => (m.fill === 0 ? 0 : null));
        for (const p of pts) {
          const i = index.get(p.at_ms);
          if (i !== undefined) values[i] = get(p);
        }
        lines.push({ label: s.label + suffix, color: colors.get(s.id), dashed, values });
      };
      if (m.pct) {
        series((p) => p[m.pct[0]], false, " p50");
        series((p) => p[m.pct[1]], true, " p99");
      } else {
        series(m.get, false, "");
      }
    }
    drawChart(fig.querySelector(".plot"), times, lines, m.kind, data.bucket);
  }
  const empty = data.series.length === 0;
  $("charts-note").textContent = empty
    ? "No requests in this range yet."
    : `${times.length} buckets of one ${data.bucket} (UTC) · by ${data.by}` +
      (data.series.some((s) => s.id === OTHER) ? " · smaller groups summed as “other”" : "") +
      " · percentiles are exact (nearest rank) per bucket";
}

async function loadCharts() {
  const f = new FormData($("charts-form"));
  const to = Date.now();
  const q = new URLSearchParams({ from: String(to - Number(f.get("range"))), to: String(to), by: f.get("by") });
  lastSeries = await api("/admin/usage/series?" + q);
  renderCharts(lastSeries);
}

const loaders = {
  charts: loadCharts,
  channels: loadChannels,
  keys: loadKeys,
  usage: loadUsage,
  requests: () => (pagedOlder ? Promise.resolve() : loadRequests(false)),
};

async function refresh() {
  try {
    await loaders[tab]();
    showError($("error"), null);
  } catch (e) {
    if (e.status === 401) return signOut("The admin key was refused.");
    showError($("error"), e);
  }
}

function schedule() {
  clearInterval(timer);
  timer = $("auto").checked ? setInterval(refresh, REFRESH_MS) : null;
}

function selectTab(name) {
  tab = name;
  for (const b of document.querySelectorAll("nav button[data-tab]")) {
    b.classList.toggle("active", b.dataset.tab === name);
    $("tab-" + b.dataset.tab).hidden = b.dataset.tab !== name;
  }
  refresh();
}

async function signIn(key) {
  sessionStorage.setItem(KEY_STORE, key);
  try {
    await api("/admin/channels");
  } catch (e) {
    return signOut(e.status === 401 ? "The admin key was refused." : e.message);
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("status").textContent = "signed in";
  selectTab(tab);
  schedule();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  clearInterval(timer);
  $("app").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("status").textContent = "not signed in";
  showError($("login-error"), message ? new Error(message) : null);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("admin-key").value);
    $("admin-key").value = "";
  });
  $("signout").addEventListener("click", () => signOut());
  $("key-form").addEventListener("submit", createKey);
  $("edit-form").addEventListener("submit", saveEdit);
  $("edit-cancel").addEventListener("click", stopEdit);
  $("usage-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    refresh();
  });
  $("auto").addEventListener("change", schedule);
  $("charts-form").addEventListener("change", () => refresh());
  const search = () => {
    pagedOlder = false;
    refresh();
  };
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search();
  });
  $("search-form").addEventListener("reset", () => setTimeout(search, 0));
  for (const name of ["key", "status", "range"]) {
    $("search-form").elements[name].addEventListener("change", search);
  }
  $("older").addEventListener("click", async () => {
    try {
      await loadRequests(true);
    } catch (e) {
      showError($("error"), e);
    }
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (tab === "charts" && lastSeries) renderCharts(lastSeries);
    }, 150);
  });
  for (const b of document.querySelectorAll("nav button[data-tab]")) {
    b.addEventListener("click", () => selectTab(b.dataset.tab));
  }
  if (adminKey()) signIn(adminKey());
});
