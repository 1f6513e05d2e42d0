/* The dashboard's behaviour: buttons that POST the JSON API, and live refresh by polling.
   Pages work without it; nothing here is inline (the Content-Security-Policy forbids that). */
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const toast = () => document.getElementById("toast");

  function say(message, isError) {
    const box = toast();
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("error", Boolean(isError));
    box.classList.add("shown");
  }

  async function callApi(method, url, body) {
    const response = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = data.error || {};
      const failure = new Error(error.message || ("HTTP " + response.status));
      failure.type = error.type || "";
      throw failure;
    }
    return data;
  }

  /* Stage buttons: POST /api/v1/models/{name}/versions/{v}/transitions */
  function actor() {
    const form = document.querySelector("[data-actor-form]");
    if (form && form.dataset.actor) return form.dataset.actor;  // signed in: the token's name
    const input = document.getElementById("actor");
    return input ? input.value.trim() : "";
  }

  function setupActor() {
    const input = document.getElementById("actor");
    if (!input) return;
    input.value = sessionStorage.getItem("greenbutton.actor") || "";
    input.addEventListener("change", () => sessionStorage.setItem("greenbutton.actor", input.value.trim()));
  }

  async function transition(button) {
    const who = actor();
    if (!who) {
      say("Fill in “Acting as” first: every change is recorded with who made it.", true);
      const input = document.getElementById("actor");
      if (input) input.focus();
      return;
    }
    const reasonInput = document.getElementById("reason");
    const reason = reasonInput && reasonInput.value.trim() ? reasonInput.value.trim() : null;
    const model = button.dataset.model, version = button.dataset.version;
    const url = "/api/v1/models/" + encodeURIComponent(model) + "/versions/" +
      encodeURIComponent(version) + "/transitions";
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const done = await callApi("POST", url, {stage: button.dataset.transition, actor: who, reason: reason});
      if (done.transitions && done.transitions.length === 0 && done.request) {
        say("Proposed as request #" + done.request.id + ": it waits for another person's approval. Reloading…");
      } else {
        say(model + " v" + version + " → " + button.dataset.transition + ". Reloading…");
      }
      window.setTimeout(() => window.location.reload(), 600);
    } catch (error) {
      say("Refused: " + error.message, true);
      button.disabled = false;
      button.removeAttribute("aria-busy");
      // a blocked proposal is recorded with its gate results: show them
      if (error.type === "promotion_blocked") window.setTimeout(() => window.location.reload(), 2500);
    }
  }

  /* Approve / reject: POST /api/v1/requests/{id}/{decision} */
  async function decide(button) {
    const reasonInput = document.getElementById("reason");
    const reason = reasonInput && reasonInput.value.trim() ? reasonInput.value.trim() : null;
    if (button.dataset.decision === "override" && !reason) {
      say("An override needs a written reason: fill in “Reason” first.", true);
      if (reasonInput) reasonInput.focus();
      return;
    }
    button.disabled = true;
    try {
      await callApi("POST", "/api/v1/requests/" + encodeURIComponent(button.dataset.requestId) +
        "/" + button.dataset.decision, {reason: reason});
      say("Request #" + button.dataset.requestId + ": " + button.dataset.decision + " done. Reloading…");
      window.setTimeout(() => window.location.reload(), 600);
    } catch (error) {
      say("Refused: " + error.message, true);
      button.disabled = false;
    }
  }

  /* Sign-in: POST /signin {"token"} sets an HttpOnly cookie; sign-out clears it */
  async function signin(form) {
    const input = form.querySelector("#token");
    try {
      await callApi("POST", "/signin", {token: input.value.trim()});
      input.value = "";
      window.location.assign(form.dataset.next || "/");
    } catch (error) {
      say("Sign-in refused: " + error.message, true);
      input.focus();
    }
  }

  async function signout() {
    try { await callApi("POST", "/signout", {}); } catch (error) { /* go anyway */ }
    window.location.assign("/signin");
  }

  /* Deployment states on list pages: GET /api/v1/deployments */
  async function refreshStates() {
    try {
      const data = await callApi("GET", "/api/v1/deployments");
      for (const d of data.deployments) {
        for (const badge of document.querySelectorAll('[data-deployment-state="' + CSS.escape(d.name) + '"]')) {
          badge.textContent = d.state;
          badge.className = "badge state-" + d.state;
        }
      }
    } catch (error) { /* the next poll retries */ }
  }

  /* Deployment page: charts + tables from GET /deployments/{name}/live */
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function num(v) { return v === null || v === undefined ? "—" : GBChart.format(v); }

  function fillTable(tbody, rows, columns) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      cell(tr, "No data yet.");
      tr.firstChild.colSpan = columns;
      tbody.appendChild(tr);
      return;
    }
    for (const values of rows) {
      const tr = document.createElement("tr");
      values.forEach((v) => cell(tr, v));
      tbody.appendChild(tr);
    }
  }

  function byVersion(points, field, suffix) {
    const groups = new Map();
    for (const p of points) {
      if (!groups.has(p.version)) groups.set(p.version, []);
      groups.get(p.version).push([p.t, p[field]]);
    }
    return [...groups.entries()].map(([v, pts]) => ({name: "v" + v + (suffix || ""), points: pts}));
  }

  function drawCharts(root, data) {
    const points = data.points;
    const charts = {
      rps: byVersion(points, "rps"),
      errors_ps: byVersion(points, "errors_ps"),
      latency: [...byVersion(points, "p50_ms", " p50"), ...byVersion(points, "p99_ms", " p99")],
    };
    for (const figure of root.querySelectorAll("[data-chart]:not([data-chart='quality'])")) {
      const series = charts[figure.dataset.chart];
      GBChart.render(figure.querySelector("svg"), series, {unit: figure.dataset.unit});
      const latest = series.map((s) => {
        const last = s.points.filter((p) => p[1] !== null).pop();
        return last ? s.name + ": " + num(last[1]) + " " + figure.dataset.unit : null;
      }).filter(Boolean);
      figure.querySelector(".summary").textContent =
        latest.length ? "Latest — " + latest.join(", ") : "Waiting for traffic…";
    }
  }

  function updateStatus(root, status) {
    if (!status) return;
    const badge = root.querySelector("[data-deployment-state]");
    if (badge) { badge.textContent = status.state; badge.className = "badge state-" + status.state; }
    const serving = root.querySelector('[data-field="serving_version"]');
    if (serving) serving.textContent = status.serving_version ? "v" + status.serving_version : "—";
    const reason = root.querySelector('[data-field="reason"]');
    if (reason) reason.textContent = status.reason || "";
  }

  function driftRows(monitoring) {
    const rows = [];
    for (const [version, snap] of Object.entries(monitoring)) {
      for (const [test, result] of Object.entries(snap.drift || {})) {
        const features = Object.entries(result.features || {});
        const all = features.length ? features : [["(all)", result]];
        for (const [feature, r] of all) {
          rows.push(["v" + version, test, feature, num(r.statistic), num(r.p_value),
                     r.is_drift ? "yes" : "no"]);
        }
      }
    }
    return rows;
  }

  function drawQuality(root, data) {
    const section = root.querySelector("[data-quality]");
    if (!section || !data.monitoring || Object.keys(data.monitoring).length === 0) return;
    section.hidden = false;
    const series = [];
    for (const field of ["outlier_rate", "accuracy", "mean_reward"]) {
      for (const s of byVersion(data.quality, field, " " + field.replace("_", " "))) {
        if (s.points.some((p) => p[1] !== null)) series.push(s);
      }
    }
    const figure = section.querySelector("[data-chart='quality']");
    GBChart.render(figure.querySelector("svg"), series, {unit: ""});
    figure.querySelector(".summary").textContent = series.length
      ? "Latest — " + series.map((s) => s.name + ": " + num(s.points[s.points.length - 1][1])).join(", ")
      : "No quality figures yet.";
    fillTable(section.querySelector("[data-quality-table] tbody"),
      Object.entries(data.monitoring).map(([v, m]) => ["v" + v, String((m.window || {}).rows ?? "—"),
        num(m.outlier_rate), num(m.accuracy), num(m.mean_reward)]), 5);
    fillTable(section.querySelector("[data-drift-table] tbody"), driftRows(data.monitoring), 6);
  }

  async function refreshDeployment(root) {
    let data;
    try { data = await callApi("GET", root.dataset.liveUrl); } catch (error) { return; }
    updateStatus(root, data.status);
    const scraped = root.querySelector('[data-field="scraped_at"]');
    if (scraped && data.scraped_at) scraped.textContent = GBChart.clock(data.scraped_at);
    drawCharts(root, data);
    const recent = data.points.slice(-12).reverse();
    fillTable(root.querySelector("[data-live-table] tbody"),
      recent.map((p) => [GBChart.clock(p.t), "v" + p.version, num(p.rps), num(p.p50_ms), num(p.p99_ms), num(p.errors_ps)]), 6);
    drawQuality(root, data);
    fillTable(root.querySelector("[data-live-totals] tbody"),
      Object.entries(data.totals).map(([v, t]) => ["v" + v, String(t.requests), String(t.errors)]), 3);
  }

  function every(ms, fn) {
    fn();
    let timer = window.setInterval(fn, ms);
    document.addEventListener("visibilitychange", () => {
      window.clearInterval(timer);
      if (!document.hidden) { fn(); timer = window.setInterval(fn, ms); }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupActor();
    for (const button of document.querySelectorAll("button[data-transition]")) {
      button.addEventListener("click", () => transition(button));
    }
    for (const button of document.querySelectorAll("button[data-decision]")) {
      button.addEventListener("click", () => decide(button));
    }
    const form = document.querySelector("form[data-signin]");
    if (form) form.addEventListener("submit", (event) => { event.preventDefault(); signin(form); });
    const out = document.querySelector("button[data-signout]");
    if (out) out.addEventListener("click", signout);
    if (document.querySelector("[data-live-deployments]")) every(REFRESH_MS, refreshStates);
    const live = document.querySelector("[data-live-deployment]");
    if (live) every(REFRESH_MS, () => refreshDeployment(live));
  });
})();
