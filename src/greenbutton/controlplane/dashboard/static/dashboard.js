/* The dashboard's shared behaviour: buttons that call the JSON API, in-place refresh of the
   server-rendered page, sign-in, live state badges. Pages work without it; nothing here is
   inline (the Content-Security-Policy forbids that). Page scripts use window.GB. */
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const TOAST_MS = 8000;
  let toastTimer = null;

  /* A message in the status region; good news goes away by itself, errors stay. */
  function say(message, isError) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("error", Boolean(isError));
    box.classList.add("shown");
    window.clearTimeout(toastTimer);
    if (!isError) toastTimer = window.setTimeout(() => box.classList.remove("shown"), TOAST_MS);
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
      failure.status = response.status;
      throw failure;
    }
    data.httpStatus = response.status;
    return data;
  }

  /* Replace every [data-region] with its fresh rendering (same URL): the page changes in
     place, scroll position and focus kept, instead of a reload. */
  async function refreshRegions() {
    const response = await fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}});
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const focused = document.activeElement;
    const focusKey = focused && focused.id ? "#" + CSS.escape(focused.id) : null;
    for (const region of document.querySelectorAll("[data-region]")) {
      const name = region.dataset.region;
      const replacement = fresh.querySelector('[data-region="' + CSS.escape(name) + '"]');
      if (replacement) region.replaceWith(document.adoptNode(replacement));
    }
    if (focusKey) {
      const again = document.querySelector(focusKey);
      if (again && again !== document.activeElement) again.focus();
    }
    document.dispatchEvent(new CustomEvent("gb:refreshed"));
  }

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

  function reasonText() {
    const input = document.getElementById("reason");
    return input && input.value.trim() ? input.value.trim() : null;
  }

  function announce(detail) {
    document.dispatchEvent(new CustomEvent("gb:action", {detail: detail}));
  }

  /* Stage buttons: POST /api/v1/models/{name}/versions/{v}/transitions (the green button) */
  async function transition(button) {
    const who = actor();
    if (!who) {
      say("Fill in “Acting as” first: every change is recorded with who made it.", true);
      const input = document.getElementById("actor");
      if (input) input.focus();
      return;
    }
    const model = button.dataset.model, version = button.dataset.version, stage = button.dataset.transition;
    const url = "/api/v1/models/" + encodeURIComponent(model) + "/versions/" + encodeURIComponent(version) + "/transitions";
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    announce({phase: "gates", model, version, stage});
    try {
      const done = await callApi("POST", url, {stage: stage, actor: who, reason: reasonText()});
      if (done.transitions && done.transitions.length === 0 && done.request) {
        announce({phase: "proposed", model, version, stage, request: done.request.id});
        say("Proposed as request #" + done.request.id + ": the gates passed; it waits for another person's approval.");
      } else {
        announce({phase: "applied", model, version, stage});
        say(model + " v" + version + " → " + stage + ".");
      }
    } catch (error) {
      announce({phase: "refused", model, version, stage, message: error.message});
      say("Refused: " + error.message, true);
    }
    button.removeAttribute("aria-busy");
    await refreshRegions();  // a blocked proposal is recorded with its gate results: shown too
    if (button.isConnected) button.disabled = false;
  }

  /* Approve / reject / override: POST /api/v1/requests/{id}/{decision} */
  async function decide(button) {
    const reason = reasonText();
    if (button.dataset.decision === "override" && !reason) {
      say("An override needs a written reason: fill in “Reason” first.", true);
      const input = document.getElementById("reason");
      if (input) input.focus();
      return;
    }
    button.disabled = true;
    try {
      await callApi("POST", "/api/v1/requests/" + encodeURIComponent(button.dataset.requestId) + "/" + button.dataset.decision, {reason: reason});
      say("Request #" + button.dataset.requestId + ": " + button.dataset.decision + " done.");
      announce({phase: "decided", request: button.dataset.requestId});
    } catch (error) {
      say("Refused: " + error.message, true);
    }
    await refreshRegions();
    if (button.isConnected) button.disabled = false;
  }

  /* Propose: POST /api/v1/models/{m}/versions/{v}/requests (gates run before it answers) */
  async function propose(form) {
    const model = form.elements.model.value, version = form.elements.version.value;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say("Running the gates for " + model + " v" + version + "…");
    try {
      const done = await callApi("POST", "/api/v1/models/" + encodeURIComponent(model) + "/versions/" + encodeURIComponent(version) + "/requests",
        {stage: form.elements.stage.value, reason: form.elements.reason.value.trim() || null});
      say("Request #" + done.request.id + ": " + done.request.status + ".");
    } catch (error) {
      say("Refused: " + error.message, true);
    }
    button.disabled = false;
    await refreshRegions();
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

  function setBadge(badge, state) {
    badge.textContent = state;
    badge.className = "badge state-" + state;
  }

  /* Deployment states on list pages: GET /api/v1/deployments */
  async function refreshStates() {
    try {
      const data = await callApi("GET", "/api/v1/deployments");
      for (const d of data.deployments) {
        for (const badge of document.querySelectorAll('[data-deployment-state="' + CSS.escape(d.name) + '"]')) setBadge(badge, d.state);
      }
    } catch (error) { /* the next poll retries */ }
  }

  /* Run fn now and every ms while the tab is visible; returns a function changing the pace. */
  function every(ms, fn) {
    let timer = null, pace = ms;
    const start = () => { window.clearInterval(timer); timer = window.setInterval(fn, pace); };
    fn();
    start();
    document.addEventListener("visibilitychange", () => {
      window.clearInterval(timer);
      if (!document.hidden) { fn(); start(); }
    });
    return (next) => { if (next !== pace) { pace = next; start(); } };
  }

  function num(v) { return v === null || v === undefined ? "—" : GBChart.format(v); }

  function fillTable(tbody, rows, columns, empty) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.textContent = empty || "No data yet.";
      td.colSpan = columns;
      td.className = "muted";
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    for (const values of rows) {
      const tr = document.createElement("tr");
      for (const v of values) {
        const td = document.createElement("td");
        if (v instanceof Node) td.appendChild(v); else td.textContent = v;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || button.disabled) return;
    if (button.matches("[data-transition]")) transition(button);
    else if (button.matches("[data-decision]")) decide(button);
    else if (button.matches("[data-signout]")) signout();
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-signin]")) { event.preventDefault(); signin(form); }
    else if (form.matches("form[data-propose-form]")) { event.preventDefault(); propose(form); }
    else if (form.matches("form[data-actor-form]")) event.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", () => {
    setupActor();
    if (document.querySelector("[data-live-deployments]")) every(REFRESH_MS, refreshStates);
  });

  window.GB = {callApi, say, every, refreshRegions, setBadge, num, fillTable, REFRESH_MS};
})();
