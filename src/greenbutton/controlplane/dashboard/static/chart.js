/* A small SVG line-chart renderer: no dependency, no build step, nothing fetched at run time.

   GBChart.render(svg, [{name: "v3", points: [[t_seconds, value, isFlagged?], ...]}],
                  {unit: "ms", log: false, zero: true, yMin: 0, yMax: 1,
                   marks: [{value: 0.01, label: "α"}]})

   The SVG is drawn at its own pixel size (re-drawn when that changes), so text is never
   stretched. The y axis spans the data (negative values included) with round ticks; by
   default it includes zero, as a baseline for rates and rewards (zero: false, or log: true,
   turns that off). Every point gets a marker with a tooltip; a null value breaks the line.
   Series differ by colour and dash pattern, so they stay apart without colour vision. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = 6;
  const LOG_FLOOR = 1e-16;  // below this a p-value is rounding noise: drawn at the floor, labelled ≤
  const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
    10800, 21600, 43200, 86400];

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function round(value) { return Number(value.toPrecision(12)); }

  function niceStep(range, count) {
    const raw = range / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
    return 10 * power;
  }

  function linearTicks(lo, hi) {
    if (hi === lo && lo === 0) hi = 1;  // all zero (no errors): 0 at the bottom, not the middle
    else if (hi === lo) { const pad = Math.abs(lo) * 0.1; lo -= pad; hi += pad; }
    const step = niceStep(hi - lo, 4);
    const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
    const ticks = [];
    for (let k = first; k <= last; k++) ticks.push(round(k * step));
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (String(step).includes("25") ? 1 : 0));
    return {ticks, lo: ticks[0], hi: ticks[ticks.length - 1], label: (v) => v.toFixed(decimals)};
  }

  function logTicks(lo, hi, isClamped) {
    let a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
    if (a === b) b = a + 1;
    const every = Math.max(1, Math.ceil((b - a) / 5));
    const ticks = [];
    for (let k = a; k <= b; k += every) ticks.push(round(Math.pow(10, k)));
    if (Math.log10(ticks[ticks.length - 1]) < b) ticks.push(round(Math.pow(10, b)));
    const plain = (v) => (v >= 0.001 && v < 1e6 ? String(v) : v.toExponential(0));
    const label = (v) => (isClamped && v === ticks[0] ? "≤" : "") + plain(v);
    return {ticks, lo: Math.pow(10, a), hi: Math.pow(10, b), label};
  }

  function yScale(values, opts) {
    if (opts.log) {
      const positive = values.map((v) => Math.max(v, LOG_FLOOR));
      const axis = logTicks(Math.min(...positive), Math.max(...positive, opts.yMax || 0),
        values.some((v) => v < LOG_FLOOR));
      const span = Math.log10(axis.hi) - Math.log10(axis.lo);
      return {...axis, frac: (v) => (Math.log10(Math.max(v, LOG_FLOOR)) - Math.log10(axis.lo)) / span};
    }
    let lo = Math.min(...values), hi = Math.max(...values);
    if (opts.yMin !== undefined) lo = Math.min(lo, opts.yMin);
    if (opts.yMax !== undefined) hi = Math.max(hi, opts.yMax);
    if (opts.zero !== false) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    const axis = linearTicks(lo, hi);
    return {...axis, frac: (v) => (v - axis.lo) / (axis.hi - axis.lo)};
  }

  function clock(t) {
    return new Date(t * 1000).toTimeString().slice(0, 8);
  }

  function timeTicks(t0, t1) {
    const step = TIME_STEPS_S.find((s) => (t1 - t0) / s <= 5) || TIME_STEPS_S[TIME_STEPS_S.length - 1];
    const ticks = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-6; t += step) ticks.push(t);
    return ticks.length ? ticks : [t0];
  }

  function segments(points) {
    const found = [];
    let current = [];
    for (const p of points) {
      if (p[1] === null || p[1] === undefined || !Number.isFinite(p[1])) {
        if (current.length) found.push(current);
        current = [];
      } else {
        current.push(p);
      }
    }
    if (current.length) found.push(current);
    return found;
  }

  function legend(svg, series) {
    const figure = svg.closest("figure");
    if (!figure) return;
    let list = figure.querySelector("ul.legend");
    if (!list) {
      list = document.createElement("ul");
      list.className = "legend";
      svg.insertAdjacentElement("afterend", list);
    }
    list.replaceChildren(...series.map((s, i) => {
      const item = document.createElement("li");
      const swatch = el("svg", {class: "swatch", viewBox: "0 0 22 8", "aria-hidden": "true"});
      swatch.appendChild(el("line", {x1: 1, x2: 21, y1: 4, y2: 4, class: "line c" + (i % PALETTE)}));
      item.append(swatch, document.createTextNode(s.name));
      return item;
    }));
  }

  function draw(svg, series, opts) {
    const box = svg.getBoundingClientRect();
    const W = Math.round(box.width) || 480, H = Math.round(box.height) || 200;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.removeAttribute("preserveAspectRatio");
    svg.replaceChildren();
    legend(svg, series);
    const values = series.flatMap((s) => segments(s.points).flat().map((p) => p[1]));
    if (values.length === 0) {
      svg.appendChild(el("text", {x: W / 2, y: H / 2, class: "axis empty", "text-anchor": "middle"}, opts.empty || "No data yet"));
      return;
    }
    const times = series.flatMap((s) => s.points.map((p) => p[0]));
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const y = yScale(values, opts);
    const labels = y.ticks.map(y.label);
    const LEFT = 10 + 6.5 * Math.max(...labels.map((l) => l.length)), RIGHT = 14, TOP = 8, BOTTOM = 22;
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    const px = (t) => LEFT + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * plotW;
    const py = (v) => TOP + (1 - y.frac(v)) * plotH;
    svg.appendChild(el("rect", {x: LEFT, y: TOP, width: plotW, height: plotH, class: "plot-area"}));
    y.ticks.forEach((v, i) => {
      const at = py(v);
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: at, y2: at, class: v === 0 && !opts.log ? "grid zero" : "grid"}));
      svg.appendChild(el("text", {x: LEFT - 4, y: at + 4, class: "axis y-tick", "text-anchor": "end",
        "data-value": v, "data-y": at}, labels[i]));
    });
    for (const t of timeTicks(t0, t1)) {
      const at = px(t);
      svg.appendChild(el("line", {x1: at, x2: at, y1: TOP + plotH, y2: TOP + plotH + 4, class: "grid"}));
      const anchor = at < LEFT + 30 ? "start" : at > W - RIGHT - 30 ? "end" : "middle";
      svg.appendChild(el("text", {x: at, y: H - 6, class: "axis x-tick", "text-anchor": anchor}, clock(t)));
    }
    for (const mark of opts.marks || []) {
      const at = py(mark.value);
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: at, y2: at, class: "mark"}));
      svg.appendChild(el("text", {x: LEFT + 4, y: at - 3, class: "axis mark-label"}, mark.label));
    }
    const unit = opts.unit ? " " + opts.unit : "";
    series.forEach((s, i) => {
      const colour = "c" + (i % PALETTE);
      const group = el("g", {class: "series", "data-series": s.name});
      for (const part of segments(s.points)) {
        const d = part.map((p, k) => (k ? "L" : "M") + px(p[0]).toFixed(1) + "," + py(p[1]).toFixed(1)).join(" ");
        group.appendChild(el("path", {d: d, class: "line " + colour}));
        for (const p of part) {
          const dot = el("circle", {cx: px(p[0]).toFixed(1), cy: py(p[1]).toFixed(1), r: p[2] ? 4.5 : 2.5,
            class: "point " + colour + (p[2] ? " flagged" : ""), "data-value": p[1], "data-t": p[0]});
          dot.appendChild(el("title", {}, s.name + " · " + clock(p[0]) + " · " + format(p[1]) + unit + (p[2] ? " · flagged" : "")));
          group.appendChild(dot);
        }
      }
      svg.appendChild(group);
    });
  }

  const observed = new WeakMap();
  const resizer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver((entries) => {
    for (const entry of entries) {
      const last = observed.get(entry.target);
      if (last && Math.abs(entry.contentRect.width - last.width) >= 1) render(entry.target, last.series, last.opts);
    }
  });

  function render(svg, series, opts) {
    opts = opts || {};
    draw(svg, series, opts);
    const first = !observed.has(svg);
    observed.set(svg, {series, opts, width: svg.getBoundingClientRect().width});
    if (first && resizer) resizer.observe(svg);
  }

  function format(value) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "—";
    if (value === 0) return "0";
    const size = Math.abs(value);
    if (size >= 100) return value.toFixed(0);
    if (size >= 10) return value.toFixed(1);
    if (size < 0.001) return value.toExponential(1);
    return String(Number(value.toPrecision(3)));
  }

  window.GBChart = {render: render, format: format, clock: clock};
})();
