// Optional: the login form and RP-initiated logout in headless Chromium, using the web app's
// playwright-core and Debian's Chromium when both are installed; otherwise prints "skipped"
// and exits 0 (this tool installs neither).
//
//   node tools/oidc-provider/browsercheck.mjs
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const PLAYWRIGHT = join(HERE, '../../web/node_modules/playwright-core/index.mjs');
if (!existsSync(CHROMIUM) || !existsSync(PLAYWRIGHT)) {
  console.log(`browsercheck: skipped (needs ${CHROMIUM} and web/node_modules/playwright-core)`);
  process.exit(0);
}
const { chromium } = await import(pathToFileURL(PLAYWRIGHT).href);

// A stand-in relying party on a free port (Playwright's page.route does not see the targets
// of redirects, so the browser needs something real to land on).
const rp = http.createServer((req, res) => res.end('relying party'));
await new Promise((resolve) => rp.listen(0, '127.0.0.1', resolve));
const RP = `http://127.0.0.1:${rp.address().port}`;
const REDIRECT_URI = `${RP}/api/v1/auth/oidc/callback`;
const APP = `${RP}/app/`;

function check(condition, what, detail) {
  if (!condition) throw new Error(`FAILED: ${what}${detail === undefined ? '' : ` (${JSON.stringify(detail)})`}`);
  console.log(`ok - ${what}`);
}

const child = spawn(process.execPath, [join(HERE, 'server.mjs'), '--port', '0', '--redirect-uri', REDIRECT_URI], { stdio: ['ignore', 'pipe', 'inherit'] });
let browser;
process.on('exit', () => child.kill('SIGTERM'));
const issuer = await new Promise((resolve) => {
  createInterface({ input: child.stdout }).on('line', (l) => l.startsWith('READY ') && resolve(l.slice(6)));
});

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const page = await browser.newPage();

  const verifier = crypto.randomBytes(32).toString('base64url');
  const auth = new URL(`${issuer}/auth`);
  auth.search = new URLSearchParams({
    client_id: 'glucosync', redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid email groups',
    state: 'st', nonce: 'nn', code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
  });
  await page.goto(auth.href);
  await page.fill('input[name=login]', 'ana');
  await page.fill('input[name=password]', 'not-it');
  await page.click('button[type=submit]');
  check(await page.locator('#error').isVisible(), 'wrong password: the form again, with an error');
  await page.fill('input[name=login]', 'ana');
  await page.fill('input[name=password]', 'ana-password');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT_URI)), page.click('button[type=submit]')]);
  const back = new URL(page.url());
  check(back.searchParams.get('code') && back.searchParams.get('state') === 'st', 'login form submitted: back at the redirect_uri with code and state');

  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('glucosync:glucosync-test-secret').toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: back.searchParams.get('code'), redirect_uri: REDIRECT_URI, code_verifier: verifier }),
  });
  const { id_token: idToken } = await res.json();
  check(idToken, 'code exchanged for an ID token');

  const end = new URL(`${issuer}/session/end`);
  end.search = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: APP, state: 'bye' });
  await page.goto(end.href);
  await page.waitForURL((u) => u.href.startsWith(APP));
  check(page.url() === `${APP}?state=bye`, 'logout: no click needed, back at /app/ with state', page.url());

  await page.goto(auth.href);
  check(await page.locator('input[name=password]').isVisible(), 'after logout the login form is shown again');
  console.log('browsercheck: passed');
} finally {
  await browser?.close();
}
process.exit(0);
