// The dashboard's entry: hash routes (#/events, #/event/ID, #/dead,
// #/plugins, #/routes, #/overview), the live stream shared by every page, and
// keyboard shortcuts ("/" focuses the search box, "g" then a page's first
// letter goes there).

import { follow } from "./api.js";
import { fill, failure, h } from "./dom.js";
import * as dead from "./dead.js";
import * as event from "./event.js";
import * as events from "./events.js";
import * as overview from "./overview.js";
import * as plugins from "./plugins.js";
import * as routes from "./routes.js";

const pages = { overview, events, event, dead, plugins, routes };
const titles = { overview: "Overview", events: "Events", event: "Event", dead: "Dead letters", plugins: "Plugins", routes: "Routes" };

let current = { onMessage: null, stop: null };

function parse() {
  const hash = location.hash.slice(1) || "/events";
  const [path, qs] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  return {
    name: parts[0] || "events",
    arg: parts[1] ? decodeURIComponent(parts[1]) : null,
    params: new URLSearchParams(qs || ""),
  };
}

async function show(focus) {
  const route = parse();
  if (current.stop) current.stop();
  current = { onMessage: null, stop: null };
  const mine = current;
  const main = document.getElementById("main");
  for (const a of document.querySelectorAll("#nav a")) {
    const on = a.getAttribute("href") === `#/${route.name}` || (route.name === "event" && a.getAttribute("href") === "#/events");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const page = pages[route.name];
  document.title = `${titles[route.name] || "Not found"} · hookrouter`;
  if (!page) {
    fill(main, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/events" }, "Go to events.")));
    return;
  }
  fill(main, h("p", { class: "empty" }, "Loading…"));
  const ctx = {
    main,
    route,
    onMessage: (fn) => { mine.onMessage = fn; },
    onStop: (fn) => { mine.stop = fn; },
    isCurrent: () => current === mine,
  };
  try {
    await page.render(ctx);
  } catch (e) {
    if (current === mine) fill(main, h("h1", {}, titles[route.name]), failure(e));
  }
  if (focus && current === mine) main.focus({ preventScroll: false });
}

window.addEventListener("hashchange", () => show(true));

const live = document.getElementById("live");
const states = { live: "● live", reconnecting: "○ reconnecting…", lagged: "● live (some updates missed)" };
follow(
  (kind, data) => { if (current.onMessage) current.onMessage(kind, data); },
  (state) => {
    live.textContent = states[state] || state;
    live.dataset.state = state;
  },
  new AbortController().signal,
);

let pendingG = false;
document.addEventListener("keydown", (e) => {
  const typing = e.target.closest && e.target.closest("input, select, textarea, dialog");
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/") {
    const search = document.querySelector("[data-search]");
    if (search) { e.preventDefault(); search.focus(); }
    return;
  }
  if (pendingG) {
    pendingG = false;
    const to = { o: "overview", e: "events", d: "dead", p: "plugins", r: "routes" }[e.key];
    if (to) location.hash = `#/${to}`;
    return;
  }
  if (e.key === "g") pendingG = true;
});

show(false);
