// Drives notify's live page in a headless chromium (Debian's, see scripts/browser) against
// a running listener -> processor -> notify, and checks what a user would see: an alert
// shows at once, its extension moves the end, it closes when it ends, and the location
// filter keeps other locations out. Prints one JSON line; exits non-zero on failure.
// Usage: node live-page.mjs --page http://127.0.0.1:4002/ --ingest http://127.0.0.1:4000
//          [--screenshot shot.png] [--chromium /usr/bin/chromium]   (or env CHROMIUM)
import { parseArgs } from "node:util";

import { expect, openBrowser } from "./browser.mjs";

const { values: opts } = parseArgs({
  options: {
    page: { type: "string" },
    ingest: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string" },
    // The page's server takes alerts too (standalone): also post through the page's form.
    form: { type: "boolean", default: false },
  },
});
const executablePath = opts.chromium || process.env.CHROMIUM;
if (!opts.page || !opts.ingest || !executablePath) {
  console.error("usage: node live-page.mjs --page URL --ingest URL [--screenshot FILE] " +
    "[--chromium PATH, or env CHROMIUM]");
  process.exit(2);
}
const ingest = opts.ingest.replace(/\/+$/, "");
const pageOrigin = new URL(opts.page).origin;

const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const L = `live-page ${tag} L`; // a space, so the page's query encoding is exercised too
const M = `live-page ${tag} M`;
const card = (location, state) =>
  `.card[data-location=${JSON.stringify(location)}]` + (state ? `[data-state="${state}"]` : "");

const summary = { ok: false, page: opts.page, locations: [L, M], steps: [] };
let problems = []; // page errors and requests that leave the page's origin

async function post(location, seconds) {
  const timestamp = new Date().toISOString();
  const body = { location, type: "Live Page Test", timestamp, durationSeconds: seconds };
  const answer = await fetch(`${ingest}/api/alerts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await answer.text();
  if (answer.status !== 202) throw new Error(`POST for ${location}: expected 202, got ${answer.status} ${text}`);
  return { acceptedAt: Date.now(), end: Date.parse(timestamp) + seconds * 1000 };
}

// Waits until `selector` matches (and its data-end is `end`, when given); answers the
// page's clock at that moment. Checked every frame: waitForSelector backs off to 500 ms
// polls, which would hide the latencies measured here.
async function shown(selector, end, timeout, failure) {
  const handle = await expect(page.waitForFunction(([sel, end]) => {
    const node = document.querySelector(sel);
    return node && (end === null || Date.parse(node.dataset.end) === end) && Date.now();
  }, [selector, end], { timeout, polling: "raf" }), failure);
  return handle.jsonValue();
}

async function step(name, run) {
  const started = Date.now();
  try {
    const detail = await run();
    summary.steps.push({ step: name, ms: Date.now() - started, ...detail });
  } catch (error) {
    summary.failedStep = name;
    throw error;
  }
}

let browser;
let page;
try {
  browser = await openBrowser(executablePath, { viewport: { width: 390, height: 844 } }); // a phone
  ({ page, problems } = browser);
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(pageOrigin)) problems.push(`request off the page's origin: ${r.url()}`);
  });

  await step("live", async () => {
    await expect(page.goto(opts.page, { timeout: 10_000 }), `cannot load ${opts.page}`);
    await expect(page.waitForSelector('#status[data-state="live"]', { timeout: 10_000 }),
      "the status indicator did not reach live within 10 s");
  });

  let first;
  await step("open", async () => {
    first = await post(L, 4);
    const at = await shown(card(L, "open"), null, 1000,
      `no open window for ${L} within 1 s of the POST's 202`);
    const shownEnd = Date.parse(await page.getAttribute(card(L), "data-end"));
    if (shownEnd !== first.end) throw new Error(`data-end ${new Date(shownEnd).toISOString()}, ` +
      `expected ${new Date(first.end).toISOString()}`);
    return { latencyMs: at - first.acceptedAt };
  });

  let extended;
  await step("update", async () => {
    extended = await post(L, 6);
    if (extended.end <= first.end) throw new Error("the extension does not end later");
    const at = await shown(card(L, "open"), extended.end, 1000,
      `the shown end of ${L} did not move to ${new Date(extended.end).toISOString()} within 1 s`);
    return { latencyMs: at - extended.acceptedAt };
  });

  await step("close", async () => {
    const wait = extended.end - Date.now() + 2000;
    const at = await shown(`#closed ${card(L, "closed")}`, null, Math.max(wait, 1000),
      `${L} was not shown closed within 2 s of its end`);
    const closeLagMs = at - extended.end;
    const reason = await page.textContent(`${card(L)} .reason`);
    if (!reason.includes("expired")) throw new Error(`close reason shown: ${reason}`);
    return { closeLagMs };
  });

  await step("filter", async () => {
    await page.fill("#filter", M);
    await page.click("#apply-filter");
    await expect(page.waitForSelector('#status[data-state="live"]', { timeout: 5000 }),
      `not live again within 5 s after filtering on ${M}`);
    const other = await post(L, 10);
    const mine = await post(M, 10);
    const at = await shown(card(M, "open"), null, 1000,
      `no open window for ${M} within 1 s of its POST's 202`);
    const latencyMs = at - mine.acceptedAt;
    await page.waitForTimeout(Math.max(0, other.acceptedAt + 1500 - Date.now()));
    if (await page.$(card(L))) throw new Error(`${L} is shown although the filter is ${M}`);
    if ((await page.textContent("#feed")).includes(L)) throw new Error(`${L} is in the feed`);
    return { latencyMs };
  });

  if (opts.form) await step("form", async () => {
    // M is open (the filter shows it); the form extends it to two minutes.
    await page.fill('#post-form [name="location"]', M);
    await page.fill('#post-form [name="seconds"]', "120");
    const before = Date.parse(await page.getAttribute(card(M), "data-end"));
    await page.click('#post-form button[type="submit"]');
    await expect(page.waitForFunction(
      () => /^202 /.test(document.querySelector("#post-result").textContent),
      null, { timeout: 2000 }), "the form's POST was not answered 202 within 2 s");
    await expect(page.waitForFunction(([sel, before]) => {
      const node = document.querySelector(sel);
      return node && Date.parse(node.dataset.end) > before + 60_000;
    }, [card(M, "open"), before], { timeout: 1000, polling: "raf" }),
    `the form's alert did not extend ${M} within 1 s`);
  });

  await step("layout", async () => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    if (overflow > 0) throw new Error(`the page is ${overflow}px wider than a 390px phone screen`);
    if (problems.length) throw new Error(problems.join("; "));
  });
  summary.ok = true;
} catch (error) {
  summary.error = error.message;
} finally {
  if (page && opts.screenshot) {
    try {
      await page.evaluate(() => scrollTo(0, 0)); // a sticky header shows where it belongs
      await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: 10_000 });
      summary.screenshot = opts.screenshot;
    } catch (error) {
      summary.screenshotError = error.message;
    }
  }
  if (problems.length) summary.problems = problems;
  await browser?.close();
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
