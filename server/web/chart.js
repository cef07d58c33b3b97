// Small SVG charts for the console: time series lines and a log-log scatter.
// Hand-written so the page needs no library, build step or download.
const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceNumber(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000) return (v / 1000).toFixed(a >= 10000 ? 0 : 1) + "k";
  if (a >= 10) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

function frame(svg) {
  const width = svg.clientWidth || 420;
  const height = svg.clientHeight || 180;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  return { width, height, left: 44, right: 8, top: 8, bottom: 22 };
}

// series: [{name, values: [[t, v|null], ...]}]; gaps where v is null.
export function lineChart(svg, series, opts = {}) {
  const f = frame(svg);
  const all = series.flatMap((s) => s.values.filter((p) => p[1] !== null && p[1] !== undefined));
  if (!all.length) {
    svg.append(svgEl("text", { x: f.width / 2, y: f.height / 2, "text-anchor": "middle",
      class: "empty" }, opts.empty || "no data yet"));
    return;
  }
  const ts = series.flatMap((s) => s.values.map((p) => p[0]));
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1);
  const yMax = Math.max(...all.map((p) => p[1]), opts.minMax || 0) * 1.1 || 1;
  const x = (t) => f.left + ((t - t0) / (t1 - t0)) * (f.width - f.left - f.right);
  const y = (v) => f.height - f.bottom - (v / yMax) * (f.height - f.top - f.bottom);
  for (const frac of [0, 0.5, 1]) {
    const v = yMax * frac;
    svg.append(svgEl("line", { x1: f.left, x2: f.width - f.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(svgEl("text", { x: f.left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" },
      niceNumber(v)));
  }
  svg.append(svgEl("text", { x: f.width - f.right, y: f.height - 4, "text-anchor": "end",
    class: "tick" }, "now"));
  svg.append(svgEl("text", { x: f.left, y: f.height - 4, class: "tick" },
    `-${Math.round(t1 - t0)} s`));
  series.forEach((s, i) => {
    let d = "";
    let pen = false;
    for (const [t, v] of s.values) {
      if (v === null || v === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    svg.append(svgEl("path", { d, fill: "none", stroke: COLOURS[i % COLOURS.length],
      "stroke-width": 1.8, "data-series": s.name }));
    svg.append(svgEl("text", { x: f.left + 6 + i * 92, y: f.top + 10, class: "legend",
      fill: COLOURS[i % COLOURS.length] }, s.name));
  });
}

// points: [{x, y, label, group, highlight}]; both axes logarithmic; frontier: indexes joined.
export function scatterChart(svg, points, opts = {}) {
  const f = frame(svg);
  f.left = 56; f.bottom = 34;
  const ok = points.filter((p) => p.x > 0 && p.y > 0);
  if (!ok.length) {
    svg.append(svgEl("text", { x: f.width / 2, y: f.height / 2, "text-anchor": "middle",
      class: "empty" }, opts.empty || "no feasible candidate"));
    return;
  }
  const lx = ok.map((p) => Math.log10(p.x)), ly = ok.map((p) => Math.log10(p.y));
  const pad = (lo, hi) => (hi - lo < 0.2 ? [lo - 0.1, hi + 0.1] : [lo - 0.05, hi + 0.05]);
  const [x0, x1] = pad(Math.min(...lx), Math.max(...lx));
  const [y0, y1] = pad(Math.min(...ly), Math.max(...ly));
  const x = (v) => f.left + ((Math.log10(v) - x0) / (x1 - x0)) * (f.width - f.left - f.right);
  const y = (v) => f.height - f.bottom - ((Math.log10(v) - y0) / (y1 - y0)) * (f.height - f.top - f.bottom);
  for (const [lo, hi, axis] of [[x0, x1, "x"], [y0, y1, "y"]]) {
    for (let k = 0; k <= 4; k++) {
      const v = 10 ** (lo + ((hi - lo) * k) / 4);
      if (axis === "x") {
        svg.append(svgEl("line", { x1: x(v), x2: x(v), y1: f.top, y2: f.height - f.bottom, class: "grid" }));
        svg.append(svgEl("text", { x: x(v), y: f.height - f.bottom + 14, "text-anchor": "middle",
          class: "tick" }, niceNumber(v)));
      } else {
        svg.append(svgEl("line", { x1: f.left, x2: f.width - f.right, y1: y(v), y2: y(v), class: "grid" }));
        svg.append(svgEl("text", { x: f.left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" },
          niceNumber(v)));
      }
    }
  }
  svg.append(svgEl("text", { x: (f.left + f.width) / 2, y: f.height - 4, "text-anchor": "middle",
    class: "axis" }, opts.xLabel || ""));
  const middle = (f.top + f.height - f.bottom) / 2;
  svg.append(svgEl("text", { x: 12, y: middle, class: "axis", "text-anchor": "middle",
    transform: `rotate(-90 12 ${middle})` }, opts.yLabel || ""));
  const edge = (opts.frontier || []).map((i) => points[i]).sort((a, b) => a.x - b.x);
  if (edge.length > 1) {
    const d = edge.map((p, i) => `${i ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join("");
    svg.append(svgEl("path", { d, fill: "none", stroke: "#111", "stroke-width": 1.2, class: "frontier" }));
  }
  const groups = [...new Set(ok.map((p) => p.group))].sort();
  for (const p of ok) {
    const colour = COLOURS[groups.indexOf(p.group) % COLOURS.length];
    const dot = svgEl("circle", { cx: x(p.x), cy: y(p.y), r: 3.5, fill: colour,
      "fill-opacity": 0.7, class: "point" });
    dot.append(svgEl("title", {}, p.label));
    svg.append(dot);
    if (p.highlight) {
      svg.append(svgEl("circle", { cx: x(p.x), cy: y(p.y), r: 8, fill: "none", stroke: "#dc2626",
        "stroke-width": 2, class: "recommended" }));
    }
  }
  groups.forEach((g, i) => svg.append(svgEl("text", { x: f.width - f.right - 4, y: f.top + 12 + i * 13,
    "text-anchor": "end", class: "legend", fill: COLOURS[i % COLOURS.length] }, g)));
}
