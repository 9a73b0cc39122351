// The README's first command in a browser: `glucoengine serve --demo` prints a demo login,
// and the app shows its ten days of simulated data. The screenshots of this run are the ones
// committed to docs/screenshots/ and site/screenshots/ (copy them from web/test-results/).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { axeViolations, DESKTOP, launchBrowser, MOBILE, screenshot, startEngine } from "./harness.mjs";

let engine;
let browser;
let page;

before(async () => {
  engine = await startEngine({}, ["--demo"]);
  browser = await launchBrowser();
  page = await (await browser.newContext({ viewport: DESKTOP, baseURL: engine.base })).newPage();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

test("the demo account's data is on the dashboard and in the reports", async () => {
  const deadline = Date.now() + 10_000;
  let login;
  while (!(login = engine.output().match(/Demo account: (\S+)\s+password: (\S+)/)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(login, `no demo login printed: ${engine.output()}`);
  await page.goto("/app/");
  await page.getByLabel("Email").fill(login[1]);
  await page.getByLabel("Password").fill(login[2]);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("current-value").waitFor();
  assert.match(await page.getByTestId("current-value").innerText(), /^\d+$/);
  await page.getByRole("button", { name: "6 h" }).click();
  await page.waitForTimeout(300);
  await page.setViewportSize(MOBILE);
  await page.waitForTimeout(200);
  await screenshot(page, "demo-dashboard-mobile");
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(200);
  await screenshot(page, "demo-dashboard-desktop");
  assert.deepEqual(await axeViolations(page), []);

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Reports" }).click();
  await page.getByTestId("agp-chart").waitFor();
  await page.getByTestId("overlay-chart").waitFor();
  const tir = await page.getByTestId("tir-in-range").locator("td").first().innerText();
  assert.match(tir, /^\d+\.\d %$/);
  await page.waitForTimeout(300);
  await screenshot(page, "demo-reports-desktop");
  assert.deepEqual(await axeViolations(page), []);

  // Insights: the demo's ten days show patterns, each with its evidence.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Insights" }).click();
  const first = page.locator(".pattern").first();
  await first.waitFor();
  assert.ok((await page.locator(".pattern").count()) >= 1);
  const detail = await first.locator("p").nth(1).innerText();
  assert.match(detail, /care team/);
  assert.doesNotMatch(detail, /\d\s*(U|units)\b/);
  await first.getByText(/^Evidence \(\d+ items?\)$/).click();
  const items = first.locator(".evidence-list li");
  assert.ok((await items.count()) >= 1);
  assert.match(await items.first().innerText(), /mg\/dL/);
  await screenshot(page, "demo-insights-desktop");
  assert.deepEqual(await axeViolations(page), []);
});
