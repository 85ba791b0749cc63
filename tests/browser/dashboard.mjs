// Weir's dashboard in a real browser: Debian's Chromium, driven by Playwright.
// Run by crates/runner/tests/it/serve.rs with a server already up:
//   WEIR_URL, WEIR_TOKEN (admin), CHROMIUM (the browser), RUNNER (the runner
//   binary, with WEIR_DATABASE_URL set), SCREENSHOTS (a folder, or empty).
// The server's metadata database has pipelines `orders` (200,000 rows) and
// `customers`, and 300 events. Every step waits for what a person would see.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.WEIR_URL;
const shots = process.env.SCREENSHOTS || "";
if (shots) mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
page.setDefaultTimeout(60_000);
const step = (name) => console.log(`step: ${name}`);
const shot = async (name) => {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
};

try {
  step("log in");
  await page.goto(`${base}/runs`);
  assert.match(page.url(), /\/login\?next=%2Fruns$/);
  await page.fill("input[name=token]", process.env.WEIR_TOKEN);
  await page.click("button:has-text('Log in')");
  await page.waitForURL(`${base}/runs`);
  await page.locator(".live-note").waitFor();

  step("a run another runner starts appears and finishes, live");
  const other = spawn(process.env.RUNNER, ["--date", "20250323", "-p", "orders"], { stdio: "inherit" });
  const exited = new Promise((resolve) => other.on("exit", resolve));
  const row = page.locator("#runs tbody tr").filter({ hasText: "2025-03-23" }).first();
  await row.waitFor();
  await row.locator(".badge", { hasText: "success" }).waitFor({ timeout: 120_000 });
  const code = await exited;
  assert.equal(code, 0, "the other runner failed");
  await shot("runs");
  await row.locator("a").first().click();
  await page.locator("svg.gantt").waitFor();
  await page.locator("#run .badge", { hasText: "success" }).first().waitFor();
  assert.match(await page.locator("#rows").innerText(), /200,000/);
  await shot("run");

  step("pause a pipeline");
  await page.goto(`${base}/pipelines`);
  await shot("pipelines");
  await page.click("a:has-text('customers')");
  await page.click("button:has-text('Pause')");
  await page.locator("#state .badge", { hasText: "paused" }).waitFor();
  await page.locator(".notice", { hasText: "Paused" }).waitFor();

  step("trigger a run, and watch it finish");
  await page.fill("input[name=date]", "2025-03-23");
  await page.click("button:has-text('Run now')");
  await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
  await page.locator("#run .badge", { hasText: "success" }).first().waitFor({ timeout: 120_000 });
  await page.goto(`${base}/pipelines/orders`);
  await page.locator("figure.chart svg").first().waitFor();
  await shot("pipeline");

  step("run a SQL query");
  await page.goto(`${base}/lake`);
  await page.fill("textarea[name=sql]", "SELECT 41 + 1 AS answer");
  await page.click("button:has-text('Run')");
  await page.locator("#answer td", { hasText: "42" }).waitFor();
  await shot("lake");

  step("read the events page");
  await page.goto(`${base}/events`);
  await page.selectOption("select[name=metric]", "count");
  await page.fill("input[name=event]", "purchase");
  await page.selectOption("select[name=group_by]", "day");
  await page.click("button:has-text('Ask')");
  const day = page.locator("#answer tr", { hasText: "2025-03-23" });
  await day.waitFor();
  assert.match(await day.innerText(), /25/);
  await shot("events");

  await page.goto(`${base}/audit`);
  await shot("audit");
  console.log("browser test passed");
} catch (e) {
  if (shots) await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.error(`at ${page.url()}:`, e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
