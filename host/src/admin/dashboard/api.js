// The admin API client of the dashboard: JSON calls and the live event
// stream, both with `fetch`, so the bearer token travels in a header (never in
// a URL, never in a cookie). The token is asked for once, when the router
// first answers 401, and kept in sessionStorage (this tab only).

const KEY = "hookrouter.admin-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = sessionStorage.getItem(KEY);
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

let asking = null;

/** Shows the token dialog (once, however many calls wait on it). */
function askToken(refused) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    const error = document.getElementById("token-error");
    error.hidden = !refused;
    error.textContent = refused ? "That token was refused; try again." : "";
    input.value = "";
    const done = (e) => {
      e.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      sessionStorage.setItem(KEY, t);
      form.removeEventListener("submit", done);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener("submit", done);
    dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/** Calls the admin API; answers the parsed JSON, throws ApiError otherwise. */
export async function api(path, { method = "GET", body } = {}) {
  for (;;) {
    const hadToken = Boolean(sessionStorage.getItem(KEY));
    const init = { method, headers: headers(), credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      if (hadToken) sessionStorage.removeItem(KEY);
      await askToken(hadToken);
      continue;
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!resp.ok) {
      throw new ApiError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`);
    }
    return data;
  }
}

/** A query string of the non-empty entries of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

/**
 * Follows GET /admin/events/stream until `signal` aborts, reconnecting after
 * a break. Calls `onMessage(kind, data)` for each message and `onState(s)`
 * with "live", "reconnecting" or "lagged".
 */
export async function follow(onMessage, onState, signal) {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const hadToken = Boolean(sessionStorage.getItem(KEY));
      const resp = await fetch("/admin/events/stream", {
        headers: headers({ Accept: "text/event-stream" }), credentials: "omit", cache: "no-store", signal,
      });
      if (resp.status === 401) {
        if (hadToken) sessionStorage.removeItem(KEY);
        await askToken(hadToken);
        continue;
      }
      if (!resp.ok || !resp.body) throw new Error(`stream answered ${resp.status}`);
      onState("live");
      delay = 500;
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let kind = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          let parsed;
          try { parsed = JSON.parse(data); } catch { continue; }
          if (kind === "lagged") onState("lagged");
          onMessage(kind, parsed);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    onState("reconnecting");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}
