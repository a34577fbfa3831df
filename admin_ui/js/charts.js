// Small SVG line charts drawn here: a sparkline of a series, with gaps
// where a value is null (the endpoint was not running), scaled from 0.
import { svg } from "./dom.js";

/**
 * sparkline([1, 2, null, 3], {width, height, label, alt, fill, slots})
 * fill: the chart stretches to its container's width (viewBox, no aspect).
 */
export function sparkline(values, { width = 140, height = 32, label = "", alt = false, fill = false, format = String, slots = 0 } = {}) {
  // slots: the width is that many samples (the window), the newest at the right edge.
  const padded = slots > values.length ? Array(slots - values.length).fill(null).concat(values) : values;
  const points = padded.map((v) => (v === null || v === undefined || Number.isNaN(v) ? null : Number(v)));
  const present = points.filter((v) => v !== null);
  const last = present.length ? present[present.length - 1] : null;
  const attrs = {
    class: ["spark", alt && "alt", fill && "chart-big"],
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${label}: ${last === null ? "no data" : format(last)}`,
    preserveAspectRatio: fill ? "none" : "xMidYMid meet",
  };
  if (!fill) {
    attrs.width = width;
    attrs.height = height;
  }
  const chart = svg("svg", attrs, svg("title", null, attrs["aria-label"]), svg("rect", { x: 0, y: 0, width, height, class: "spark-bg" }));
  if (!present.length) {
    chart.append(svg("text", { x: 2, y: height / 2 + 4, class: "spark-empty" }, "no data"));
    return chart;
  }
  const max = Math.max(...present) || 1;
  const pad = 2;
  const step = points.length > 1 ? (width - 2 * pad) / (points.length - 1) : 0;
  const x = (i) => pad + i * step;
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  // Runs of consecutive values, each a line and an area.
  let run = [];
  const runs = [];
  points.forEach((v, i) => {
    if (v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push([x(i), y(v)]);
    }
  });
  if (run.length) runs.push(run);
  for (const r of runs) {
    if (r.length === 1) r.push([r[0][0] + Math.max(1, step / 2), r[0][1]]);
    const line = r.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
    const area = `${line}L${r[r.length - 1][0].toFixed(1)},${height - pad}L${r[0][0].toFixed(1)},${height - pad}Z`;
    chart.append(svg("path", { d: area, class: "spark-area" }), svg("path", { d: line, class: "spark-line" }));
  }
  if (!fill) {
    const lastIndex = points.lastIndexOf(last);
    chart.append(svg("circle", { cx: x(lastIndex), cy: y(last), r: 2.2, class: "spark-dot" }));
  }
  return chart;
}
