// Overview: what the store holds now, and this router's last hour as charts
// (events per second, backlog, failure rate, forward latency), sampled by the
// router every few seconds.

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { lineChart } from "./chart.js";

const HOUR = 3600e3;
const num = (n) => Number(n).toLocaleString();
const rate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export async function render(ctx) {
  const cards = h("div", { class: "cards" });
  const charts = h("div", { class: "charts" });
  const note = h("p", { class: "hint" });
  fill(ctx.main, h("h1", {}, "Overview"), cards, h("h2", {}, "Last hour on this router"), note, charts);

  async function draw() {
    const [store, stats] = await Promise.all([api("/admin/store"), api("/admin/stats")]);
    if (!ctx.isCurrent()) return;
    const c = store.counts;
    const card = (label, value, href, warn) => h(href ? "a" : "div", { class: `card stat${warn ? " warn" : ""}`, href },
      h("span", { class: "value" }, num(value)), h("span", { class: "label" }, label));
    fill(cards,
      card("events stored", c.events, "#/events"),
      card("deliveries pending", c.deliveries_pending, "#/events?status=pending"),
      card("forwards pending", c.forwards_pending, null),
      card("dead letters", c.deliveries_dead + c.forwards_dead, "#/dead", c.deliveries_dead + c.forwards_dead > 0),
      card("deliveries done", c.deliveries_done, null),
      card("forwards done", c.forwards_done, null));
    const pts = stats.points;
    note.textContent = pts.length
      ? `One point every ${stats.interval_secs} s (${pts.length} so far). ${store.backend}.`
      : `Collecting: the first point appears ${stats.interval_secs} s after the router starts.`;
    const series = (f) => pts.map((p) => ({ at: p.at, v: f(p) }));
    const chart = (title, points, format, className) => h("figure", { class: "card" },
      h("figcaption", {}, title), lineChart({ title, points, span: HOUR, format, className }));
    fill(charts,
      chart("Events per second", series((p) => p.events_per_sec), rate, "events"),
      chart("Backlog (pending deliveries and forwards)", series((p) => p.backlog), (v) => (Number.isInteger(v) ? num(v) : v.toFixed(1)), "backlog"),
      chart("Failure rate (failed attempts / attempts)", series((p) => p.failure_rate), (v) => `${Math.round(v * 100)}%`, "failures"),
      chart("Forward latency p50 (ms)", series((p) => p.forward_p50_ms), (v) => rate(v), "latency"));
  }
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  ctx.onStop(() => clearInterval(timer));
}
