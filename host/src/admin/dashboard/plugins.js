// Plugins: what is loaded (ABI, version, when), what failed to load and why,
// and how each runs here (ok / failed runs, duration percentiles).

import { api } from "./api.js";
import { badge, empty, fill, h, short, time } from "./dom.js";

const ms = (v) => (v === undefined || v === null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1));

export async function render(ctx) {
  const r = await api("/admin/plugins");
  if (!ctx.isCurrent()) return;
  const rows = r.plugins.map((p) => h("tr", {},
    h("th", { scope: "row" }, p.name),
    h("td", {}, badge(p.loaded ? "loaded" : "missing"), p.routed ? null : h("span", { class: "hint" }, " not routed")),
    h("td", {}, p.abi || "–"),
    h("td", {}, p.version ? short(p.version, 12) : "–"),
    h("td", {}, p.stats && p.stats.loaded_at ? time(p.stats.loaded_at) : "–"),
    h("td", { class: "num" }, p.stats ? String(p.stats.invocations_ok) : "–"),
    h("td", { class: "num" }, p.stats ? String(p.stats.invocations_failed) : "–"),
    h("td", { class: "num" }, p.durations ? ms(p.durations.p50_ms) : "–"),
    h("td", { class: "num" }, p.durations ? ms(p.durations.p99_ms) : "–"),
    h("td", { class: "error-text" }, p.last_error || "")));
  fill(ctx.main, h("h1", {}, "Plugins"),
    rows.length ? h("div", { class: "scroll" }, h("table", { class: "list plugins" },
      h("thead", {}, h("tr", {}, ["Plugin", "State", "ABI", "Version", "Loaded at", "Runs ok", "Runs failed", "p50 ms", "p99 ms", "Last load error"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)))
      : empty("No plugins yet: drop a NAME.wasm into the plugin folder ([plugins] dir in router.toml); it is loaded at once."),
    h("p", { class: "hint" }, "Runs and durations are this router's since it started; percentiles over its last 1,024 runs of each plugin."));
}
