/* The deployment page: live state, per-version traffic and quality, drift over time, the
   serving log (GET /deployments/{name}/live and /logs), and the routes editor, which saves
   with PUT /api/v1/deployments/{name}/spec (the API's permission check and audit). */
"use strict";
(function () {
  const LOGS_MS = 5000;
  const STEPS = ["gates", "waiting", "starting", "switching", "done"];
  let picked = [];  // features the person chose to chart

  function byVersion(points, field, suffix) {
    const groups = new Map();
    for (const p of points) {
      if (!groups.has(p.version)) groups.set(p.version, []);
      groups.get(p.version).push([p.t, p[field]]);
    }
    return [...groups.entries()].map(([v, pts]) => ({name: "v" + v + (suffix || ""), points: pts}));
  }

  function drawChart(root, key, series, opts) {
    const figure = root.querySelector('[data-chart="' + key + '"]');
    if (!figure) return;
    const unit = figure.dataset.unit;
    GBChart.render(figure.querySelector("svg"), series, {unit: unit, empty: "—", ...opts});
    const latest = series.map((s) => {
      const last = s.points.filter((p) => p[1] !== null && p[1] !== undefined).pop();
      return last ? s.name + ": " + GB.num(last[1]) : null;
    }).filter(Boolean);
    figure.querySelector(".summary").textContent = latest.length ? "Latest — " + latest.join(", ") + " " + unit : figure.dataset.empty;
  }

  function updateStatus(root, data) {
    const status = data.status;
    const badge = root.querySelector("[data-deployment-state]");
    if (badge) GB.setBadge(badge, status.state);
    root.querySelector('[data-field="rollout"]').textContent = data.rollout.text;
    const steps = root.querySelector("[data-rollout]");
    const at = STEPS.indexOf(data.rollout.step) >= 0 ? STEPS.indexOf(data.rollout.step) : (data.rollout.step === "failed" ? 2 : 4);
    steps.dataset.step = data.rollout.step;
    steps.querySelectorAll("ol.steps li").forEach((li, i) => {
      li.className = data.rollout.step === "failed" && i === at ? "failed" : (i < at || data.rollout.step === "done") ? "passed" : i === at ? "current" : "todo";
    });
    root.querySelector('[data-field="serving_version"]').textContent = status.serving_version ? "v" + status.serving_version : "—";
    if (data.scraped_at) root.querySelector('[data-field="scraped_at"]').textContent = GBChart.clock(data.scraped_at);
    const backends = Object.entries(data.backends).sort((a, b) => b[0] - a[0]).map(([v, url]) => "v" + v + " " + url);
    root.querySelector('[data-field="backends"]').textContent = backends.join(", ") || "—";
  }

  function drawTraffic(root, data) {
    const points = data.points;
    drawChart(root, "rps", byVersion(points, "rps"));
    drawChart(root, "errors_ps", byVersion(points, "errors_ps"));
    drawChart(root, "latency", [...byVersion(points, "p50_ms", " p50"), ...byVersion(points, "p99_ms", " p99")]);
    GB.fillTable(root.querySelector("[data-live-table] tbody"), points.slice(-12).reverse().map((p) =>
      [GBChart.clock(p.t), "v" + p.version, GB.num(p.rps), GB.num(p.p50_ms), GB.num(p.p99_ms), GB.num(p.errors_ps)]), 6);
    GB.fillTable(root.querySelector("[data-live-totals] tbody"),
      Object.entries(data.totals).map(([v, t]) => ["v" + v, String(t.requests), String(t.errors)]), 3);
  }

  function percent(v) {
    if (v === null || v === undefined) return "—";
    return (Math.abs(v) >= 10 ? v.toFixed(0) : String(Number(v.toFixed(1)))) + " %";
  }

  /* Each version's mean request rate and worst p99 over the share window (the last 30 s). */
  function recent(points, windowS) {
    const found = {};
    if (points.length === 0) return found;
    const since = points[points.length - 1].t - windowS;
    for (const p of points.filter((p) => p.t > since)) {
      const f = found[p.version] || (found[p.version] = {rps: 0, n: 0, p99: null, errors: 0});
      f.rps += p.rps; f.errors += p.errors_ps; f.n += 1;
      if (p.p99_ms !== null && (f.p99 === null || p.p99_ms > f.p99)) f.p99 = p.p99_ms;
    }
    for (const f of Object.values(found)) { f.rps /= f.n; f.errors /= f.n; }
    return found;
  }

  function drawVersions(root, data) {
    const traffic = data.status.traffic;
    const weights = traffic.reduce((sum, t) => sum + t.weight, 0);
    const lately = recent(data.points, 30);
    const quality = data.quality || {latest: {}, feedback: {}};
    const versions = new Set([...traffic.map((t) => String(t.version)), ...Object.keys(data.totals)]);
    const rows = [...versions].sort((a, b) => b - a).map((v) => {
      const share = traffic.find((t) => String(t.version) === v);
      const isShadow = share && share.weight <= 0 && share.mirror_percent > 0;
      const configured = !share ? "not routed" : isShadow ? "copy of " + share.mirror_percent + " %" : percent(weights ? 100 * share.weight / weights : null);
      const point = lately[v] || {};
      const test = quality.latest[v];
      const figures = test ? test.figures : {};
      const feedback = quality.feedback[v];
      return ["v" + v, isShadow ? "shadow" : share ? "route" : "draining", configured,
        isShadow ? "—" : percent(data.shares[v]), GB.num(point.rps), GB.num(point.p99), GB.num(point.errors),
        GB.num(figures.outlier_rate), GB.num(feedback ? feedback.accuracy : null), GB.num(feedback ? feedback.mean_reward : null),
        feedback ? String(feedback.count) : "0", test ? (test.is_drift ? "drift (p " + GB.num(test.overall_p) + ")" : "none (p " + GB.num(test.overall_p) + ")") : "not tested"];
    });
    GB.fillTable(root.querySelector("[data-versions-table] tbody"), rows, 12);
  }

  function figureSeries(tests, field) {
    const groups = new Map();
    for (const t of tests) {
      if (!groups.has(t.version)) groups.set(t.version, []);
      groups.get(t.version).push([t.t, t.figures[field] === undefined ? null : t.figures[field]]);
    }
    return [...groups.entries()].map(([v, pts]) => ({name: "v" + v, points: pts}))
      .filter((s) => s.points.some((p) => p[1] !== null));
  }

  const IN_COLUMNS = ["accuracy", "mean_reward", "mean_abs_error"];  // feedback's own columns

  function figureText(key, value) {
    if (key.endsWith("_s")) return key.slice(0, -2).replace(/_/g, " ") + " " + GB.num(value * 1000) + " ms";
    return key.replace(/_/g, " ") + " " + GB.num(value);
  }

  function drawQuality(root, quality) {
    drawChart(root, "outlier_rate", figureSeries(quality.tests, "outlier_rate"), {yMax: 0.05});
    drawChart(root, "accuracy", figureSeries(quality.tests, "accuracy"), {yMax: 1});
    drawChart(root, "mean_reward", figureSeries(quality.tests, "mean_reward"));
    const versions = new Set([...Object.keys(quality.latest), ...Object.keys(quality.feedback)]);
    GB.fillTable(root.querySelector("[data-quality-table] tbody"), [...versions].sort().map((v) => {
      const test = quality.latest[v], feedback = quality.feedback[v] || {};
      const figures = test ? Object.entries(test.figures).filter(([k, x]) => x !== null && !IN_COLUMNS.includes(k))
        .map(([k, x]) => figureText(k, x)).join(", ") : "";
      return ["v" + v, test ? GBChart.clock(test.t) : "—", test ? String(test.rows) : "—", figures || "—",
        String(feedback.count || 0), GB.num(feedback.accuracy), GB.num(feedback.mean_abs_error), GB.num(feedback.mean_reward)];
    }), 8, "No drift test yet.");
  }

  function drawDrift(root, quality) {
    const overall = new Map();
    for (const t of quality.tests) {
      if (!overall.has(t.version)) overall.set(t.version, []);
      overall.get(t.version).push([t.t, t.overall_p, t.is_drift]);
    }
    const marks = quality.alpha ? [{value: quality.alpha, label: "α " + quality.alpha}] : [];
    drawChart(root, "overall", [...overall.entries()].map(([v, pts]) => ({name: "v" + v + " overall", points: pts})),
      {log: true, yMax: 1, marks: marks});
    const many = Object.keys(quality.latest).length > 1;
    const features = Object.entries(quality.feature_series).flatMap(([f, rows]) => {
      const versions = [...new Set(rows.map((r) => r[1]))];
      return versions.map((v) => ({name: f + (many ? " v" + v : ""),
        points: rows.filter((r) => r[1] === v).map((r) => [r[0], r[2], r[3]])}));
    });
    drawChart(root, "features", features, {log: true, yMax: 1});
    const pick = root.querySelector("[data-feature-pick]");
    if (pick) pick.closest("form").hidden = quality.features.length === 0;
    if (pick && pick.options.length !== quality.features.length) {
      pick.replaceChildren(...quality.features.map((f) => new Option(f, f, false, quality.watched.includes(f))));
    }
    const rows = [];
    for (const [v, test] of Object.entries(quality.latest)) {
      Object.entries(test.features).sort((a, b) => (a[1][0] ?? 2) - (b[1][0] ?? 2)).slice(0, 20)
        .forEach(([f, r]) => rows.push(["v" + v, f, GB.num(r[0]), r[1] ? "yes" : "no"]));
    }
    GB.fillTable(root.querySelector("[data-drift-table] tbody"), rows, 4, "No drift test yet.");
    GB.fillTable(root.querySelector("[data-tests-table] tbody"), quality.tests.slice(-12).reverse().map((t) =>
      [GBChart.clock(t.t), "v" + t.version, String(t.rows), GB.num(t.overall_p), t.is_drift ? "yes" : "no"]), 5, "No drift test yet.");
  }

  async function refresh(root) {
    let data;
    const url = root.dataset.liveUrl + (picked.length ? "?features=" + picked.map(encodeURIComponent).join(",") : "");
    try { data = await GB.callApi("GET", url); } catch (error) { return; }
    updateStatus(root, data);
    drawTraffic(root, data);
    drawVersions(root, data);
    if (data.quality) { drawQuality(root, data.quality); drawDrift(root, data.quality); }
  }

  async function refreshLogs(root) {
    const box = root.querySelector("[data-logs]");
    if (!box) return;
    let data;
    try { data = await GB.callApi("GET", root.dataset.logsUrl); } catch (error) { return; }
    const parts = data.backends.map((b) => {
      const part = document.createElement("div");
      const title = document.createElement("h3");
      title.textContent = "v" + b.version + (b.replica ? " (replica " + b.replica + ")" : "");
      const pre = document.createElement("pre");
      pre.className = "log";
      pre.dataset.logVersion = String(b.version);
      pre.dataset.logReplica = String(b.replica);
      pre.tabIndex = 0;
      pre.textContent = b.lines.length ? b.lines.join("\n") : "(empty)";
      part.append(title, pre);
      return part;
    });
    if (parts.length === 0) {
      const none = document.createElement("p");
      none.className = "muted";
      none.textContent = "No serving process is running for this deployment.";
      parts.push(none);
    }
    box.replaceChildren(...parts);
    for (const pre of box.querySelectorAll("pre")) pre.scrollTop = pre.scrollHeight;
  }

  /* The routes editor: rows from a <template>, saved as a whole spec with its revision. */
  function addRow(form, kind) {
    const template = document.querySelector("template[data-row-template]");
    const rows = form.querySelector('[data-rows="' + kind + '"]');
    const n = rows.children.length + 1 + "-" + (Date.now() % 100000);
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.row = kind;
    const rename = (text) => text.replace("KIND", kind).replace(/-N$/, "-" + n);
    row.querySelectorAll("[id]").forEach((el) => { el.id = rename(el.id); });
    row.querySelectorAll("label[for]").forEach((el) => { el.htmlFor = rename(el.htmlFor); });
    const label = kind === "route" ? "Route" : "Shadow";
    row.querySelectorAll("[data-row-name]").forEach((s) => { s.textContent = label + " " + (rows.children.length + 1); });
    row.querySelector("[data-value-name]").textContent = kind === "route" ? "weight" : "percent";
    const value = row.querySelector("input[name=value]");
    value.min = kind === "route" ? "0" : "1";
    value.value = kind === "route" ? "0" : "5";
    if (kind === "shadow") row.querySelector("select").value = "staging";
    rows.appendChild(row);
    row.querySelector("select").focus();
  }

  function rowsOf(form, kind, field) {
    return [...form.querySelectorAll('[data-rows="' + kind + '"] [data-row]')].map((row) => {
      const to = row.querySelector("select[name=to]").value;
      return {to: /^[0-9]+$/.test(to) ? Number(to) : to, [field]: Number(row.querySelector("input[name=value]").value)};
    });
  }

  async function saveSpec(form) {
    const spec = JSON.parse(form.dataset.spec);
    spec.routes = rowsOf(form, "route", "weight");
    spec.shadow = rowsOf(form, "shadow", "percent");
    const sticky = form.elements.sticky_header.value.trim();
    spec.sticky_header = sticky || null;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const saved = await GB.callApi("PUT", form.dataset.specUrl, {spec: spec, expected_revision: Number(form.dataset.revision)});
      if (saved.request) {  // four-eyes: stored once someone else approves it
        GB.say("Waiting for approval: request #" + saved.request.id + " (someone else approves it on the Approvals page).");
        button.disabled = false;
        return;
      }
      form.dataset.revision = String(saved.revision);
      form.dataset.spec = JSON.stringify(Object.fromEntries(Object.entries(saved.spec).filter(([k]) => k !== "name")));
      GB.say("Saved revision " + saved.revision + ": the controller applies it now.");
      await GB.refreshRegions();  // the rules table shows the new spec
    } catch (error) {
      const raced = error.status === 409 && !/pending/.test(error.message);
      GB.say((raced ? "Not saved: someone changed the routes meanwhile; reload to see theirs. " : "Refused: ") + error.message, true);
    }
    button.disabled = false;
  }

  function setupEditor(root) {
    const form = root.querySelector("form[data-spec-form]");
    if (!form) return;
    form.addEventListener("submit", (event) => { event.preventDefault(); saveSpec(form); });
    form.addEventListener("click", (event) => {
      const add = event.target.closest("[data-add-row]");
      if (add) addRow(form, add.dataset.addRow);
      const remove = event.target.closest("[data-remove-row]");
      if (remove) remove.closest("[data-row]").remove();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-live-deployment]");
    if (!root) return;
    setupEditor(root);
    const pick = root.querySelector("[data-feature-pick]");
    if (pick) pick.addEventListener("change", () => {
      picked = [...pick.selectedOptions].map((o) => o.value);
      refresh(root);
    });
    GB.every(GB.REFRESH_MS, () => refresh(root));
    if (root.querySelector("[data-logs]")) GB.every(LOGS_MS, () => refreshLogs(root));
  });
})();
