// One event: what it is, its headers (credentials and signatures masked by
// the router), its body as text, and every delivery and forward as a timeline
// of attempts, with replay. Event data is hostile: it only ever becomes text.

import { api } from "./api.js";
import { badge, empty, failure, fill, h, time } from "./dom.js";
import { pretty } from "./json.js";

function attempts(history, kind) {
  if (!history.length) return h("p", { class: "hint" }, "No attempt yet.");
  return h("ol", { class: "timeline", "aria-label": `${kind} attempts` }, history.map((a) =>
    h("li", { class: `attempt ${a.outcome === "ok" || a.outcome === "sent" ? "ok" : "failed"}` },
      h("div", { class: "when" }, `#${a.attempt} `, time(a.at)),
      h("div", { class: "what" },
        h("strong", {}, a.outcome),
        a.status ? ` · HTTP ${a.status}` : "",
        ` · ${a.duration_ms} ms`,
        a.version ? h("span", { class: "hint" }, ` · version ${a.version}`) : ""),
      a.error ? h("pre", { class: "attempt-error" }, a.error) : null)));
}

function kv(rows) {
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export async function render(ctx) {
  const id = ctx.route.arg;
  const status = h("p", { class: "note", "aria-live": "polite" });

  async function replay(entry) {
    status.textContent = "";
    try {
      const r = await api(`/admin/dead/${encodeURIComponent(entry)}/replay`, { method: "POST", body: {} });
      status.textContent = `${entry}: replayed (${r.replayed}); it runs again with fresh attempts.`;
      await draw();
    } catch (e) {
      status.textContent = `${entry}: ${e.message}`;
    }
  }

  async function draw() {
    let e;
    try {
      e = await api(`/admin/events/${encodeURIComponent(id)}`);
    } catch (err) {
      fill(ctx.main, h("h1", {}, "Event"), err.status === 404 ? empty(`No event ${id}: it may have been pruned or purged.`) : failure(err),
        h("p", {}, h("a", { href: "#/events" }, "← all events")));
      return;
    }
    if (!ctx.isCurrent()) return;
    const body = pretty(e.body);
    const deliveries = e.deliveries.map((d) => h("section", { class: "card", "aria-label": `delivery ${d.id}` },
      h("header", {}, h("h3", {}, d.plugin), badge(d.leased ? "running" : d.state),
        h("span", { class: "mono hint" }, d.id),
        h("button", {
          type: "button", class: "replay", disabled: d.state === "pending",
          title: d.state === "pending" ? "pending: it will run by itself" : "run this delivery again, with fresh attempts",
          on: { click: () => replay(d.id) },
        }, "Replay")),
      kv([["attempts", d.attempts], ["version", d.version], ["last error", d.last_error]]),
      attempts(d.history, "delivery")));
    const forwards = e.forwards.map((f) => h("section", { class: "card", "aria-label": `forward ${f.id}` },
      h("header", {}, h("h3", { class: "mono" }, f.url), badge(f.leased ? "running" : f.state),
        h("span", { class: "mono hint" }, f.id),
        h("button", {
          type: "button", class: "replay", disabled: f.state === "pending",
          on: { click: () => replay(f.id) },
        }, "Replay")),
      kv([["from", `${f.plugin} (${f.delivery_id})`], ["attempts", f.attempts], ["HTTP status", f.status], ["last error", f.last_error]]),
      attempts(f.history, "forward")));

    fill(ctx.main,
      h("p", {}, h("a", { href: "#/events" }, "← all events")),
      h("h1", {}, e.type, " ", badge(e.status)),
      kv([
        ["id", h("span", { class: "mono" }, e.id)],
        ["source", e.source],
        ["received", time(e.received_at)],
        ["external id", e.external_id ? h("span", { class: "mono" }, e.external_id) : null],
        ["hops", e.hops || null],
        ["emitted by", e.parent_id ? h("a", { href: `#/event/${e.parent_id}`, class: "mono" }, e.parent_id) : null],
      ]),
      e.children.length ? h("section", { "aria-label": "emitted events" }, h("h2", {}, "Emitted events"),
        h("ul", { class: "links" }, e.children.map((c) => h("li", {}, h("a", { href: `#/event/${c}`, class: "mono" }, c))))) : null,
      status,
      h("h2", {}, `Deliveries (${e.deliveries.length})`),
      e.deliveries.length ? deliveries : empty("No deliveries: no route matched this event's type and source."),
      e.forwards.length ? [h("h2", {}, `Forwards (${e.forwards.length})`), forwards] : null,
      h("h2", {}, "Headers"),
      h("div", { class: "scroll" }, h("table", { class: "list headers" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Value"))),
        h("tbody", {}, e.headers.map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k),
          h("td", { class: v === "<masked>" ? "mono masked" : "mono" }, v)))))),
      h("h2", {}, "Body"),
      h("pre", { class: "body", tabindex: "0", "aria-label": "event body" }, body === null ? e.body : body),
    );
  }

  await draw();
  let again = null;
  ctx.onMessage((kind, m) => {
    const mine = (kind === "event" && m.parent_id === id) || ((kind === "delivery" || kind === "forward") && m.event_id === id);
    if (mine && !again) again = setTimeout(() => { again = null; draw(); }, 400);
  });
  ctx.onStop(() => { if (again) clearTimeout(again); });
}
