// A small SVG line chart of one series over time (no library, no styles set
// inline: colours come from classes in style.css).

const NS = "http://www.w3.org/2000/svg"; // a namespace name, never fetched

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * A chart of `points` ([{at: unix ms, v: number|null}]) over `span` ms ending
 * now; `format(v)` labels values.
 */
export function lineChart({ title, points, span, format, className }) {
  const W = 600, H = 160, L = 46, R = 8, T = 10, B = 22;
  const now = Date.now();
  const from = now - span;
  const vals = points.filter((p) => p.v !== null && p.v !== undefined);
  const max = Math.max(0, ...vals.map((p) => p.v));
  const top = max > 0 ? niceCeil(max) : 1;
  const x = (t) => L + ((t - from) / span) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: `chart ${className || ""}` });
  svg.append(el("title", {}, title));
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    svg.append(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
  }
  for (const [t, label] of [[from, `-${Math.round(span / 60000)} min`], [now, "now"]]) {
    svg.append(el("text", { x: x(t), y: H - 6, "text-anchor": t === now ? "end" : "start", class: "axis" }, label));
  }
  if (!vals.length) {
    svg.append(el("text", { x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "nothing in the last hour"));
  }
  // Gaps (intervals with no value) break the line.
  let run = [];
  const flush = () => {
    if (run.length > 1) svg.append(el("polyline", { points: run.join(" "), class: "line" }));
    if (run.length === 1) {
      const [cx, cy] = run[0].split(",");
      svg.append(el("circle", { cx, cy, r: 2, class: "dot" }));
    }
    run = [];
  };
  for (const p of points) {
    if (p.at < from) continue;
    if (p.v === null || p.v === undefined) { flush(); continue; }
    run.push(`${x(p.at).toFixed(1)},${y(p.v).toFixed(1)}`);
  }
  flush();
  return svg;
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
