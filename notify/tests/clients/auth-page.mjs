// The live page against a notify with CLIENT_AUTH=jwt, in a headless chromium: without
// a token cookie the page says that sign-in is needed (not "reconnecting" forever);
// with one (an http-only cookie, as a sign-in would set it) it goes live.
// Prints one JSON line; exits non-zero on failure.
// Usage: node auth-page.mjs --page http://127.0.0.1:4002/ --token <JWT> [--cookie alert_token]
//          [--chromium /usr/bin/chromium]   (or env CHROMIUM)
import { parseArgs } from "node:util";

import { expect, openBrowser } from "./browser.mjs";

const { values: opts } = parseArgs({
  options: {
    page: { type: "string" },
    token: { type: "string" },
    cookie: { type: "string", default: "alert_token" },
    chromium: { type: "string" },
  },
});
const executablePath = opts.chromium || process.env.CHROMIUM;
if (!opts.page || !opts.token || !executablePath) {
  console.error("usage: node auth-page.mjs --page URL --token JWT [--cookie NAME] [--chromium PATH]");
  process.exit(2);
}

const { page, problems, close } = await openBrowser(executablePath);
const summary = { ok: false, steps: [] };
const status = () => page.evaluate(() => {
  const node = document.getElementById("status");
  return { state: node.dataset.state, text: node.textContent };
});
try {
  await page.goto(opts.page);
  await expect(page.waitForFunction(
    () => document.getElementById("status").dataset.state === "signed-out", null, { timeout: 20_000 }),
    "without a token the page does not say that sign-in is needed");
  summary.steps.push({ step: "without a token", ...(await status()) });

  const url = new URL(opts.page);
  await page.context().addCookies([{
    name: opts.cookie, value: opts.token, domain: url.hostname, path: "/",
    httpOnly: true, sameSite: "Strict",
  }]);
  await page.reload();
  await expect(page.waitForFunction(
    () => document.getElementById("status").dataset.state === "live", null, { timeout: 20_000 }),
    "with the token cookie the page does not go live");
  summary.steps.push({ step: "with the cookie", ...(await status()) });
  summary.ok = problems.length === 0;
  summary.problems = problems;
} catch (error) {
  summary.error = error.message;
  summary.last = await status().catch(() => null);
} finally {
  await close();
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
