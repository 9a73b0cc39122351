// The end-to-end story in real headless Chromium against a real GlucoEngine:
// sign up → uploader token → readings through the API → dashboard shows value and trend →
// a new reading arrives live → offline: log carbs → online: the entry is on the server
// exactly once → an urgent low raises an alert that is acknowledged → the reports page shows
// the API's time in range. Every main screen is checked with axe-core (WCAG 2.1 AA) and
// photographed at phone and desktop widths into web/test-results/screenshots/.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createHash } from "node:crypto";
import { apiClient, axeViolations, cgmTrace, DESKTOP, launchBrowser, MOBILE, screenshot, startEngine } from "./harness.mjs";

const EMAIL = "e2e-person@example.test";
const PASSWORD = "violet tractor harbour sings";

let engine;
let browser;
let context;
let page;
let api;
const foreignRequests = [];

before(async () => {
  engine = await startEngine();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: DESKTOP, baseURL: engine.base });
  page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  // Nothing may come from anywhere but the server itself (no CDN, no tracking).
  context.on("request", (r) => {
    if (!r.url().startsWith(engine.base) && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) foreignRequests.push(r.url());
  });
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

async function expectAccessible(name) {
  const violations = await axeViolations(page);
  assert.deepEqual(violations, [], `${name}: accessibility violations`);
}

/** Photographs the current screen at both widths (the phone one first: the app is used on phones). */
async function photograph(name) {
  await page.setViewportSize(MOBILE);
  await page.waitForTimeout(150);
  await screenshot(page, `${name}-mobile`);
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(150);
  await screenshot(page, `${name}-desktop`);
}

async function go(label) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: label }).click();
  await page.getByRole("heading", { level: 1, name: label }).waitFor();
}

test("the marketing site is served at / and links to the app", async () => {
  await page.goto("/");
  await page.getByRole("link", { name: /open the app/i }).first().waitFor();
  await expectAccessible("site");
  await screenshot(page, "site-desktop");
});

test("sign up, then create an uploader token", async () => {
  await page.goto("/app/");
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await expectAccessible("login");
  await photograph("login");
  await page.getByRole("link", { name: "Create an account" }).click();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor();
  await page.getByTestId("current-empty").waitFor();

  await go("Settings");
  await page.getByLabel("Name", { exact: true }).fill("E2E uploader");
  await page.getByLabel("Read my data").check();
  await page.getByRole("button", { name: "Create token" }).click();
  const token = await page.getByTestId("token-value").inputValue();
  assert.match(token, /^\S{20,}$/);
  api = apiClient(engine.base, token);
  await expectAccessible("settings");
  await photograph("settings");
});

test("readings posted through the API show on the dashboard with value and trend", async () => {
  const now = Date.now();
  // Three hours: steady around 140, then falling 2 mg/dL per minute for the last 15 minutes.
  const readings = cgmTrace(now - 60_000, 36, (minutesAgo) => (minutesAgo > 15 ? 140 + 8 * Math.sin(minutesAgo / 20) : 110 + 2 * minutesAgo));
  readings[readings.length - 1].trend = "SingleDown";
  const r = await api("POST", "/api/v1/readings", readings);
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await go("Dashboard");
  await page.reload();
  const value = page.getByTestId("current-value");
  await value.filter({ hasText: "110" }).waitFor();
  assert.equal(await page.getByTestId("current-trend").getAttribute("aria-label"), "falling");
  assert.match(await page.getByTestId("current-delta").innerText(), /−10 mg\/dL/);
  assert.equal((await page.getByTestId("current-band").innerText()).toLowerCase(), "in range");
  await expectAccessible("dashboard");
  await photograph("dashboard");
});

test("the app is installable: the browser reports no installability errors", async () => {
  const cdp = await context.newCDPSession(page);
  const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
  // Test contexts are incognito, where nothing installs: that one is the harness's, not the app's.
  assert.deepEqual(installabilityErrors.filter((e) => e.errorId !== "in-incognito"), []);
  const manifest = await (await fetch(`${engine.base}/app/manifest.webmanifest`)).json();
  assert.ok(manifest.icons.some((i) => i.purpose === "maskable"), "a maskable icon");
  await cdp.detach();
});

