// Opens pages/resume.html (notify's client module over the stock socket.io-client) in
// headless chromium and answers the test's questions about it: each line on stdin is a
// command, each answer one JSON line on stdout.
//   state   -> {"connects":n,"snapshots":n,"resyncs":n,"connected":bool,"since":{...},
//               "windows":[window...],"received":[{offset,location,eventType}...],
//               "problems":[...]}
//   quit    -> closes the browser and exits
// The first line out is {"step":"ready"} once the page has its first snapshot (or
// {"step":"failed","error":...}, then exit 1).
// Usage: node resume-page.mjs --page ORIGIN --server URL --locations a,b --chromium PATH
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { expect, openBrowser } from "./browser.mjs";

const { values: opts } = parseArgs({
  options: {
    page: { type: "string" },
    server: { type: "string" },
    locations: { type: "string", default: "" },
    chromium: { type: "string" },
  },
});
if (!opts.page || !opts.server || !opts.chromium) {
  console.error("usage: node resume-page.mjs --page ORIGIN --server URL --locations a,b --chromium PATH");
  process.exit(2);
}
const query = new URLSearchParams({ server: opts.server, locations: opts.locations });
const pageUrl = `${opts.page}/resume.html?${query}`;
const say = (line) => console.log(JSON.stringify(line));

let browser;
try {
  browser = await openBrowser(opts.chromium);
  await expect(browser.page.goto(pageUrl, { timeout: 10_000 }), `cannot load ${pageUrl}`);
  await expect(browser.page.waitForFunction(() => window.pageState?.().snapshots >= 1, null,
    { timeout: 10_000 }), "no snapshot within 10 s");
  say({ step: "ready" });
} catch (error) {
  say({ step: "failed", error: error.message, problems: browser?.problems });
  await browser?.close();
  process.exit(1);
}
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "state") {
    const state = await browser.page.evaluate(() => window.pageState());
    say({ ...state, problems: browser.problems });
  } else if (line.trim() === "quit") {
    break;
  }
}
await browser.close();
process.exit(0);
