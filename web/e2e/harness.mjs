// End-to-end harness: a real GlucoEngine (the binary the test command built) on a free port
// with a fresh data directory, serving web/dist and site/, and the machine's Chromium driven
// by playwright-core.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const WEB = resolve(here, "..");
export const ROOT = resolve(WEB, "..");
export const ARTIFACTS = join(WEB, "test-results");
export const SCREENSHOTS = join(ARTIFACTS, "screenshots");

export const MOBILE = { width: 360, height: 780 };
export const DESKTOP = { width: 1280, height: 800 };

export async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Starts GlucoEngine; `args` go after `serve` (e.g. `--demo`). What it prints is in `output()`. */
export async function startEngine(extraEnv = {}, args = [], chosenPort = undefined) {
  const binary = process.env.GLUCOENGINE ?? join(ROOT, "target", "debug", "glucoengine");
  const dataDir = mkdtempSync(join(tmpdir(), "gs-e2e-"));
  // A port chosen beforehand when another server must know it (an OIDC provider's redirect URI).
  const port = chosenPort ?? (await freePort());
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(binary, ["serve", ...args], {
    env: {
      ...process.env,
      GLUCOSYNC_LISTEN: `127.0.0.1:${port}`,
      GLUCOSYNC_DATA_DIR: dataDir,
      GLUCOSYNC_WEB_DIR: join(WEB, "dist"),
      GLUCOSYNC_SITE_DIR: join(ROOT, "site"),
      GLUCOSYNC_PUBLIC_URL: base,
      GLUCOSYNC_LOG_LEVEL: "warn",
      ...extraEnv,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let printed = "";
  child.stdout.on("data", (chunk) => {
    printed += chunk;
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`glucoengine exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/health/ready`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("glucoengine did not become ready in 30 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    output: () => printed,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
}

/** The API as an uploader or a script sees it: bearer token, JSON. */
export function apiClient(base, token) {
  return async function call(method, path, body) {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: r.status, json };
  };
}

const AXE = readFileSync(join(WEB, "node_modules", "axe-core", "axe.min.js"), "utf8");

/** WCAG 2.1 A/AA violations on the page as it is now (axe-core), as readable lines. */
export async function axeViolations(page) {
  await page.addScriptTag({ content: AXE }).catch(async () => {
    // The app's CSP forbids inline scripts: evaluate axe's source instead.
    await page.evaluate(AXE);
  });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(" | ")}`);
  });
  return result;
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: false });
}

/** CGM readings every 5 minutes ending at `endMs`, following `shape(minutesBeforeEnd)`. */
export function cgmTrace(endMs, count, shape) {
  const out = [];
  for (let i = count - 1; i >= 0; i--) {
    const t = endMs - i * 5 * 60_000;
    out.push({ time: new Date(t).toISOString(), value: Math.round(shape(i * 5)), kind: "cgm", device: "e2e-uploader" });
  }
  return out;
}

export const PASSWORD = "violet tractor harbour sings";

/** Signs up through the app's form; the page ends on the dashboard. */
export async function signUpInApp(page, email, password = PASSWORD) {
  await page.goto("/app/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor();
}

/** A session token for `email`, logged in as a script would (bearer, no cookie). */
export async function loginToken(base, email, password = PASSWORD) {
  const r = await fetch(`${base}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  return (await r.json()).token;
}

/**
 * The test OpenID Connect provider (tools/oidc-provider, a real oidc-provider) with a client
 * whose redirect URI is `redirectUri`; accounts ana / ana-password (verified email, admin
 * group) and ben / ben-password.
 */
export async function startOidcProvider(redirectUri) {
  const child = spawn(join(ROOT, "scripts", "oidc"), ["start", "--port", "0", "--redirect-uri", redirectUri], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const issuer = await new Promise((ok, fail) => {
    let seen = "";
    const timer = setTimeout(() => fail(new Error(`the OIDC provider did not start: ${seen}`)), 60_000);
    child.stdout.on("data", (chunk) => {
      seen += chunk;
      const line = seen.split("\n").find((l) => l.startsWith("READY "));
      if (line) {
        clearTimeout(timer);
        ok(line.slice("READY ".length).trim());
      }
    });
    child.once("exit", (code) => fail(new Error(`the OIDC provider exited with ${code}`)));
  });
  return {
    issuer,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
    },
  };
}
