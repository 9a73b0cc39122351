// Single sign-on in a real browser against a real OpenID Connect provider
// (tools/oidc-provider): the login page's button, the provider's form (a wrong password
// first), the app as the provider's user, and logging out of both.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { axeViolations, DESKTOP, freePort, launchBrowser, screenshot, startEngine, startOidcProvider } from "./harness.mjs";

let provider;
let engine;
let browser;

before(async () => {
  const port = await freePort();
  provider = await startOidcProvider(`http://127.0.0.1:${port}/api/v1/auth/oidc/callback`);
  engine = await startEngine(
    {
      GLUCOSYNC_OIDC_ISSUER: provider.issuer,
      GLUCOSYNC_OIDC_CLIENT_SECRET: "glucosync-test-secret",
      GLUCOSYNC_OIDC_ADMIN_GROUP: "glucosync-admins",
    },
    [],
    port,
  );
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
  await provider?.stop();
});

test("logging in with single sign-on, and out of both", async () => {
  const page = await (await browser.newContext({ viewport: DESKTOP, baseURL: engine.base })).newPage();
  await page.goto("/app/reports");
  const ssoButton = page.getByRole("button", { name: "Log in with single sign-on" });
  await ssoButton.click();
  // The provider's own login page: a wrong password first.
  await page.locator('input[name="login"]').fill("ana");
  await page.locator('input[name="password"]').fill("not-her-password");
  await page.locator("#submit").click();
  await page.locator("#error").waitFor();
  await page.locator('input[name="login"]').fill("ana");
  await page.locator('input[name="password"]').fill("ana-password");
  await page.locator("#submit").click();
  // Back in the app, where the login started, as the provider's user.
  await page.waitForURL(`${engine.base}/app/reports`);
  await page.locator(".who", { hasText: "Ana Example" }).waitFor();
  await page.getByRole("heading", { name: "Reports" }).waitFor();
  await screenshot(page, "sso-logged-in");
  assert.deepEqual(await axeViolations(page), []);

  // Logging out ends the provider's session too: the next single sign-on asks again.
  await page.getByRole("button", { name: "Log out" }).click();
  await ssoButton.waitFor();
  assert.match(page.url(), new RegExp(`^${engine.base}/app/`));
  await ssoButton.click();
  await page.locator('input[name="login"]').waitFor();
});

test("a single sign-on that did not complete says why on the login page", async () => {
  const page = await (await browser.newContext({ viewport: DESKTOP, baseURL: engine.base })).newPage();
  // Ben's email is not verified by the provider: no account is made or linked for him.
  await page.goto("/app/");
  await page.getByRole("button", { name: "Log in with single sign-on" }).click();
  await page.locator('input[name="login"]').fill("ben");
  await page.locator('input[name="password"]').fill("ben-password");
  await page.locator("#submit").click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.innerText(), /no verified email address/);
  assert.match(page.url(), /\/app\/login\?sso_error=email_unverified$/);
  await screenshot(page, "sso-email-unverified");
  assert.deepEqual(await axeViolations(page), []);
});
