/* The model page's live parts: each deployment's rollout (gates, controller, starting,
   traffic, done or failed with the reason) and the versions' stages, from
   GET /models/{name}/live, polled every 2 s (every 0.5 s while something moves). */
"use strict";
(function () {
  const FAST_MS = 500;
  const NOTHING_TO_WAIT_FOR_MS = 20000;
  const STEPS = ["gates", "waiting", "starting", "switching", "done"];
  let pace = null;
  let action = null;  // the click in flight on this page: {phase, version, ...}

  function showProgress(text, isError) {
    const box = document.getElementById("progress");
    if (!box) return;
    box.hidden = !text;
    box.textContent = text || "";
    box.classList.toggle("error", Boolean(isError));
  }

  function markSteps(container, step) {
    const at = STEPS.indexOf(step) >= 0 ? STEPS.indexOf(step) : (step === "failed" ? 2 : 4);
    container.querySelectorAll("ol.steps li").forEach((li, i) => {
      li.className = step === "failed" && i === at ? "failed" : (i < at || step === "done") ? "passed" : i === at ? "current" : "todo";
      if (i === at) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    });
    container.dataset.step = step;
  }

  function onAction(event) {
    const detail = event.detail;
    action = {...detail, at: Date.now()};
    if (detail.phase === "gates") {
      const what = detail.stage === "Archived" ? "Archiving v" + detail.version + "…" : "Running the gates for v" + detail.version + " → " + detail.stage + "…";
      showProgress(what);
      for (const box of document.querySelectorAll("[data-rollout]")) markSteps(box, "gates");
      if (pace) pace(FAST_MS);
    } else if (detail.phase === "applied") {
      showProgress("v" + detail.version + " → " + detail.stage + ": gates passed; the controller takes it from here.");
    } else if (detail.phase === "proposed") {
      showProgress("Request #" + detail.request + " waits for approval (gates passed). Nothing is deployed until someone allowed approves it.");
      action = null;
    } else if (detail.phase === "refused") {
      showProgress("Refused: " + detail.message, true);
      action = null;
    }
  }

  function update(root, data) {
    let moving = false;
    for (const stage of data.versions) {
      const cell = document.querySelector('[data-stage-of="' + stage.version + '"]');
      if (cell && cell.textContent.trim() !== stage.stage) {
        const badge = document.createElement("span");
        badge.className = "badge stage-" + stage.stage.toLowerCase();
        badge.textContent = stage.stage;
        cell.replaceChildren(badge);
      }
    }
    let isStale = false;
    for (const d of data.deployments) {
      const box = document.querySelector('[data-rollout="' + CSS.escape(d.name) + '"]');
      if (!box) { isStale = moving = true; continue; }  // a new deployment: render it
      const before = box.dataset.step;
      markSteps(box, d.rollout.step);
      box.querySelector("[data-rollout-text]").textContent = d.rollout.text;
      const badge = box.querySelector("[data-deployment-state]");
      if (badge) GB.setBadge(badge, d.state);
      box.querySelector('[data-field="serving"]').textContent = d.serving_version ? "serving v" + d.serving_version : "no traffic yet";
      moving = moving || !["done", "failed"].includes(d.rollout.step);
      if (before !== d.rollout.step && ["done", "failed"].includes(d.rollout.step)) isStale = true;
    }
    if (action && action.phase === "applied") {
      // the lifecycle has moved: until the controller has caught up the step is not done
      const d = data.deployments[0];
      if (d) showProgress(d.rollout.text, d.rollout.step === "failed");
      if (d && ["done", "failed"].includes(d.rollout.step)) {
        showProgress((d.rollout.step === "failed" ? "Rollout failed — " : "Rolled out — ") + d.rollout.text, d.rollout.step === "failed");
        action = null;
        isStale = true;
      }
      else if (!d && Date.now() - action.at > NOTHING_TO_WAIT_FOR_MS) action = null;  // not deployed
      else moving = true;
    }
    if (isStale) GB.refreshRegions();  // buttons and history follow the new stages
    if (pace) pace(moving ? FAST_MS : GB.REFRESH_MS);
  }

  async function refresh(root) {
    if (action && action.phase === "gates") return;  // the POST is still running the gates
    try { update(root, await GB.callApi("GET", root.dataset.modelLive)); } catch (error) { /* retried */ }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-model-live]");
    if (!root) return;
    document.addEventListener("gb:action", onAction);
    pace = GB.every(GB.REFRESH_MS, () => refresh(root));
  });
})();
