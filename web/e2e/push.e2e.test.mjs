// The service worker's side of push notifications, in real Chromium: a pushed alert becomes
// a notification with Acknowledge and Snooze actions, and the push that says it was
// acknowledged (on another device) takes it down. Pushes are delivered through the DevTools
// protocol (ServiceWorker.deliverPushMessage): a real push service is on the internet, which
// this machine cannot reach. The server's encryption and delivery are tested in Rust
// (crates/server/tests/push.rs, against a local push service).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { DESKTOP, launchBrowser, loginToken, signUpInApp, startEngine } from "./harness.mjs";

let engine;
let browser;
let context;
let page;

before(async () => {
  // Subscriptions at loopback endpoints are accepted: the stand-in push service below.
  engine = await startEngine({ GLUCOSYNC_PUSH_ALLOW_LOOPBACK: "true" });
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: DESKTOP, baseURL: engine.base });
  await context.grantPermissions(["notifications"], { origin: engine.base });
  page = await context.newPage();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

test("stale data is flagged; a pushed alert is shown with actions and taken down when acknowledged elsewhere", async () => {
  const email = "push@example.test";
  const password = "violet tractor harbour sings";
  const signup = await fetch(`${engine.base}/api/v1/auth/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  assert.equal(signup.status, 201);
  await page.goto("/app/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor();

  // An old reading: the dashboard says the data is stale instead of showing it as current.
  const token = await loginToken(engine.base, email, password);
  const old = await fetch(`${engine.base}/api/v1/readings`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ time: new Date(Date.now() - 25 * 60_000).toISOString(), value: 150 }),
  });
  assert.equal(old.status, 201);
  await page.reload();
  await page.getByTestId("stale-data").filter({ hasText: "No new reading for 25 minutes" }).waitFor();

  const cdp = await context.newCDPSession(page);
  const registrations = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const deadline = Date.now() + 10_000;
  let registration;
  while (!(registration = registrations.find((r) => r.scopeURL === `${engine.base}/app/` && !r.isDeleted)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(registration, "the app's service worker is registered with scope /app/");

  const push = (message) =>
    cdp.send("ServiceWorker.deliverPushMessage", { origin: engine.base, registrationId: registration.registrationId, data: JSON.stringify(message) });
  const alert = {
    type: "alert",
    person: 1,
    kind: "urgent_low",
    title: "Urgent low",
    body: "48 mg/dL",
    reason: "raised",
    urgent: true,
    audible: true,
    tag: "alert-1-urgent_low-1700000000000",
    raised_at: "2026-11-27T05:00:00Z",
  };
  await push(alert);
  const notifications = async () =>
    page.evaluate(async () => {
      const list = await (await navigator.serviceWorker.ready).getNotifications();
      return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, actions: n.actions.map((a) => a.action), requireInteraction: n.requireInteraction }));
    });
  let shown = [];
  for (let i = 0; i < 100 && shown.length === 0; i++) {
    shown = await notifications();
    if (shown.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  const [notification] = shown;
  assert.deepEqual(notification, {
    title: "Urgent low",
    body: "48 mg/dL",
    tag: alert.tag,
    actions: ["acknowledge", "snooze"],
    requireInteraction: true,
  });

  await push({ ...alert, reason: "acknowledged", body: "Acknowledged", audible: false });
  for (let i = 0; i < 100 && (await notifications()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await notifications(), []);
  await cdp.detach();
});

test("the permission flow asks, then reports the browser's push service's answer", async () => {
  // With permission granted, the app asks the browser to subscribe; this machine's Chromium has
  // no reachable push service, so the answer is a refusal, which the screen must say plainly
  // (and not hang). On a phone the same click ends in "This device receives alert notifications".
  await page.goto("/app/alerts");
  await page.getByRole("button", { name: "Turn on notifications" }).click();
  const outcome = page.getByTestId("push-control").getByRole("alert").or(page.getByText("This device receives alert notifications"));
  await outcome.waitFor({ timeout: 15_000 });
  assert.match(await outcome.innerText(), /could not be changed on this device|receives alert notifications/);
});

test("turning notifications on sends this device's subscription to the server; logging out removes it", async () => {
  // The browser's push service (Google's, Mozilla's) is on the internet: it is the one part
  // replaced here, by a subscription the page's PushManager returns, with real P-256 keys and
  // an endpoint on loopback. Everything after it — the app's flow, the server's validation and
  // storage, the status the screen shows, the removal at logout — is real.
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const p256dh = publicKey.export({ format: "der", type: "spki" }).subarray(-65).toString("base64url");
  const auth = randomBytes(16).toString("base64url");
  const endpoint = "http://127.0.0.1:9/push/e2e-device";
  const ctx = await browser.newContext({ viewport: DESKTOP, baseURL: engine.base });
  await ctx.grantPermissions(["notifications"], { origin: engine.base });
  await ctx.addInitScript(
    ({ endpoint, p256dh, auth }) => {
      let current = null;
      const make = (options) => ({
        endpoint,
        options,
        expirationTime: null,
        toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }),
        unsubscribe: async () => {
          current = null;
          return true;
        },
      });
      PushManager.prototype.subscribe = async function (options) {
        current = make(options);
        return current;
      };
      PushManager.prototype.getSubscription = async function () {
        return current;
      };
    },
    { endpoint, p256dh, auth },
  );
  const p = await ctx.newPage();
  const email = "push-subscriber@example.test";
  const password = "violet tractor harbour sings";
  await signUpInApp(p, email, password);
  await p.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await p.goto("/app/alerts");
  await p.getByRole("button", { name: "Turn on notifications" }).click();
  await p.getByText("This device receives alert notifications").waitFor();
  const token = await loginToken(engine.base, email, password);
  const list = async () =>
    (await (await fetch(`${engine.base}/api/v1/push/subscriptions`, { headers: { authorization: `Bearer ${token}` } })).json()).map((s) => s.endpoint);
  assert.deepEqual(await list(), [endpoint]);
  await p.getByRole("button", { name: "Log out" }).click();
  await p.getByRole("heading", { name: "Log in" }).waitFor();
  assert.deepEqual(await list(), []);
  await ctx.close();
});

test("Acknowledge on a notification acknowledges the alert on the server", async () => {
  // The platform's click on a notification's action is stood in for by the same event
  // dispatched in the service worker; what the worker does with it is real.
  const ctx = await browser.newContext({ viewport: DESKTOP, baseURL: engine.base });
  await ctx.grantPermissions(["notifications"], { origin: engine.base });
  const p = await ctx.newPage();
  const email = "notification-click@example.test";
  const password = "violet tractor harbour sings";
  await signUpInApp(p, email, password);
  await p.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const token = await loginToken(engine.base, email, password);
  const call = async (method, path, body) =>
    (await fetch(`${engine.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })).json();
  await call("POST", "/api/v1/readings", { time: new Date().toISOString(), value: 45 });
  const urgent = async () => (await call("GET", "/api/v1/alerts")).alerts.find((a) => a.kind === "urgent_low");
  for (let i = 0; i < 100 && (await urgent())?.state !== "active"; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await urgent())?.state, "active");

  const worker = ctx.serviceWorkers().find((w) => w.url().endsWith("/app/sw.js"));
  assert.ok(worker, "the app's service worker runs");
  await worker.evaluate(async () => {
    await self.registration.showNotification("Urgent low", { tag: "alert-urgent", data: { kind: "urgent_low" }, actions: [{ action: "acknowledge", title: "Acknowledge" }] });
    const [notification] = await self.registration.getNotifications({ tag: "alert-urgent" });
    self.dispatchEvent(new NotificationEvent("notificationclick", { notification, action: "acknowledge" }));
  });
  for (let i = 0; i < 100 && (await urgent())?.state !== "acknowledged"; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await urgent())?.state, "acknowledged");
  await ctx.close();
});
