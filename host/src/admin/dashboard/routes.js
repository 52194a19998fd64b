// Routes and sources: where webhooks come in, and which plugins each event
// type goes to.

import { api } from "./api.js";
import { empty, fill, h } from "./dom.js";

export async function render(ctx) {
  const r = await api("/admin/routes");
  if (!ctx.isCurrent()) return;
  const list = (items) => items.map((x, i) => [i ? ", " : "", h("code", {}, x)]);
  fill(ctx.main, h("h1", {}, "Routes"),
    h("h2", {}, "Sources"),
    r.sources.length ? h("div", { class: "scroll" }, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Source", "Webhook path", "Preset", "Signature"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, r.sources.map((s) => h("tr", {}, h("th", { scope: "row" }, s.name), h("td", { class: "mono" }, `POST ${s.path}`),
        h("td", {}, s.preset || "–"), h("td", {}, s.scheme))))))
      : empty("No sources: add a [[sources]] table to router.toml."),
    h("h2", {}, "Routes"),
    r.routes.length ? h("div", { class: "scroll" }, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Event types", "Source", "Plugins"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, r.routes.map((x) => h("tr", {}, h("td", {}, list(x.events)), h("td", {}, x.source || "any"), h("td", {}, list(x.plugins)))))))
      : empty("No routes: events are stored and counted, and go nowhere. Add a [[routes]] table to router.toml."),
    h("p", { class: "hint" }, "An event goes to every plugin of every route whose patterns match its type (and source)."));
}
