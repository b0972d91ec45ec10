// The llmux gateway dashboard: a thin page over the admin API of the gateway that served it.
// Every value from the API is written with textContent (never parsed as HTML). The admin key
// lives in sessionStorage (this tab only) and is sent as a bearer token to /admin/* and nowhere
// else.
"use strict";

const KEY_STORE = "llmux-admin-key";
const REFRESH_MS = 5000;
let tab = "channels";
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
    cell(u.group),
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

async function loadRequests() {
  const { records } = await api("/admin/usage/records?limit=100");
  fillTable($("requests"), records, (r) => {
    const notes = [
      r.stream ? "stream" : null,
      r.cancelled ? "client cancelled" : null,
      r.usage_estimated ? "usage estimated" : null,
      r.error_kind && !r.cancelled ? r.error_kind : null,
    ].filter(Boolean).join(", ");
    return [
      cell(time(r.at_ms)),
      cell(r.key_id === null ? "static" : r.key_id),
      cell(r.model),
      cell(r.channel),
      cell(r.status, r.cancelled ? "cancelled" : r.status >= 400 ? "failed" : ""),
      cell(int(r.input_tokens), "num"),
      cell(int(r.output_tokens), "num"),
      cell(money(r.cost), "num"),
      cell(r.latency_ms, "num"),
      cell(r.ttft_ms, "num"),
      cell(notes),
    ];
  });
}

const loaders = { channels: loadChannels, keys: loadKeys, usage: loadUsage, requests: loadRequests };

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
  for (const b of document.querySelectorAll("nav button[data-tab]")) {
    b.addEventListener("click", () => selectTab(b.dataset.tab));
  }
  if (adminKey()) signIn(adminKey());
});
