// Building the page from data without ever parsing data as HTML: every text
// goes in as a text node, every attribute through setAttribute.

/** An element: h("a", {href: "#/x", class: "c"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [event, fn] of Object.entries(v)) el.addEventListener(event, fn);
    } else if (k === "value" && "value" in el) {
      el.value = v;
    } else if (k === "checked" || k === "disabled" || k === "selected" || k === "hidden") {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces everything inside `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A status badge. */
export function badge(state) {
  return h("span", { class: `badge badge-${state}` }, state);
}

/** "12:04:05.123" of an RFC 3339 time, with the whole time as a tooltip. */
export function time(rfc3339) {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  const shown = isNaN(d) ? rfc3339 : d.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  return h("time", { datetime: rfc3339, title: rfc3339 }, shown);
}

/** An empty state: a sentence, and optionally a command to try. */
export function empty(text, command) {
  return h("div", { class: "empty" }, h("p", {}, text), command ? h("pre", { class: "command" }, command) : null);
}

/** An error line. */
export function failure(err) {
  return h("p", { class: "error", role: "alert" }, String(err && err.message || err));
}

/** Short form of a long id, whole in the tooltip. */
export function short(id, n = 8) {
  return h("span", { class: "mono", title: id }, String(id).slice(0, n) + (String(id).length > n ? "…" : ""));
}
