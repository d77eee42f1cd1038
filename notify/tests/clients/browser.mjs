// Shared by the page drivers (live-page.mjs, original-page.mjs, resume-page.mjs): Debian's chromium
// through playwright-core, headless, with page errors and console errors collected.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

// `options` go to Playwright's launch (e.g. a `viewport`).
export async function openBrowser(executablePath, options = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), "page-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--no-first-run"],
    timeout: 30_000,
    ...options,
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { page, problems, close };
}

// POSTs one alert to the listener; answers its start and end in ms.
export async function post(ingest, { location, type, timestamp, seconds }) {
  const body = { location, type, timestamp: new Date(timestamp).toISOString(), durationSeconds: seconds };
  const answer = await fetch(`${ingest}/api/alerts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await answer.text();
  if (answer.status !== 202) throw new Error(`POST for ${location}: expected 202, got ${answer.status} ${text}`);
  return { start: timestamp, end: timestamp + seconds * 1000 };
}

// A Playwright wait whose timeout is reported as `failure`.
export async function expect(promise, failure) {
  try {
    return await promise;
  } catch (error) {
    throw new Error(`${failure} (${String(error.message).split("\n")[0]})`);
  }
}
