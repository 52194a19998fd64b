// The events list: filters (source, type, status, time, words in the body),
// newest first, a page at a time, and live: new events appear at the top and
// statuses follow the outcomes as they come.

import { api, query } from "./api.js";
import { badge, empty, failure, fill, h, short, time } from "./dom.js";

const SINCE = [
  ["", "any time"], ["15m", "last 15 minutes"], ["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"],
];
const STATUSES = ["", "pending", "done", "dead", "unrouted"];
const MS = { m: 60e3, h: 3600e3, d: 86400e3 };

function sinceTime(v) {
  const m = /^(\d+)([mhd])$/.exec(v || "");
  return m ? new Date(Date.now() - Number(m[1]) * MS[m[2]]).toISOString() : "";
}

const SEND = "hookrouter send optum --type payment_loading_requested \\\n    --data samples/optum/payment_loading_requested.json";

export async function render(ctx) {
  const p = ctx.route.params;
  const filters = {
    source: p.get("source") || "", type: p.get("type") || "", status: p.get("status") || "",
    q: p.get("q") || "", since: p.get("since") || "",
  };
  const routes = await api("/admin/routes").catch(() => ({ sources: [] }));

  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter events" });
  const field = (label, control) => h("label", {}, h("span", {}, label), control);
  const source = h("select", { name: "source" }, h("option", { value: "" }, "all sources"),
    routes.sources.map((s) => h("option", { value: s.name, selected: s.name === filters.source }, s.name)));
  const type = h("input", { name: "type", value: filters.type, placeholder: "any type", autocomplete: "off", spellcheck: "false" });
  const status = h("select", { name: "status" },
    STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s || "any status")));
  const since = h("select", { name: "since" },
    SINCE.map(([v, t]) => h("option", { value: v, selected: v === filters.since }, t)));
  const q = h("input", { name: "q", type: "search", value: filters.q, placeholder: "words in the body   ( / )", "data-search": "", autocomplete: "off", spellcheck: "false" });
  form.append(field("Search", q), field("Source", source), field("Type", type), field("Status", status), field("Received", since),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Filter"),
      h("button", { type: "button", on: { click: () => { location.hash = "#/events"; } } }, "Clear")));

  const note = h("p", { class: "note", "aria-live": "polite" });
  const body = h("tbody");
  const table = h("table", { class: "list events" },
    h("caption", { class: "sr-only" }, "Events, newest first"),
    h("thead", {}, h("tr", {}, ["Received", "Status", "Source", "Type", "Event"].map((c, i) => h("th", { scope: "col", class: i === 2 ? "wide" : null }, c)))),
    body);
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const listing = h("div", { class: "scroll" }, table);
  const holder = h("div", {});
  fill(ctx.main, h("h1", {}, "Events"), form, note, holder, more);

  const active = () => Object.values(filters).some(Boolean);
  let cursor = null;
  const shown = new Map(); // id -> row

  const row = (e, fresh) => {
    const tr = h("tr", { class: fresh ? "fresh" : null, "data-id": e.id },
      h("td", {}, time(e.received_at)),
      h("td", {}, badge(e.status)),
      h("td", { class: "wide" }, e.source),
      h("td", {}, h("a", { href: `#/event/${e.id}`, class: "plain" }, e.event_type),
        e.parent_id ? h("span", { class: "hint", title: `emitted by ${e.parent_id}` }, " ↳") : null),
      h("td", {}, h("a", { href: `#/event/${e.id}`, class: "mono", title: e.id }, short(e.id, 13))));
    shown.set(e.id, tr);
    return tr;
  };

  const params = (extra) => query({
    source: filters.source, type: filters.type, status: filters.status, q: filters.q,
    since: sinceTime(filters.since), limit: 50, ...extra,
  });

  async function load(append) {
    try {
      const page = await api("/admin/events" + params(append && cursor ? { cursor } : {}));
      if (!ctx.isCurrent()) return;
      if (!append) { body.replaceChildren(); shown.clear(); }
      for (const e of page.events) body.append(row(e, false));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      if (shown.size === 0) {
        fill(holder, active()
          ? empty("No events match these filters.", null)
          : empty("No events yet: try", SEND));
      } else if (!holder.contains(listing)) {
        fill(holder, listing);
      }
      note.textContent = shown.size ? `${shown.size} event${shown.size === 1 ? "" : "s"}${cursor ? " (more below)" : ""}` : "";
    } catch (e) {
      fill(holder, failure(e));
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const k of Object.keys(filters)) filters[k] = (form.elements[k].value || "").trim();
    history.replaceState(null, "", "#/events" + query(filters));
    cursor = null;
    load(false);
  });
  for (const control of [source, status, since]) control.addEventListener("change", () => form.requestSubmit());
  more.addEventListener("click", () => load(true));
  await load(false);

  // Live: new events on top (when they fit the filters), statuses refreshed
  // shortly after outcomes for the rows on screen.
  let refresh = null;
  const fits = (e) => (!filters.source || e.source === filters.source) && (!filters.type || e.event_type === filters.type)
    && (!filters.status || e.status === filters.status) && !filters.q;
  ctx.onMessage((kind, m) => {
    if (kind === "event" && fits(m) && !shown.has(m.id)) {
      if (!holder.contains(listing)) fill(holder, listing);
      body.prepend(row({ ...m, hops: 0 }, true));
      note.textContent = `${shown.size} event${shown.size === 1 ? "" : "s"}${cursor ? " (more below)" : ""}`;
    } else if ((kind === "delivery" || kind === "forward") && shown.has(m.event_id) && !refresh) {
      refresh = setTimeout(async () => {
        refresh = null;
        const ids = [...shown.keys()];
        try {
          const page = await api("/admin/events" + params({ limit: Math.min(1000, ids.length + 10) }));
          for (const e of page.events) {
            const tr = shown.get(e.id);
            if (tr) fill(tr.children[1], badge(e.status));
          }
        } catch { /* the next outcome tries again */ }
      }, 700);
    }
  });
  ctx.onStop(() => { if (refresh) clearTimeout(refresh); });
}
