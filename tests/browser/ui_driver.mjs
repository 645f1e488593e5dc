// Drives /ui in Debian's headless chromium for tests/browser/test_ui.py.
//
// Protocol on stdio, one line each: the driver prints READY once the page says it is live;
// the test posts its events and writes a JSON list of CSS selectors; the driver waits for
// every selector, takes the screenshot, prints one JSON line describing the table, and exits.
// Usage: node ui_driver.mjs BASE_URL SCREENSHOT_PATH
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({
    viewport: { width: 1280, height: 640 },
    reducedMotion: "reduce", // no row flash in the screenshot
  });
  const problems = [];
  page.on("pageerror", (error) => problems.push("pageerror: " + error.message));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push("console: " + message.text());
  });
  await page.goto(base + "/ui");
  await page.waitForSelector('#status[data-state="live"]', { timeout: 15000 });
  console.log("READY");

  const { value } = await lines.next();
  for (const selector of JSON.parse(value)) {
    await page.waitForSelector(selector, { timeout: 15000 });
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  const rows = await page.$$eval("tr.event", (found) =>
    found.map((row) => ({
      id: row.dataset.eventId,
      broker: row.dataset.broker,
      type: row.querySelector("td.type").firstChild.textContent,
      reply: row.querySelector(".reply")?.textContent ?? null,
      chips: [...row.querySelectorAll(".chip")].map((chip) => ({
        trigger: chip.dataset.trigger ?? null,
        outcome: chip.dataset.outcome ?? null,
        text: chip.textContent,
      })),
    })),
  );
  const counters = await page.$$eval(".counters b", (found) =>
    Object.fromEntries(found.map((b) => [b.id, Number(b.textContent)])),
  );
  const status = await page.textContent("#status");
  console.log(JSON.stringify({ rows, counters, status, problems }));
} finally {
  await browser.close();
}
process.exit(0);