test("dark mode passes the same accessibility checks", async () => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.getByTestId("current-value").waitFor();
  await expectAccessible("dashboard (dark)");
  await screenshot(page, "dashboard-dark-desktop");
  await page.emulateMedia({ colorScheme: "light" });
});

test("a new reading arrives live, without a reload", async () => {
  await page.evaluate(() => {
    window.__noReload = true;
  });
  const r = await api("POST", "/api/v1/readings", { time: new Date().toISOString(), value: 104, trend: "SingleDown", device: "e2e-uploader" });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await page.getByTestId("current-value").filter({ hasText: "104" }).waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");
});

test("a reading uploaded through the Nightscout API, as xDrip+ sends it, appears live", async () => {
  await go("Settings");
  const url = await page.getByTestId("nightscout-url").inputValue();
  const secret = await page.getByTestId("nightscout-secret").inputValue();
  assert.match(url, /\/ns\/[a-z0-9]+$/);
  assert.ok(secret.length >= 12, "Nightscout needs a secret of 12 characters or more");
  await expectAccessible("settings with the Nightscout site");
  await go("Dashboard");
  await page.evaluate(() => {
    window.__noReload = true;
  });
  const date = Date.now();
  // xDrip+'s NightscoutUploader: an array of entries, the secret's SHA-1 in `api-secret`.
  const r = await fetch(`${url}/api/v1/entries`, {
    method: "POST",
    headers: { "content-type": "application/json", "api-secret": createHash("sha1").update(secret).digest("hex") },
    body: JSON.stringify([{ device: "xDrip-DexcomG6", date, dateString: new Date(date).toISOString(), sgv: 97, delta: -3.5, direction: "FortyFiveDown", type: "sgv", filtered: 97000, unfiltered: 97500, rssi: 100, noise: 1 }]),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  const answer = JSON.parse(text);
  assert.equal(answer.length, 1);
  assert.ok(answer[0]._id, "Nightscout clients need the stored id");
  await page.getByTestId("current-value").filter({ hasText: "97" }).waitFor({ timeout: 10_000 });
  // Loop's device status (its NightscoutService shape) shows beside the glucose, live.
  const status = await fetch(`${url}/api/v1/devicestatus`, {
    method: "POST",
    headers: { "content-type": "application/json", "api-secret": createHash("sha1").update(secret).digest("hex") },
    body: JSON.stringify([
      {
        device: "loop://iPhone",
        created_at: new Date().toISOString(),
        pump: { clock: new Date().toISOString(), manufacturer: "Insulet", model: "Dash", suspended: false, reservoir_display_override: "50+U" },
        uploader: { name: "iPhone", timestamp: new Date().toISOString(), battery: 64 },
        loop: { name: "Loop", version: "3.6.1", timestamp: new Date().toISOString(), iob: { timestamp: new Date().toISOString(), iob: 1.42 }, cob: { timestamp: new Date().toISOString(), cob: 32.5 } },
      },
    ]),
  });
  assert.equal(status.status, 200, await status.text());
  await page.getByTestId("device-iob").filter({ hasText: "1.42 U" }).waitFor({ timeout: 10_000 });
  assert.equal(await page.getByTestId("device-reservoir").innerText(), "50+U");
  assert.equal(await page.getByTestId("device-phone-battery").innerText(), "64 %");
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");
  await expectAccessible("dashboard with device status");
});

test("readings uploaded while the browser was offline are replayed when it reconnects", async () => {
  await context.setOffline(true);
  await page.getByTestId("connection-banner").filter({ hasText: "offline" }).waitFor();
  const r = await api("POST", "/api/v1/readings", { time: new Date().toISOString(), value: 101, trend: "FortyFiveDown", device: "e2e-uploader" });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await context.setOffline(false);
  await page.getByTestId("current-value").filter({ hasText: "101" }).waitFor({ timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");
});

test("carbs logged offline sync once when back online", async () => {
  // The service worker must control the page before the network goes.
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener("controllerchange", r, { once: true }));
  });
  await context.setOffline(true);
  await page.getByTestId("connection-banner").filter({ hasText: "offline" }).waitFor();
  await go("Logbook");
  await page.getByText("Carbs", { exact: true }).click();
  await page.getByLabel("Grams of carbohydrate").fill("45");
  await page.getByRole("button", { name: "Add entry" }).click();
  await page.getByRole("status").filter({ hasText: "will sync" }).waitFor();
  await page.getByTestId("pending-count").filter({ hasText: "1 entry" }).waitFor();
  await expectAccessible("logbook offline");
  await photograph("logbook-offline");
  await context.setOffline(false);
  await page.getByTestId("pending-count").waitFor({ state: "detached", timeout: 15_000 });
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const list = await api("GET", `/api/v1/treatments?from=${encodeURIComponent(from)}`);
  assert.equal(list.status, 200, JSON.stringify(list.json));
  const carbs = list.json.items.filter((t) => t.kind === "carbs" && t.grams === 45);
  assert.equal(carbs.length, 1, `carbs on the server: ${JSON.stringify(list.json.items)}`);
  // The logbook lists it once too.
  await page.getByTestId("treatment-list").getByText("45 g").waitFor();
  assert.equal(await page.getByTestId("treatment-list").getByText("45 g").count(), 1);
});

test("a saved entry edited and another deleted while offline: the server has both changes once back online", async () => {
  const other = await api("POST", "/api/v1/treatments", { time: new Date(Date.now() - 600_000).toISOString(), kind: "note", text: "to delete", id: "e2e-note" });
  assert.equal(other.status, 201, JSON.stringify(other.json));
  await page.reload();
  await page.getByTestId("treatment-list").getByText("to delete").waitFor();
  await context.setOffline(true);
  await page.getByTestId("connection-banner").filter({ hasText: "offline" }).waitFor();
  await page.getByRole("button", { name: /^Edit carbs/ }).click();
  await page.getByLabel("Grams of carbohydrate").fill("50");
  await page.getByRole("button", { name: "Save changes" }).click();
  page.once("dialog", (d) => void d.accept());
  await page.getByRole("button", { name: /^Delete note/ }).click();
  await page.getByTestId("pending-count").filter({ hasText: "2 entries" }).waitFor();
  await context.setOffline(false);
  await page.getByTestId("pending-count").waitFor({ state: "detached", timeout: 15_000 });
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const list = await api("GET", `/api/v1/treatments?from=${encodeURIComponent(from)}`);
  const carbs = list.json.items.filter((t) => t.kind === "carbs");
  assert.deepEqual(carbs.map((t) => t.grams), [50]);
  assert.equal(list.json.items.filter((t) => t.kind === "note").length, 0);
});

test("an urgent low posted through the API shows an alert that can be acknowledged", async () => {
  await go("Dashboard");
  const r = await api("POST", "/api/v1/readings", { time: new Date().toISOString(), value: 48, trend: "DoubleDown", device: "e2e-uploader" });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await page.getByTestId("current-value").filter({ hasText: "48" }).waitFor({ timeout: 10_000 });
  assert.equal(await page.getByTestId("current-band").innerText().then((t) => t.toLowerCase()), "urgent low");
  await go("Alerts");
  const alert = page.getByTestId("alert-urgent_low");
  await alert.waitFor({ timeout: 15_000 });
  await expectAccessible("alerts");
  await photograph("alerts");
  await alert.getByRole("button", { name: "Acknowledge" }).click();
  await alert.filter({ hasText: "acknowledged" }).waitFor();
  const alerts = await api("GET", "/api/v1/alerts");
  const urgent = alerts.json.alerts.find((a) => a.kind === "urgent_low");
  assert.equal(urgent?.state, "acknowledged");
});

test("the last data stays viewable offline, even after a reload", async () => {
  await go("Dashboard");
  const shown = await page.getByTestId("current-value").innerText();
  await context.setOffline(true);
  await page.reload();
  await page.getByTestId("connection-banner").filter({ hasText: "offline" }).waitFor();
  assert.equal(await page.getByTestId("current-value").innerText(), shown);
  await page.getByTestId("glucose-chart").waitFor();
  await context.setOffline(false);
  await page.getByTestId("connection-banner").filter({ hasText: "offline" }).waitFor({ state: "detached" });
});

test("the reports page shows the same time in range as the API", async () => {
  await go("Reports");
  const row = page.getByTestId("tir-in-range");
  await row.waitFor();
  const summary = await api("GET", "/api/v1/reports/summary");
  assert.equal(summary.status, 200);
  const shown = await row.locator("td").first().innerText();
  assert.equal(shown, `${summary.json.tir.toFixed(1)} %`);
  const veryLow = await page.getByTestId("tir-very-low").locator("td").first().innerText();
  assert.equal(veryLow, `${summary.json.tbr_54.toFixed(1)} %`);
  await page.getByTestId("agp-chart").waitFor();
  await page.getByTestId("history-chart").waitFor();
  await expectAccessible("reports");
  await photograph("reports");
  // The printed AGP report is one page for the clinic visit.
  await page.emulateMedia({ media: "print" });
  const pdf = await page.pdf({ format: "A4", printBackground: true, path: "test-results/agp-report.pdf" });
  await page.emulateMedia({ media: "screen" });
  const pages = pdf.toString("latin1").match(/\/Type\s*\/Page[^s]/g) ?? [];
  assert.equal(pages.length, 1, "the printed report fits one page");
});

test("in mmol/L, every screen shows the same glucose converted once", async () => {
  await go("Settings");
  await page.getByText("mmol/L", { exact: true }).click();
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByRole("status").filter({ hasText: "Settings saved" }).waitFor();
  const settings = await api("GET", "/api/v1/me/settings");
  assert.equal(settings.json.display_unit, "mmol/L");
  // The targets did not drift through the conversion.
  assert.equal(settings.json.target_low_mgdl, 70);
  assert.equal(settings.json.target_high_mgdl, 180);

  await go("Dashboard");
  const latest = await api("GET", "/api/v1/readings/latest");
  assert.equal(await page.getByTestId("current-value").innerText(), (latest.json.value / 18.016).toFixed(1));

  await go("Reports");
  const summary = await api("GET", "/api/v1/reports/summary?unit=mmol/L");
  await page.getByTestId("metrics-table").getByRole("cell", { name: `${summary.json.mean.toFixed(1)} mmol/L` }).waitFor();
  await page.getByTestId("tir-in-range").filter({ hasText: "3.9–10.0" }).waitFor();

  await go("Settings");
  await page.getByText("mg/dL", { exact: true }).click();
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByRole("status").filter({ hasText: "Settings saved" }).waitFor();
});

test("sharing and following screens are accessible", async () => {
  await go("Sharing");
  await expectAccessible("sharing");
  await photograph("sharing");
  await go("Following");
  await expectAccessible("following");
});

test("a caregiver accepts an invite and follows the person live", async () => {
  await go("Sharing");
  await page.getByLabel("Their email").fill("e2e-caregiver@example.test");
  await page.getByRole("button", { name: "Send invite" }).click();
  const link = await page.getByLabel("Invite link").inputValue();
  assert.match(link, /\/app\/invite#\S+$/);

  const signup = await fetch(`${engine.base}/api/v1/auth/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "e2e-caregiver@example.test", password: PASSWORD }),
  });
  assert.equal(signup.status, 201);
  const caregiverContext = await browser.newContext({ viewport: MOBILE, baseURL: engine.base });
  const caregiver = await caregiverContext.newPage();
  // Opening the link logged out goes through the login and comes back to the invite.
  await caregiver.goto(link);
  await caregiver.getByLabel("Email").fill("e2e-caregiver@example.test");
  await caregiver.getByLabel("Password").fill(PASSWORD);
  await caregiver.getByRole("button", { name: "Log in" }).click();
  await caregiver.getByRole("button", { name: "Accept invite" }).click();
  await caregiver.getByRole("heading", { level: 1, name: "Following" }).waitFor();
  await caregiver.getByRole("heading", { level: 2, name: EMAIL }).waitFor();
  await caregiver.getByTestId("current-value").waitFor();
  assert.deepEqual(await axeViolations(caregiver), []);
  await screenshot(caregiver, "following-mobile");

  const r = await api("POST", "/api/v1/readings", { time: new Date().toISOString(), value: 97, trend: "Flat", device: "e2e-uploader" });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await caregiver.getByTestId("current-value").filter({ hasText: "97" }).waitFor({ timeout: 10_000 });
  // The person's reports, as their caregiver sees them.
  await caregiver.getByRole("link", { name: `Reports of ${EMAIL}` }).click();
  await caregiver.getByRole("heading", { level: 1, name: `Reports of ${EMAIL}` }).waitFor();
  const theirs = await api("GET", "/api/v1/reports/summary");
  await caregiver.getByTestId("tir-in-range").filter({ hasText: `${theirs.json.tir.toFixed(1)} %` }).waitFor();
  await caregiverContext.close();

  // The person sees the caregiver's reads in the access log.
  await page.reload();
  await page.getByRole("cell", { name: "e2e-caregiver@example.test" }).first().waitFor();
});

test("a Clarity export is imported from Settings, then the account is deleted and kept again", async () => {
  const email = "e2e-data@example.test";
  const signup = await fetch(`${engine.base}/api/v1/auth/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  assert.equal(signup.status, 201);
  const own = await browser.newContext({ viewport: DESKTOP, baseURL: engine.base });
  const p = await own.newPage();
  const logIn = async () => {
    await p.goto("/app/");
    await p.getByLabel("Email").fill(email);
    await p.getByLabel("Password").fill(PASSWORD);
    await p.getByRole("button", { name: "Log in" }).click();
    await p.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor();
  };
  await logIn();
  await p.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
  const importing = p.getByRole("region", { name: "Import", exact: true });
  await importing.getByLabel("Source").selectOption("clarity");
  const fixture = new URL("../../crates/domain/tests/fixtures/import/clarity_mgdl.csv", import.meta.url).pathname;
  await importing.getByLabel("File").setInputFiles(fixture);
  await importing.getByRole("button", { name: "Import", exact: true }).click();
  await p.getByTestId("import-report").filter({ hasText: "Imported 16 readings and 5 treatments" }).waitFor();
  // The export carries them.
  const download = await p.getByTestId("downloads").getByRole("link", { name: /Readings \(CSV\)/ }).getAttribute("href");
  const csv = await p.evaluate(async (href) => (await fetch(href)).text(), download);
  assert.equal(csv.trim().split("\n").length, 1 + 16);
  assert.deepEqual(await axeViolations(p), []);
  await screenshot(p, "settings-your-data-desktop");

  await p.getByLabel(/Type your email address/).fill(email);
  await p.getByRole("button", { name: "Delete my account" }).click();
  await p.getByRole("button", { name: "Log in" }).waitFor();
  // Back within the grace period: the banner says when, and the account can be kept.
  await p.getByLabel("Email").fill(email);
  await p.getByLabel("Password").fill(PASSWORD);
  await p.getByRole("button", { name: "Log in" }).click();
  await p.getByTestId("deletion-banner").waitFor();
  assert.deepEqual(await axeViolations(p), []);
  await p.getByRole("button", { name: "Keep my account" }).click();
  await p.getByTestId("deletion-banner").waitFor({ state: "detached" });
  await own.close();
});

test("nothing was loaded from another origin", () => {
  assert.deepEqual(foreignRequests, []);
});
