// Browser steps of host/tests/dashboard.rs: each drives Debian's chromium
// (headless, through playwright-core) against a running router's dashboard,
// checks what a user would see, saves screenshots, and prints one JSON line
// of findings. A failed check exits 1 with a message naming it.
//
//   node dashboard.mjs STEP ADMIN_URL SCREENSHOT_DIR [ARGS...]

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [step, base, shots, ...args] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
// (A 401 is how the page learns that a token is needed: the browser logs it.)
page.on("console", (m) => {
  if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(`console error: ${m.text()}`);
});
// The page must never reach anything but the router.
page.on("request", (r) => { if (!r.url().startsWith(base)) problems.push(`request elsewhere: ${r.url()}`); });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function shot(name, opts = {}) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: opts.fullPage ?? false });
}

async function rows(selector = "table.events tbody tr") {
  return page.locator(selector).count();
}

const steps = {
  // The events list shows the events; the filters narrow them; the empty state.
  async events([total, deadId, searchWord, searchHits]) {
    await page.goto(`${base}/`);
    await page.locator("table.events tbody tr").first().waitFor();
    await page.waitForFunction((n) => document.querySelectorAll("table.events tbody tr").length === n, Number(total));
    check(await page.locator("#live").textContent().then((t) => t.includes("live")), "the live indicator says live");
    await shot("events");
    await page.selectOption("select[name=status]", "dead");
    await page.waitForFunction(() => document.querySelectorAll("table.events tbody tr").length === 1);
    check(await page.locator(`table.events a[href="#/event/${deadId}"]`).count() >= 1, "status=dead shows the dead event");
    check(page.url().includes("status=dead"), "the filter is in the address");
    await page.selectOption("select[name=status]", "");
    // "/" focuses the search box; Enter filters.
    await page.locator("main h1").click();
    await page.keyboard.press("/");
    check(await page.evaluate(() => document.activeElement && document.activeElement.name === "q"), "/ focuses the search");
    await page.keyboard.type(searchWord);
    await page.keyboard.press("Enter");
    await page.waitForFunction((n) => document.querySelectorAll("table.events tbody tr").length === n, Number(searchHits));
    await shot("events-search");
    await page.fill("input[name=q]", "nothing-like-this-anywhere");
    await page.keyboard.press("Enter");
    await page.locator(".empty").waitFor();
    check((await page.locator(".empty").textContent()).includes("No events match"), "the empty state of a filter");
    // Readable on a phone: nothing wider than the screen but the table's own scroller.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/#/events`);
    await page.locator("table.events tbody tr").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `no sideways scrolling on a phone (${overflow}px too wide)`);
    await shot("events-phone", { fullPage: true });
    return { rows: Number(total) };
  },

  // One event: the attempt timeline, masked headers, the body as text.
  async event([id, maskedHeader, plainHeader, bodyText]) {
    await page.goto(`${base}/#/event/${id}`);
    await page.locator("ol.timeline li").first().waitFor();
    const attempts = await page.locator("ol.timeline li").count();
    check(attempts >= 1, "the timeline shows attempts");
    const headerCell = (name) => page.locator("table.headers tr", { has: page.locator(`td:text-is("${name}")`) }).locator("td").nth(1);
    check((await headerCell(maskedHeader).textContent()) === "<masked>", `${maskedHeader} is masked`);
    check((await headerCell(plainHeader).textContent()) !== "<masked>", `${plainHeader} is shown`);
    const body = await page.locator("pre.body").textContent();
    check(body.includes(bodyText), `the body holds ${bodyText} verbatim`);
    check(body.includes("\n  "), "the body is pretty-printed");
    // Hostile data stays text: no element was made from it.
    check(await page.locator("pre.body *").count() === 0, "the body is text only");
    await shot("event", { fullPage: true });
    return { attempts };
  },

  // A hostile body renders as text, and nothing in it runs.
  async hostile([id]) {
    await page.goto(`${base}/#/event/${id}`);
    await page.locator("pre.body").waitFor();
    const ran = await page.evaluate(() => window.__pwned === true);
    check(!ran, "script in the event data did not run");
    check(await page.locator("img[src=x], pre.body script").count() === 0, "no element was made from event data");
    check((await page.locator("pre.body").textContent()).includes("<img src=x"), "the markup is shown as text");
    return {};
  },

  // Dead letters: select, replay; the list empties once the delivery runs.
  async dead([deadEntry]) {
    await page.goto(`${base}/#/dead`);
    const box = page.locator(`input[type=checkbox][value="${deadEntry}"]`);
    await box.waitFor();
    await shot("dead");
    await box.check();
    const replay = page.getByRole("button", { name: /Replay 1 selected/ });
    check(await replay.isEnabled(), "replay is enabled once something is selected");
    await replay.click();
    await page.getByText(/Replayed 1 of 1/).waitFor();
    await page.getByText(/No dead letters/).waitFor({ timeout: 20000 });
    return {};
  },

  // Plugins, routes and the overview's charts.
  async pages([pluginName]) {
    await page.goto(`${base}/#/plugins`);
    await page.locator("table.plugins tbody tr").first().waitFor();
    check(await page.locator(`table.plugins th:text-is("${pluginName}")`).count() === 1, `the plugin ${pluginName} is listed`);
    await shot("plugins");
    await page.goto(`${base}/#/routes`);
    await page.getByRole("heading", { name: "Sources" }).waitFor();
    await shot("routes");
    await page.goto(`${base}/#/overview`);
    await page.locator("svg.chart").first().waitFor();
    check(await page.locator("svg.chart").count() === 4, "four charts");
    await page.locator("svg.chart polyline, svg.chart circle").first().waitFor({ timeout: 20000 });
    await shot("overview");
    // Keyboard: "g" then "d" goes to the dead letters.
    await page.locator("main h1").click();
    await page.keyboard.press("g");
    await page.keyboard.press("d");
    await page.waitForURL(/#\/dead/);
    return {};
  },

  // With a token configured: asked once, kept for the tab, sent as a header.
  async token([token]) {
    const sent = [];
    page.on("request", (r) => { if (r.url().includes("/admin/")) sent.push({ url: r.url(), auth: r.headers().authorization || "" }); });
    await page.goto(`${base}/`);
    const dialog = page.locator("#token-dialog");
    await dialog.waitFor({ state: "visible" });
    await shot("token");
    await page.fill("#token-input", "wrong-token");
    await page.keyboard.press("Enter");
    await page.locator("#token-error").getByText(/refused/).waitFor();
    await page.fill("#token-input", token);
    await page.keyboard.press("Enter");
    await dialog.waitFor({ state: "hidden" });
    await page.locator("main h1").getByText("Events").waitFor();
    await page.locator("table.events tbody tr, .empty").first().waitFor();
    // A reload in the same tab does not ask again.
    await page.reload();
    await page.locator("main h1").getByText("Events").waitFor();
    await page.locator("table.events tbody tr, .empty").first().waitFor();
    check(!(await dialog.isVisible()), "no second prompt in the same tab");
    check((await context.cookies()).length === 0, "no cookies");
    check(sent.every((s) => !s.url.includes(token)), "the token never goes in a URL");
    check(sent.some((s) => s.auth === `Bearer ${token}`), "the token goes as a bearer header");
    const stored = await page.evaluate(() => Object.keys(sessionStorage));
    check(stored.length === 1, "the token is kept in sessionStorage");
    return { requests: sent.length };
  },
};

let code = 0;
try {
  const run = steps[step];
  if (!run) throw new Error(`no step ${step}`);
  const found = await run(args);
  check(problems.length === 0, problems.join("; "));
  console.log(JSON.stringify({ step, ok: true, ...found }));
} catch (e) {
  await shot(`${step}-failed`, { fullPage: true }).catch(() => {});
  console.error(`${step}: ${e.message}${problems.length ? `\n${problems.join("\n")}` : ""}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
