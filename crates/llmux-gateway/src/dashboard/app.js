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

// Shows (or clears) an error line. `from` is "load" for the periodic refresh and "action" for
// what the user did; a refresh clears only its own errors, so an action's error stays until
// the next action.
function showError(el, err, from = "action") {
  if (!err && from === "load" && el.dataset.from === "action") return;
  el.textContent = err ? String(err.message || err) : "";
  el.hidden = !err;
  el.dataset.from = from;
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

// The configured time zone's local time of `ms` ("2027-01-01 00:00 Europe/Berlin"); the server
// computes the instant (the period boundary), the page only writes it in that zone.
function zoned(ms, tz) {
  if (ms === null || ms === undefined) return "never";
  try {
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(ms));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${tz}`;
  } catch (_) {
    return time(ms).slice(0, 16) + " UTC";
  }
}

// Runs an admin call for a form or a button; its error goes to the tab's error line.
async function act(where, fn) {
  try {
    await fn();
    showError($("error-" + where), null);
    return true;
  } catch (e) {
    if (e.status === 401) {
      signOut("The admin key was refused.");
      return false;
    }
    showError($("error-" + where), e);
    return false;
  }
}

const json = (method, body) => ({
  method,
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(body),
});

function button(text, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// ---- Channels: list, add, edit, enable/disable, delete, test ----

// The last test of each channel, by name: {ok, latency_ms, model, error, kind} or {pending}.
const tests = new Map();
let channelEditing = null;

// "a, b" → ["a", "b"]; "a=x, b" → {a: "x", b: "b"} (public name = upstream name).
function parseModels(text) {
  const items = String(text).split(",").map((s) => s.trim()).filter(Boolean);
  if (!items.some((i) => i.includes("="))) return items;
  const out = {};
  for (const i of items) {
    const [pub, up] = i.split("=").map((s) => s.trim());
    out[pub] = up || pub;
  }
  return out;
}

const modelsText = (models) =>
  Object.entries(models).map(([pub, up]) => (pub === up ? pub : `${pub}=${up}`)).join(", ");

function testCell(c) {
  const td = document.createElement("td");
  td.className = "test-result";
  const t = tests.get(c.name);
  if (!t) return td;
  if (t.pending) {
    td.textContent = "testing…";
    td.classList.add("muted");
  } else if (t.ok) {
    td.textContent = `ok · ${int(t.latency_ms)} ms · ${t.model}`;
    td.classList.add("ok-status");
  } else {
    td.textContent = `failed · ${int(t.latency_ms)} ms · ${t.kind || "error"}: ${t.error || ""}`;
    td.classList.add("failed");
  }
  td.title = t.upstream_model ? `upstream model ${t.upstream_model}` : "";
  return td;
}

let lastChannels = [];

function renderChannels() {
  fillTable($("channels"), lastChannels, (c) => {
    const names = Object.keys(c.models);
    const found = Array.isArray(c.discovered) ? ` · ${int(c.discovered.length)} discovered` : "";
    const models = cell(`${names.length} · ${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}${found}`);
    models.title = modelsText(c.models) +
      (found ? `\ndiscovered (${c.discover}): ${c.discovered.join(", ")}` : `\ndiscovery: ${c.discover}`);
    const breaker = cell(c.reason ? `${c.breaker}: ${c.reason}` : c.breaker, c.breaker);
    if (c.next_trial_in_ms !== null && c.next_trial_in_ms !== undefined) {
      breaker.title = `next trial in ${Math.ceil(c.next_trial_in_ms / 1000)} s`;
    }
    const creds = c.keys.concat(Object.entries(c.credentials).map(([f, v]) => `${f}: ${v}`));
    const actions = document.createElement("td");
    actions.className = "actions";
    actions.append(button("Test", "test", () => testChannel(c.name)));
    actions.append(button("Discover", "discover", () => discoverChannel(c.name)));
    if (c.source === "api") actions.append(button("Edit", "edit", () => startChannelEdit(c)));
    actions.append(button(c.enabled ? "Disable" : "Enable", "toggle", () => toggleChannel(c)));
    if (c.source === "api") actions.append(button("Delete", "danger", () => deleteChannel(c.name)));
    const name = cell(c.name);
    name.title = c.source === "file" ? "from llmux.toml (only enable/disable here)" : "added through the API";
    return [
      name,
      cell(c.provider),
      models,
      cell(c.enabled ? "enabled" : "disabled", c.enabled ? "ok-status" : "failed"),
      breaker,
      cell(c.unpriced_models.length ? c.unpriced_models.join(", ") : "–", c.unpriced_models.length ? "warn" : ""),
      cell(creds.join(", ") || "–", "mono"),
      cell(c.priority, "num"),
      cell(c.weight, "num"),
      testCell(c),
      actions,
    ];
  });
  for (const tr of $("channels").tBodies[0].rows) {
    const c = lastChannels[tr.sectionRowIndex];
    if (c) tr.dataset.channel = c.name;
  }
}

async function loadChannels() {
  const [channels, ready] = await Promise.all([
    api("/admin/channels"),
    fetch("/readyz").then((r) => r.json()).catch(() => ({ status: "unknown" })),
  ]);
  $("ready").textContent =
    "readiness: " + ready.status +
    (ready.usable_channels !== undefined ? ` · ${ready.usable_channels} of ${ready.channels} channels usable` : "") +
    (ready.limits ? ` · limits: ${ready.limits}` : "");
  lastChannels = channels.channels;
  renderChannels();
}

async function testChannel(name) {
  tests.set(name, { pending: true });
  renderChannels();
  const ok = await act("channels", async () => {
    const r = await api("/admin/channels/" + encodeURIComponent(name) + "/test", json("POST", {}));
    tests.set(name, r);
  });
  if (!ok) tests.delete(name);
  renderChannels();
}

// Asks the channel's upstream for its model list now; the row then shows what was found (an
// upstream that cannot list its models answers an error, shown in the tab).
async function discoverChannel(name) {
  await act("channels", async () => {
    await api("/admin/channels/" + encodeURIComponent(name) + "/discover", json("POST", {}));
    await loadChannels();
  });
}

async function toggleChannel(c) {
  await act("channels", async () => {
    await api("/admin/channels/" + encodeURIComponent(c.name), json("PATCH", { enabled: !c.enabled }));
    await loadChannels();
  });
}

async function deleteChannel(name) {
  if (!window.confirm(`Delete channel ${name}? Requests in flight on it finish; new ones no longer use it.`)) return;
  await act("channels", async () => {
    await api("/admin/channels/" + encodeURIComponent(name), { method: "DELETE" });
    tests.delete(name);
    await loadChannels();
  });
}

async function addChannel(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { name: String(f.get("name")).trim(), provider: String(f.get("provider")).trim() };
  const put = (k, v) => {
    if (v !== "" && v !== null) body[k] = v;
  };
  put("api_key", String(f.get("api_key")));
  put("base_url", String(f.get("base_url")).trim());
  const models = parseModels(f.get("models"));
  if (Array.isArray(models) ? models.length : Object.keys(models).length) body.models = models;
  if (f.get("weight") !== "") body.weight = Number(f.get("weight"));
  if (f.get("priority") !== "") body.priority = Number(f.get("priority"));
  await act("channels", async () => {
    await api("/admin/channels", json("POST", body));
    ev.target.reset();
    await loadChannels();
  });
}

function startChannelEdit(c) {
  channelEditing = c.name;
  const f = $("channel-edit-form").elements;
  $("channel-edit-title").textContent = `Edit channel ${c.name} (${c.provider})`;
  f.base_url.value = c.base_url;
  f.models.value = modelsText(c.models);
  f.weight.value = String(c.weight);
  f.priority.value = String(c.priority);
  f.api_key.value = "";
  $("channel-edit").hidden = false;
}

function stopChannelEdit() {
  channelEditing = null;
  $("channel-edit").hidden = true;
}

async function saveChannelEdit(ev) {
  ev.preventDefault();
  if (channelEditing === null) return;
  const f = new FormData(ev.target);
  const base = String(f.get("base_url")).trim();
  const body = {
    base_url: base === "" ? null : base,
    models: parseModels(f.get("models")),
    weight: f.get("weight") === "" ? null : Number(f.get("weight")),
    priority: f.get("priority") === "" ? null : Number(f.get("priority")),
  };
  if (String(f.get("api_key")) !== "") body.api_key = String(f.get("api_key"));
  await act("channels", async () => {
    await api("/admin/channels/" + encodeURIComponent(channelEditing), json("PATCH", body));
    stopChannelEdit();
    await loadChannels();
  });
}

// ---- Keys and teams ----

let teamList = [];
let keyList = [];

function budgetText(b) {
  return [
    b.budget_tokens !== null && b.budget_tokens !== undefined ? int(b.budget_tokens) + " tokens" : null,
    b.budget_cost !== null && b.budget_cost !== undefined ? money(b.budget_cost) : null,
  ].filter(Boolean).join(" / ");
}

const PERIOD_WORD = { none: "for its life", daily: "per day", weekly: "per week", monthly: "per month" };

// The spend its budget counts now (this period's, or the lifetime's without a period).
function spentNowCell(r) {
  const n = r.budget_now;
  const td = cell(`${int(n.spent_tokens)} tok · ${money(n.spent_cost)}`, "num");
  td.title = `in all: ${int(r.spent_tokens)} tokens, ${money(r.spent_cost)}` + (n.period ? `\nperiod ${n.period}` : "");
  return td;
}

function resetCell(r) {
  const n = r.budget_now;
  const td = cell(r.budget_period === "none" ? "never" : zoned(n.resets_at_ms, n.timezone));
  if (n.period_start_ms !== null) td.title = "period began " + zoned(n.period_start_ms, n.timezone);
  return td;
}

// Fills a team <select> with the teams' names (kept when the list is unchanged).
function fillTeamSelect(sel) {
  const want = teamList.map((t) => t.name).join("\n");
  if (sel.dataset.teams === want) return;
  const current = sel.value;
  sel.dataset.teams = want;
  sel.replaceChildren(new Option("no team", ""), ...teamList.map((t) => new Option(t.name, t.name)));
  sel.value = teamList.some((t) => t.name === current) ? current : "";
}

async function loadTeamNames() {
  const { teams } = await api("/admin/teams");
  teamList = teams;
  for (const sel of [$("key-form").elements.team, $("edit-form").elements.team]) fillTeamSelect(sel);
}

// A key's name, with its prefix when another key has the same name.
function keyLabel(k) {
  const twin = keyList.some((o) => o.id !== k.id && o.name === k.name);
  return twin ? `${k.name} (${k.prefix}…)` : k.name;
}

async function loadKeys() {
  const [{ keys }] = await Promise.all([api("/admin/keys"), loadTeamNames()]);
  keyList = keys;
  const now = Date.now() / 1000;
  fillTable($("keys"), keys, (k) => {
    const state = k.revoked ? "revoked" : k.expires_at && k.expires_at <= now ? "expired" : "active";
    const budget = budgetText(k);
    const actions = document.createElement("td");
    actions.className = "actions";
    if (state !== "revoked") actions.appendChild(button("Edit", "edit", () => startEdit(k)));
    if (state === "active") actions.appendChild(button("Revoke", "danger", () => revoke(k)));
    const name = cell(keyLabel(k));
    name.title = "key id " + k.id;
    return [
      name,
      cell(k.prefix + "…", "mono"),
      cell(k.team || "–"),
      cell(k.models.length ? k.models.join(", ") : "all"),
      cell(k.rpm, "num"),
      cell(k.tpm, "num"),
      cell(budget ? `${budget} ${PERIOD_WORD[k.budget_period] || k.budget_period}` : "–"),
      spentNowCell(k),
      resetCell(k),
      cell(`${int(k.spent_tokens)} tok · ${money(k.spent_cost)}`, "num"),
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
  $("edit-title").textContent = `Edit key ${k.name} (${k.prefix}…)`;
  f.name.value = k.name;
  fillTeamSelect(f.team);
  f.team.value = k.team || "";
  f.models.value = k.models.join(", ");
  f.rpm.value = orEmpty(k.rpm);
  f.tpm.value = orEmpty(k.tpm);
  f.budget_tokens.value = orEmpty(k.budget_tokens);
  f.budget_cost.value = orEmpty(k.budget_cost);
  f.budget_period.value = k.budget_period || "none";
  f.expires.value = k.expires_at ? new Date(k.expires_at * 1000).toISOString().slice(0, 10) : "";
  $("edit").hidden = false;
}

function stopEdit() {
  editing = null;
  $("edit").hidden = true;
}

// A key form's fields as the admin API takes them: an empty limit is null (none), an empty
// model list allows every model, the expiry date is 00:00 UTC that day in unix seconds, no
// team is null.
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
    budget_period: String(f.get("budget_period") || "none"),
    team: f.get("team") ? String(f.get("team")) : null,
    expires_at: f.get("expires") ? Math.floor(Date.parse(f.get("expires") + "T00:00:00Z") / 1000) : null,
  };
}

// Sends every field: an empty one removes that limit (null), as the form says.
async function saveEdit(ev) {
  ev.preventDefault();
  if (editing === null) return;
  const body = keyBody(ev.target);
  await act("keys", async () => {
    await api("/admin/keys/" + encodeURIComponent(editing), json("PATCH", body));
    stopEdit();
    await loadKeys();
  });
}

async function revoke(k) {
  if (!window.confirm(`Revoke key ${k.name} (${k.prefix}…)? Clients using it get 401 from now on.`)) return;
  await act("keys", async () => {
    await api("/admin/keys/" + encodeURIComponent(k.id), { method: "DELETE" });
    await loadKeys();
  });
}

async function createKey(ev) {
  ev.preventDefault();
  const body = keyBody(ev.target);
  if (body.team === null) delete body.team;
  await act("keys", async () => {
    const created = await api("/admin/keys", json("POST", body));
    $("new-key-value").textContent = created.key;
    $("new-key").hidden = false;
    ev.target.reset();
    await loadKeys();
  });
}

let teamEditing = null;

async function loadTeams() {
  const [{ keys }] = await Promise.all([api("/admin/keys"), loadTeamNames()]);
  keyList = keys;
  fillTable($("teams"), teamList, (t) => {
    const members = keys.filter((k) => k.team_id === t.id);
    const active = members.filter((k) => !k.revoked);
    const keysCell = cell(members.length ? `${active.length} · ${active.map((k) => k.name).join(", ")}` : "0");
    keysCell.title = members.length ? `${members.length} keys, ${members.length - active.length} revoked` : "no keys";
    const actions = document.createElement("td");
    actions.className = "actions";
    actions.append(button("Edit", "edit", () => startTeamEdit(t)), button("Delete", "danger", () => deleteTeam(t, active.length)));
    return [
      cell(t.name),
      keysCell,
      cell(budgetText(t) || "–"),
      cell(t.budget_period),
      spentNowCell(t),
      resetCell(t),
      cell(t.rpm, "num"),
      cell(t.tpm, "num"),
      cell(`${int(t.spent_tokens)} tok · ${money(t.spent_cost)}`, "num"),
      actions,
    ];
  });
}

function teamBody(form) {
  const f = new FormData(form);
  const num = (name) => (f.get(name) === "" ? null : Number(f.get(name)));
  return {
    name: String(f.get("name")).trim(),
    rpm: num("rpm"),
    tpm: num("tpm"),
    budget_tokens: num("budget_tokens"),
    budget_cost: num("budget_cost"),
    budget_period: String(f.get("budget_period") || "none"),
  };
}

async function createTeam(ev) {
  ev.preventDefault();
  const body = teamBody(ev.target);
  for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  await act("teams", async () => {
    await api("/admin/teams", json("POST", body));
    ev.target.reset();
    await loadTeams();
  });
}

function startTeamEdit(t) {
  teamEditing = t.name;
  const f = $("team-edit-form").elements;
  $("team-edit-title").textContent = `Edit team ${t.name}`;
  f.name.value = t.name;
  f.rpm.value = orEmpty(t.rpm);
  f.tpm.value = orEmpty(t.tpm);
  f.budget_tokens.value = orEmpty(t.budget_tokens);
  f.budget_cost.value = orEmpty(t.budget_cost);
  f.budget_period.value = t.budget_period;
  $("team-edit").hidden = false;
}

function stopTeamEdit() {
  teamEditing = null;
  $("team-edit").hidden = true;
}

async function saveTeamEdit(ev) {
  ev.preventDefault();
  if (teamEditing === null) return;
  const body = teamBody(ev.target);
  await act("teams", async () => {
    await api("/admin/teams/" + encodeURIComponent(teamEditing), json("PATCH", body));
    stopTeamEdit();
    await loadTeams();
  });
}

async function deleteTeam(t, keys) {
  const msg = keys
    ? `Delete team ${t.name}? Its ${keys} key(s) leave the team and keep their own limits.`
    : `Delete team ${t.name}?`;
  if (!window.confirm(msg)) return;
  await act("teams", async () => {
    await api("/admin/teams/" + encodeURIComponent(t.name) + "?detach=true", { method: "DELETE" });
    await loadTeams();
  });
}

async function loadUsage() {
  const f = new FormData($("usage-form"));
  const q = new URLSearchParams({ by: f.get("by") });
  if (f.get("since")) q.set("since", f.get("since"));
  const { usage } = await api("/admin/usage?" + q);
  fillTable($("usage"), usage, (u) => {
    const by = q.get("by");
    let td;
    if (by === "key") {
      td = cell(u.group === "none" ? "static key" : u.name || "deleted key");
      if (u.group !== "none") td.title = "key id " + u.group;
    } else {
      td = cell(u.group === "none" ? (by === "team" ? "no team" : "–") : u.group);
    }
    return [
      td,
      cell(int(u.requests), "num"),
      cell(int(u.input_tokens), "num"),
      cell(int(u.output_tokens), "num"),
      cell(money(u.cost), "num"),
    ];
  });
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
  const td = cell(r.key_name || "deleted key");
  td.title = "key id " + r.key_id;
  return td;
}

// The team's name from the teams list (a team deleted since is said so).
function teamCell(r) {
  if (r.team_id === null || r.team_id === undefined) return cell("–", "muted");
  const t = teamList.find((x) => x.id === r.team_id);
  const td = cell(t ? t.name : "deleted team");
  td.title = "team id " + r.team_id;
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
    teamCell(r),
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

// Fills the key filter with the keys' names (kept when the list is unchanged), and reads the
// teams' names for the team column.
async function loadKeyOptions() {
  const [{ keys }] = await Promise.all([api("/admin/keys"), loadTeamNames()]);
  keyList = keys;
  const sel = $("search-form").elements.key;
  const current = sel.value;
  const want = keys.map((k) => `${k.id}:${k.name}`).join("\n");
  if (sel.dataset.keys === want) return;
  sel.dataset.keys = want;
  sel.replaceChildren(new Option("any key", ""));
  for (const k of keys) sel.appendChild(new Option(keyLabel(k), String(k.id)));
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
    item.title = (data.by === "key" || data.by === "team") && s.id !== "none" && s.id !== OTHER
      ? `${data.by} id ${s.id}` : s.id;
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
  teams: loadTeams,
  usage: loadUsage,
  requests: () => (pagedOlder ? Promise.resolve() : loadRequests(false)),
};

async function refresh() {
  const shown = tab;
  try {
    await loaders[shown]();
    showError($("error-" + shown), null, "load");
  } catch (e) {
    if (e.status === 401) return signOut("The admin key was refused.");
    showError($("error-" + shown), e, "load");
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
  $("channel-form").addEventListener("submit", addChannel);
  $("channel-edit-form").addEventListener("submit", saveChannelEdit);
  $("channel-edit-cancel").addEventListener("click", stopChannelEdit);
  $("team-form").addEventListener("submit", createTeam);
  $("team-edit-form").addEventListener("submit", saveTeamEdit);
  $("team-edit-cancel").addEventListener("click", stopTeamEdit);
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
    await act("requests", () => loadRequests(true));
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
