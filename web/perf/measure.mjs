// The web app's performance figures (issue 7), measured in headless Chromium against a real
// GlucoEngine, each beside a baseline measured in the same run (this machine is shared and
// noisy; compare ratios, not milliseconds):
//   1. time until the dashboard shows the current glucose (a `glucose-shown` performance
//      mark), warm server and warm browser cache, vs the first contentful paint of the static
//      site page from the same server;
//   2. the JavaScript and CSS the dashboard route loads, gzip-compressed (goal < 200 kB);
//   3. frame times while panning the 90-day history chart (26,000 readings) vs the same
//      animation loop with the chart idle.
// Run: scripts/web perf   (uses target/release/glucoengine when built, else target/debug)
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { apiClient, cgmTrace, DESKTOP, launchBrowser, ROOT, startEngine, WEB } from "../e2e/harness.mjs";

const RUNS = Number(process.env.PERF_RUNS ?? 7);
const release = join(ROOT, "target", "release", "glucoengine");
if (!process.env.GLUCOENGINE && existsSync(release)) process.env.GLUCOENGINE = release;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const fmt = (n) => n.toFixed(1);

const engine = await startEngine();
const browser = await launchBrowser();
try {
  const email = "perf@example.test";
  const password = "violet tractor harbour sings";
  await fetch(`${engine.base}/api/v1/auth/signup`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }) });
  const login = await (await fetch(`${engine.base}/api/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }) })).json();
  const api = apiClient(engine.base, login.token);
  const days = 90;
  const all = cgmTrace(Date.now() - 60_000, days * 288, (m) => 140 + 50 * Math.sin(m / 180) + 25 * Math.sin(m / 37));
  for (let i = 0; i < all.length; i += 5000) {
    const r = await api("POST", "/api/v1/readings", all.slice(i, i + 5000));
    if (r.status !== 201) throw new Error(`upload: ${r.status} ${JSON.stringify(r.json)}`);
  }

  const context = await browser.newContext({ viewport: DESKTOP, baseURL: engine.base });
  const page = await context.newPage();
  await page.goto("/app/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("current-value").waitFor();
  // Warm: the service worker installed and controlling, caches filled.
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  await page.reload();
  await page.getByTestId("current-value").waitFor();

  // 1. First meaningful paint of the dashboard vs the static site's first contentful paint.
  const dashboard = [];
  const site = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto("/");
    site.push(await page.evaluate(() => new Promise((ok) => {
      const fcp = () => performance.getEntriesByName("first-contentful-paint")[0];
      const poll = () => (fcp() ? ok(fcp().startTime) : setTimeout(poll, 10));
      poll();
    })));
    await page.goto("/app/");
    await page.getByTestId("current-value").waitFor();
    dashboard.push(await page.evaluate(() => performance.getEntriesByName("glucose-shown")[0]?.startTime ?? NaN));
  }
  console.log(`dashboard shows glucose (warm)   median ${fmt(median(dashboard))} ms  (runs: ${dashboard.map(fmt).join(", ")})`);
  console.log(`baseline: static site FCP        median ${fmt(median(site))} ms  (runs: ${site.map(fmt).join(", ")})`);
  console.log(`ratio dashboard / static page    ${(median(dashboard) / median(site)).toFixed(2)}`);

  // 2. What the dashboard route loads.
  const loaded = await page.evaluate(() =>
    performance
      .getEntriesByType("resource")
      .map((e) => new URL(e.name).pathname)
      .filter((p) => p.startsWith("/app/assets/")),
  );
  const navScripts = await page.evaluate(() => [...document.querySelectorAll("script[src], link[rel=stylesheet], link[rel=modulepreload]")].map((e) => new URL(e.src || e.href).pathname));
  const files = [...new Set([...loaded, ...navScripts])].filter((p) => p.startsWith("/app/assets/"));
  let js = 0;
  let css = 0;
  for (const f of files) {
    const gz = gzipSync(readFileSync(join(WEB, "dist", f.slice("/app/".length)))).length;
    if (f.endsWith(".css")) css += gz;
    else js += gz;
  }
  console.log(`dashboard route: JS ${fmt(js / 1024)} kB + CSS ${fmt(css / 1024)} kB gzip (${files.length} files; goal: JS < 200 kB)`);

  // 3. Panning the 90-day chart.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Reports" }).click();
  await page.getByRole("button", { name: "90 days" }).click();
  const chart = page.getByTestId("history-chart");
  await chart.waitFor();
  await page.waitForFunction(() => document.querySelector("[data-testid=history-chart]")?.getAttribute("data-points") >= 25000, null, { timeout: 60_000 });
  await chart.scrollIntoViewIfNeeded();
  const frames = (panning) =>
    page.evaluate(async (panning) => {
      const over = document.querySelector("[data-testid=history-chart] .u-over");
      const rect = over.getBoundingClientRect();
      const y = rect.top + rect.height / 2;
      let x = rect.left + rect.width * 0.8;
      if (panning) over.dispatchEvent(new PointerEvent("pointerdown", { clientX: x, clientY: y, button: 0, pointerId: 1, bubbles: true }));
      const deltas = [];
      let last = performance.now();
      await new Promise((done) => {
        let n = 0;
        const tick = (t) => {
          deltas.push(t - last);
          last = t;
          if (panning) {
            x -= 4;
            over.dispatchEvent(new PointerEvent("pointermove", { clientX: x, clientY: y, pointerId: 1, bubbles: true }));
          }
          if (++n < 120) requestAnimationFrame(tick);
          else done();
        };
        requestAnimationFrame(tick);
      });
      if (panning) over.dispatchEvent(new PointerEvent("pointerup", { clientX: x, clientY: y, pointerId: 1, bubbles: true }));
      return deltas.slice(5);
    }, panning);
  const idle = await frames(false);
  const pan = await frames(true);
  // The work of one pan step itself: the pointer event, uPlot's redraw of ~26,000 points
  // (uPlot commits a scale change in a microtask), measured without waiting for a frame.
  const steps = await page.evaluate(async () => {
    const over = document.querySelector("[data-testid=history-chart] .u-over");
    const rect = over.getBoundingClientRect();
    const y = rect.top + rect.height / 2;
    let x = rect.left + rect.width * 0.8;
    over.dispatchEvent(new PointerEvent("pointerdown", { clientX: x, clientY: y, button: 0, pointerId: 1, bubbles: true }));
    const out = [];
    for (let i = 0; i < 60; i++) {
      x -= 4;
      const t0 = performance.now();
      over.dispatchEvent(new PointerEvent("pointermove", { clientX: x, clientY: y, pointerId: 1, bubbles: true }));
      await new Promise((r) => setTimeout(r, 0));
      out.push(performance.now() - t0);
    }
    over.dispatchEvent(new PointerEvent("pointerup", { clientX: x, clientY: y, pointerId: 1, bubbles: true }));
    return out;
  });
  console.log(`frame time idle (baseline)       p50 ${fmt(median(idle))} ms  p95 ${fmt(pct(idle, 0.95))} ms`);
  console.log(`frame time panning 90 days        p50 ${fmt(median(pan))} ms  p95 ${fmt(pct(pan, 0.95))} ms  max ${fmt(Math.max(...pan))} ms`);
  console.log(`ratio panning / idle              p50 ${(median(pan) / median(idle)).toFixed(2)}  p95 ${(pct(pan, 0.95) / pct(idle, 0.95)).toFixed(2)}`);
  console.log(`one pan step (event + redraw)    p50 ${fmt(median(steps))} ms  p95 ${fmt(pct(steps, 0.95))} ms  (frame budget 16.7 ms)`);
} finally {
  await browser.close();
  await engine.stop();
}
