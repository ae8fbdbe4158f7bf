// The status page: every value is set with textContent, never parsed as HTML, so a
// tenant's name or an error message cannot inject markup.
"use strict";
const key = "auditsync-admin-token";
const $ = (selector) => document.querySelector(selector);

async function api(method, path) {
  const answer = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + sessionStorage.getItem(key) },
  });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const message = body.error ? body.error.message : answer.statusText;
    const error = new Error(message);
    error.status = answer.status;
    throw error;
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function age(seconds) {
  if (!seconds) return "";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

async function verify(tenant, name, result) {
  result.textContent = "verifying…";
  try {
    const path = "/v1/tenants/" + encodeURIComponent(tenant) + "/destinations/" +
      encodeURIComponent(name) + "/verify";
    const answer = await api("POST", path);
    result.textContent = answer.ok ? "verified" : "verify failed: " + answer.error;
    result.className = "verify-result " + (answer.ok ? "active" : "failing");
  } catch (e) {
    result.textContent = "verify failed: " + e.message;
    result.className = "verify-result failing";
  }
}

function row(tenant, d) {
  const tr = document.createElement("tr");
  tr.dataset.tenant = tenant;
  tr.dataset.name = d.name;
  cell(tr, tenant);
  cell(tr, d.name);
  const state = cell(tr, d.state, "state " + d.state);
  if (d.state === "failing") {
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = "since " + d.failing_since + ": " + d.last_error +
      " (next attempt " + d.next_attempt + ")";
    state.appendChild(reason);
  }
  cell(tr, String(d.backlog_events), "backlog");
  cell(tr, age(d.oldest_age_secs), "oldest");
  cell(tr, d.last_export || "none yet", "last-export");
  cell(tr, d.sink, "sink");
  const actions = cell(tr, "");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "verify";
  button.textContent = "Verify";
  const result = document.createElement("span");
  result.className = "verify-result";
  button.addEventListener("click", () => verify(tenant, d.name, result));
  actions.appendChild(button);
  actions.appendChild(document.createTextNode(" "));
  actions.appendChild(result);
  return tr;
}

async function refresh() {
  try {
    const listing = await api("GET", "/v1/tenants");
    $("#error").textContent = "";
    $("#login").hidden = true;
    $("#status").hidden = false;
    $("#who").textContent = listing.scope ? "tenant " + listing.scope : "all tenants";
    const body = $("#destinations");
    // Keep verify results across refreshes of the same rows.
    const results = new Map();
    for (const tr of body.querySelectorAll("tr")) {
      results.set(tr.dataset.tenant + "\u0000" + tr.dataset.name, tr.querySelector(".verify-result"));
    }
    body.replaceChildren();
    let failing = 0, count = 0;
    for (const t of listing.tenants) {
      for (const d of t.destinations) {
        const tr = row(t.tenant, d);
        const kept = results.get(t.tenant + "\u0000" + d.name);
        if (kept) tr.querySelector(".verify-result").replaceWith(kept);
        body.appendChild(tr);
        count += 1;
        if (d.state === "failing") failing += 1;
      }
    }
    $("#summary").textContent = listing.tenants.length + " tenant(s), " + count +
      " destination(s), " + failing + " failing";
    if (!listing.scope) {
      const config = await api("GET", "/v1/config");
      $("#config").textContent = JSON.stringify(config, null, 2);
      $("#config-section").hidden = false;
    }
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      sessionStorage.removeItem(key);
      $("#status").hidden = true;
      $("#login").hidden = false;
    }
    $("#error").textContent = e.message;
  }
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(key, $("#token").value.trim());
  $("#token").value = "";
  refresh();
});
$("#sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(key);
  location.reload();
});
if (sessionStorage.getItem(key)) refresh();
setInterval(() => { if (sessionStorage.getItem(key)) refresh(); }, 5000);
