/* A tiny SVG line-chart renderer: no dependency, no build step, nothing fetched at run time.
   GBChart.render(svg, [{name: "v3", points: [[t_seconds, value], ...]}], {unit: "ms"}) */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 200, LEFT = 46, RIGHT = 8, TOP = 10, BOTTOM = 24;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function fmt(value) {
    if (value === 0) return "0";
    if (Math.abs(value) >= 100) return value.toFixed(0);
    if (Math.abs(value) >= 10) return value.toFixed(1);
    return value.toPrecision(2);
  }

  function clock(t) {
    return new Date(t * 1000).toTimeString().slice(0, 8);
  }

  function render(svg, series, opts) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
    if (all.length === 0) return;
    const t0 = Math.min(...all.map((p) => p[0]));
    const t1 = Math.max(...all.map((p) => p[0]));
    const yMax = niceMax(Math.max(...all.map((p) => p[1])));
    const x = (t) => LEFT + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - LEFT - RIGHT);
    const y = (v) => TOP + (1 - v / yMax) * (H - TOP - BOTTOM);
    for (const frac of [0, 0.5, 1]) {
      const v = yMax * frac;
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid"}));
      svg.appendChild(el("text", {x: LEFT - 4, y: y(v) + 4, class: "axis", "text-anchor": "end"}, fmt(v)));
    }
    svg.appendChild(el("text", {x: LEFT, y: H - 6, class: "axis"}, clock(t0)));
    svg.appendChild(el("text", {x: W - RIGHT, y: H - 6, class: "axis", "text-anchor": "end"}, clock(t1)));
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => p[1] !== null);
      if (pts.length === 0) return;
      const d = pts.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
      svg.appendChild(el("polyline", {points: d, class: "line s" + (i % 4)}));
      const last = pts[pts.length - 1];
      svg.appendChild(el("circle", {cx: x(last[0]), cy: y(last[1]), r: 3, class: "dot s" + (i % 4)}));
    });
    const legend = el("g", {class: "legend"});
    series.forEach((s, i) => {
      const lx = LEFT + 8 + i * 90;
      legend.appendChild(el("line", {x1: lx, x2: lx + 16, y1: TOP + 6, y2: TOP + 6, class: "line s" + (i % 4)}));
      legend.appendChild(el("text", {x: lx + 20, y: TOP + 10, class: "axis"}, s.name));
    });
    svg.appendChild(legend);
    if (opts && opts.unit) svg.setAttribute("data-y-max", fmt(yMax) + " " + opts.unit);
  }

  window.GBChart = {render: render, format: fmt, clock: clock};
})();
