// Dead letters: deliveries and forwards that failed their last attempt.
// Filter them, select one or many, replay (they run again with fresh
// attempts) or purge (deleted for good, with their events when nothing else
// of them is left).

import { api, query } from "./api.js";
import { empty, failure, fill, h, short, time } from "./dom.js";

const AGES = [["", "any age"], ["1h", "older than 1 hour"], ["24h", "older than 1 day"], ["7d", "older than 7 days"]];

export async function render(ctx) {
  const p = ctx.route.params;
  const filters = { plugin: p.get("plugin") || "", source: p.get("source") || "", type: p.get("type") || "", older_than: p.get("older_than") || "" };
  const [plugins, routes] = await Promise.all([
    api("/admin/plugins").catch(() => ({ plugins: [] })),
    api("/admin/routes").catch(() => ({ sources: [] })),
  ]);
  const select = (name, all, options) => h("select", { name },
    h("option", { value: "" }, all), options.map(([v, t]) => h("option", { value: v, selected: v === filters[name] }, t)));
  const form = h("form", { class: "filters", "aria-label": "Filter dead letters" },
    h("label", {}, h("span", {}, "Plugin"), select("plugin", "all plugins", plugins.plugins.map((x) => [x.name, x.name]))),
    h("label", {}, h("span", {}, "Source"), select("source", "all sources", routes.sources.map((s) => [s.name, s.name]))),
    h("label", {}, h("span", {}, "Type"), h("input", { name: "type", value: filters.type, placeholder: "any type", autocomplete: "off" })),
    h("label", {}, h("span", {}, "Age"), h("select", { name: "older_than" }, AGES.map(([v, t]) => h("option", { value: v, selected: v === filters.older_than }, t)))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Filter")));

  const status = h("p", { class: "note", role: "status" });
  const all = h("input", { type: "checkbox", "aria-label": "select every dead letter shown" });
  const replayBtn = h("button", { type: "button", class: "primary", disabled: true }, "Replay selected");
  const purgeBtn = h("button", { type: "button", class: "danger", disabled: true }, "Purge selected");
  const bar = h("div", { class: "toolbar" }, replayBtn, purgeBtn);
  const body = h("tbody");
  const table = h("div", { class: "scroll" }, h("table", { class: "list dead" },
    h("caption", { class: "sr-only" }, "Dead letters, newest first"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all),
      ["Entry", "Plugin", "Event", "Type", "Attempts", "Last error", "Last attempt"].map((c) => h("th", { scope: "col" }, c)))),
    body));
  const holder = h("div");
  fill(ctx.main, h("h1", {}, "Dead letters"), form, status, holder);

  let boxes = [];
  const chosen = () => boxes.filter((b) => b.checked).map((b) => b.value);
  const update = () => {
    const n = chosen().length;
    replayBtn.disabled = purgeBtn.disabled = n === 0;
    replayBtn.textContent = n ? `Replay ${n} selected` : "Replay selected";
    purgeBtn.textContent = n ? `Purge ${n} selected` : "Purge selected";
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
  };
  all.addEventListener("change", () => { for (const b of boxes) b.checked = all.checked; update(); });

  async function load() {
    try {
      const r = await api("/admin/dead" + query({ ...filters, limit: 1000 }));
      if (!ctx.isCurrent()) return;
      boxes = [];
      body.replaceChildren(...r.dead.map((d) => {
        const box = h("input", { type: "checkbox", value: d.id, "aria-label": `select ${d.id}`, on: { change: update } });
        boxes.push(box);
        return h("tr", {},
          h("td", {}, box),
          h("td", { class: "mono" }, d.id, d.kind === "forward" ? h("div", { class: "hint" }, d.target) : null),
          h("td", {}, d.plugin),
          h("td", {}, h("a", { href: `#/event/${d.event_id}`, class: "mono", title: d.event_id }, short(d.event_id, 13))),
          h("td", {}, d.event_type),
          h("td", {}, String(d.attempts)),
          h("td", { class: "error-text" }, d.last_error || ""),
          h("td", {}, time(new Date(d.updated_at).toISOString())));
      }));
      update();
      if (r.dead.length) fill(holder, bar, table);
      else fill(holder, empty(Object.values(filters).some(Boolean)
        ? "No dead letters match these filters."
        : "No dead letters. A delivery or forward that fails its last attempt waits here for replay or purge."));
    } catch (e) {
      fill(holder, failure(e));
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const k of Object.keys(filters)) filters[k] = (form.elements[k].value || "").trim();
    history.replaceState(null, "", "#/dead" + query(filters));
    load();
  });
  replayBtn.addEventListener("click", async () => {
    const ids = chosen();
    try {
      const r = await api("/admin/dead/replay", { method: "POST", body: { ids } });
      status.textContent = `Replayed ${r.replayed} of ${ids.length}: they run again with fresh attempts.`;
    } catch (e) { status.textContent = e.message; }
    load();
  });
  purgeBtn.addEventListener("click", async () => {
    const ids = chosen();
    if (!confirm(`Delete ${ids.length} dead letter${ids.length === 1 ? "" : "s"} for good, with their events when nothing else of them is left?`)) return;
    try {
      const r = await api("/admin/dead/purge", { method: "POST", body: { ids } });
      status.textContent = `Purged ${r.purged.entries} dead letter${r.purged.entries === 1 ? "" : "s"} and ${r.purged.events} event${r.purged.events === 1 ? "" : "s"}.`;
    } catch (e) { status.textContent = e.message; }
    load();
  });
  await load();
  let again = null;
  ctx.onMessage((kind, m) => {
    if ((kind === "delivery" || kind === "forward") && m.state === "dead" && !again) {
      again = setTimeout(() => { again = null; if (chosen().length === 0) load(); }, 700);
    }
  });
  ctx.onStop(() => { if (again) clearTimeout(again); });
}
