// Drives pages/original.html (a page written like the original system's: stock
// socket.io-client, default options, toasts) in headless chromium. The page comes from
// its own origin (serve-page.mjs), the alert server is another. Posts two alerts of
// different types for one location and checks the page's toasts read, in order:
//   OPEN Alert: Rocket Alert in L (<start> - <end>)
//   UPDATE Alert: Mixed Threats in L (<start> - <new end>)
//   CLOSE Alert: Mixed Threats in L (<start> - <new end>)
// with the times as the page's own `new Date(...).toLocaleTimeString()` shows them (so
// never "Invalid Date"), and that the client upgraded from polling to WebSocket.
// Prints one JSON line; exits non-zero on failure.
// Usage: node original-page.mjs --page ORIGIN --server URL --ingest URL --chromium PATH
import { parseArgs } from "node:util";
import { expect, openBrowser, post } from "./browser.mjs";

const { values: opts } = parseArgs({
  options: {
    page: { type: "string" },
    server: { type: "string" },
    ingest: { type: "string" },
    chromium: { type: "string" },
  },
});
if (!opts.page || !opts.server || !opts.ingest || !opts.chromium) {
  console.error("usage: node original-page.mjs --page ORIGIN --server URL --ingest URL --chromium PATH");
  process.exit(2);
}
const pageUrl = `${opts.page}/original.html?server=${encodeURIComponent(opts.server)}`;
const ingest = opts.ingest.replace(/\/+$/, "");
const L = `original-page ${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const summary = { ok: false, page: pageUrl, location: L };

let browser;
try {
  if (new URL(opts.page).origin === new URL(opts.server).origin) {
    throw new Error("the page must come from another origin than the alert server");
  }
  browser = await openBrowser(opts.chromium);
  const { page, problems } = browser;
  await expect(page.goto(pageUrl, { timeout: 10_000 }), `cannot load ${pageUrl}`);
  await expect(page.waitForSelector("body[data-connected]", { state: "attached", timeout: 10_000 }),
    "the page's socket did not connect within 10 s");

  // Whole seconds, so that what the page shows does not depend on rounding.
  const start = Math.floor(Date.now() / 1000) * 1000;
  const first = await post(ingest, { location: L, type: "Rocket Alert", timestamp: start, seconds: 3 });
  const toasts = async (n, timeout, failure) => {
    await expect(page.waitForFunction(([location, n]) =>
      [...document.querySelectorAll(".toast")].filter((t) => t.textContent.includes(` in ${location} (`)).length >= n,
    [L, n], { timeout }), failure);
    return page.$$eval(".toast", (items) => items.map((t) => t.textContent));
  };
  await toasts(1, 5000, "no toast for the open within 5 s");
  const second = await post(ingest, { location: L, type: "Hostile Aircraft", timestamp: start, seconds: 5 });
  await toasts(2, 5000, "no toast for the update within 5 s");
  const shown = await toasts(3, second.end - Date.now() + 5000, "no toast for the close within 5 s of its end");

  const times = await page.evaluate((instants) =>
    instants.map((ms) => new Date(ms).toLocaleTimeString()), [start, first.end, second.end]);
  const expected = [
    `OPEN Alert: Rocket Alert in ${L} (${times[0]} - ${times[1]})`,
    `UPDATE Alert: Mixed Threats in ${L} (${times[0]} - ${times[2]})`,
    `CLOSE Alert: Mixed Threats in ${L} (${times[0]} - ${times[2]})`,
  ];
  const mine = shown.filter((t) => t.includes(` in ${L} (`));
  summary.toasts = mine;
  summary.transport = await page.evaluate(() => window.socket.io.engine.transport.name);
  if (JSON.stringify(mine) !== JSON.stringify(expected)) {
    throw new Error(`toasts ${JSON.stringify(mine)}, expected ${JSON.stringify(expected)}`);
  }
  if (shown.some((t) => t.includes("Invalid Date"))) throw new Error(`"Invalid Date" shown: ${shown}`);
  if (summary.transport !== "websocket") throw new Error(`still on ${summary.transport}: no upgrade`);
  if (problems.length) throw new Error(problems.join("; "));
  summary.ok = true;
} catch (error) {
  summary.error = error.message;
  if (browser?.problems.length) summary.problems = browser.problems;
} finally {
  await browser?.close();
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
