// The app as the cluster serves it: the NewClient and MainWebsite containers' nginx
// configurations (deploy/images/nginx) serving web/dist and site/, behind a stand-in for the
// cluster's ingress that routes /api and the live socket to a real GlucoEngine. Same app, same
// behaviour as in embedded mode.
import { createHash } from "node:crypto";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { axeViolations, DESKTOP, freePort, launchBrowser, loginToken, ROOT, signUpInApp, startEngine, WEB } from "./harness.mjs";

const CONF = join(ROOT, "deploy", "images", "nginx");

/** A configuration template of deploy/images/nginx with its placeholders filled in. */
function render(name, values) {
  let text = readFileSync(join(CONF, name), "utf8");
  for (const [key, value] of Object.entries(values)) text = text.replaceAll("${" + key + "}", value);
  assert.ok(!/\$\{[A-Z_]+\}/.test(text), `every placeholder of ${name} rendered`);
  return text;
}

let engine;
let nginx;
let dir;
let base;
let browser;

before(async () => {
  engine = await startEngine();
  const [port, newclientPort, websitePort] = [await freePort(), await freePort(), await freePort()];
  base = `http://127.0.0.1:${port}`;
  dir = mkdtempSync(join(tmpdir(), "gs-nginx-"));
  for (const d of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, d));
  const servers = [
    render("newclient.conf.template", { LISTEN: `127.0.0.1:${newclientPort}`, WEB_ROOT: join(WEB, "dist"), CONF_DIR: CONF }),
    render("mainwebsite.conf.template", { LISTEN: `127.0.0.1:${websitePort}`, SITE_ROOT: join(ROOT, "site"), CONF_DIR: CONF }),
    render("ingress-standin.conf.template", {
      LISTEN: `127.0.0.1:${port}`,
      API_UPSTREAM: new URL(engine.base).host,
      NEWCLIENT_UPSTREAM: `127.0.0.1:${newclientPort}`,
      MAINWEBSITE_UPSTREAM: `127.0.0.1:${websitePort}`,
    }),
  ];
  writeFileSync(join(dir, "default.conf"), servers.join("\n"));
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
     events {}
     http {
       include /etc/nginx/mime.types; types { application/manifest+json webmanifest; }
       default_type application/octet-stream; access_log off;
       client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
       uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
       include ${dir}/default.conf;
     }`,
  );
  nginx = spawn("nginx", ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: ["ignore", "inherit", "inherit"] });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (nginx.exitCode !== null) throw new Error(`nginx exited: ${readFileSync(join(dir, "error.log"), "utf8")}`);
    if (await fetch(`${base}/healthz`).then((r) => r.ok).catch(() => false)) break;
    if (Date.now() > deadline) throw new Error("nginx did not answer in 10 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  nginx?.kill("SIGTERM");
  if (nginx && nginx.exitCode === null) await new Promise((r) => nginx.once("exit", r));
  await engine?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("nginx serves the app, the site and the service worker with the embedded mode's headers", async () => {
  const shell = await fetch(`${base}/app/reports`);
  assert.equal(shell.status, 200);
  assert.match(await shell.text(), /<div id="root">/);
  assert.equal(shell.headers.get("cache-control"), "no-cache");
  assert.match(shell.headers.get("content-security-policy"), /default-src 'self'/);
  const sw = await fetch(`${base}/app/sw.js`);
  assert.equal(sw.headers.get("service-worker-allowed"), "/app/");
  assert.match(sw.headers.get("content-type"), /javascript/);
  const html = readFileSync(join(WEB, "dist", "index.html"), "utf8");
  const asset = html.match(/\/app\/assets\/[^"]+\.js/)[0];
  const bundle = await fetch(`${base}${asset}`);
  assert.equal(bundle.headers.get("cache-control"), "public, max-age=31536000, immutable");
  const missing = await fetch(`${base}/app/assets/nope.js`);
  assert.equal(missing.status, 404);
  const site = await fetch(`${base}/`);
  assert.match(await site.text(), /GlucoSync/);
  assert.equal((await fetch(`${base}/privacy`)).status, 200);
  const icon = await fetch(`${base}/favicon.svg`);
  assert.equal(icon.headers.get("cache-control"), "public, max-age=86400");
  assert.match(icon.headers.get("content-security-policy"), /default-src 'self'/);
});

test("through nginx: sign up, see a reading, get the next one live over the proxied socket", async () => {
  const email = "nginx@example.test";
  const password = "violet tractor harbour sings";
  const page = await (await browser.newContext({ viewport: DESKTOP, baseURL: base })).newPage();
  await signUpInApp(page, email, password);
  const token = await loginToken(base, email, password);
  const post = (value) =>
    fetch(`${base}/api/v1/readings`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ time: new Date().toISOString(), value, trend: "Flat" }),
    });
  assert.equal((await post(123)).status, 201);
  await page.reload();
  await page.getByTestId("current-value").filter({ hasText: "123" }).waitFor();
  // The banner is gone once the socket is open through the proxy.
  await page.getByTestId("connection-banner").waitFor({ state: "detached", timeout: 10_000 });
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal((await post(131)).status, 201);
  await page.getByTestId("current-value").filter({ hasText: "131" }).waitFor({ timeout: 10_000 });
  assert.deepEqual(await axeViolations(page), []);
  // The person's Nightscout site and socket.io reach GlucoEngine, not the site's pages.
  const site = await (await fetch(`${base}/api/v1/nightscout`, { headers: { authorization: `Bearer ${token}` } })).json();
  const entries = await fetch(`${base}${site.base_url}/api/v1/entries.json`, {
    headers: { "api-secret": createHash("sha1").update(site.api_secret).digest("hex") },
  });
  assert.equal(entries.status, 200);
  assert.equal((await entries.json())[0].sgv, 131);
  const handshake = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
  assert.equal(handshake.status, 200);
  assert.match(await handshake.text(), /"sid"/, "an engine.io handshake");
});
