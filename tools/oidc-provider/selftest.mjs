// End-to-end check of server.mjs with plain fetch (no browser, no Rust): starts the provider
// on a free port, runs the authorization code flow with PKCE + nonce like a relying party
// would, checks tokens against /jwks, key rotation, /test/sign and RP-initiated logout.
//
//   node tools/oidc-provider/selftest.mjs [--issuer-path /oidc]   (exit status 0 = all passed)
//
// Extra arguments are passed to server.mjs.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import * as jose from 'jose';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENT_ID = 'glucosync';
const CLIENT_SECRET = 'glucosync-test-secret';
const REDIRECT_URI = 'http://127.0.0.1:8080/api/v1/auth/oidc/callback';
const POST_LOGOUT_URI = 'http://127.0.0.1:8080/app/';
const API = 'urn:glucosync:api';

let passed = 0;
const printed = new Set(); // checks repeated in every flow are printed once
function check(condition, what, detail) {
  if (!condition) throw new Error(`FAILED: ${what}${detail === undefined ? '' : ` (${JSON.stringify(detail)})`}`);
  passed += 1;
  if (!printed.has(what)) console.log(`ok - ${what}`);
  printed.add(what);
}

// --- start the provider and wait for its READY line ------------------------------------------
const child = spawn(process.execPath, [join(HERE, 'server.mjs'), '--port', '0', '--redirect-uri', REDIRECT_URI, ...process.argv.slice(2)],
  { stdio: ['ignore', 'pipe', 'pipe'] });
let providerLog = '';
const stdoutLines = []; // must end up as the READY line alone
process.on('exit', (code) => {
  child.kill('SIGTERM'); // also when a check throws
  if (code) console.error(`--- provider log (last lines) ---\n${providerLog.split('\n').slice(-20).join('\n')}`);
});
child.stderr.on('data', (d) => { providerLog += d; });
const issuer = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no READY line within 15 s')), 15000);
  child.on('exit', (code) => reject(new Error(`provider exited (${code}):\n${providerLog}`)));
  createInterface({ input: child.stdout }).on('line', (line) => {
    stdoutLines.push(line);
    const m = /^READY (\S+)$/.exec(line);
    if (m) { clearTimeout(timer); resolve(m[1]); }
  });
});

const testApi = `${new URL(issuer).origin}/test`; // always at the root, whatever the issuer path

// --- a tiny cookie jar (name + path; enough for one host) ------------------------------------
const jar = new Map(); // `${name}\0${path}` -> { name, value, path }
function storeCookies(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const attr = Object.fromEntries(attrs.map((a) => {
      const [k, ...v] = a.split('=');
      return [k.toLowerCase(), v.join('=')];
    }));
    const path = attr.path || '/';
    const expired = attr.expires && Date.parse(attr.expires) <= Date.now();
    if (expired || value === '') jar.delete(`${name}\0${path}`);
    else jar.set(`${name}\0${path}`, { name, value, path });
  }
}
function cookieHeader(url) {
  const { pathname } = new URL(url);
  return [...jar.values()]
    .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
    .map((c) => `${c.name}=${c.value}`).join('; ');
}

// One request without following redirects, cookies sent and stored.
async function request(url, { method = 'GET', form, headers = {} } = {}) {
  const res = await fetch(url, {
    method,
    redirect: 'manual',
    headers: { cookie: cookieHeader(url), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...headers },
    body: form ? new URLSearchParams(form) : undefined,
  });
  storeCookies(res);
  return res;
}

// Follow redirects (as GET) until a response that is not a redirect, or one to the RP.
async function follow(res, url) {
  for (let i = 0; i < 10; i += 1) {
    if (res.status < 300 || res.status >= 400) return { res, url };
    const next = new URL(res.headers.get('location'), url).href;
    if (next.startsWith(REDIRECT_URI) || next.startsWith(POST_LOGOUT_URI)) return { res, url, location: next };
    url = next;
    res = await request(url);
  }
  throw new Error('too many redirects');
}

function formOf(html) {
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1]?.replaceAll('&#38;', '&');
  const hidden = Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  return { action, hidden };
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const basic = `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`;

// --- discovery -------------------------------------------------------------------------------
const config = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
check(config.issuer === issuer, 'discovery issuer matches', config.issuer);
check(config.code_challenge_methods_supported?.includes('S256'), 'discovery advertises S256 PKCE');
check(config.end_session_endpoint && config.userinfo_endpoint, 'discovery has end_session and userinfo endpoints');
check(['email', 'groups', 'profile'].every((s) => config.scopes_supported.includes(s)), 'discovery scopes include email profile groups');
check((await (await fetch(`${testApi}/health`)).text()) === 'ok', '/test/health is ok');

async function jwks() {
  return (await (await fetch(config.jwks_uri)).json()).keys;
}

// --- the authorization code flow ---------------------------------------------------------------
// Starts at the authorization endpoint; logs in with `user` if a login form is shown (after a
// wrong password first when `wrongPasswordFirst`); returns { code, state, nonce, verifier }.
async function authorize({ user, password, wrongPasswordFirst = false, expectLoginForm = true, beforeLogin }) {
  const state = b64url(crypto.randomBytes(16));
  const nonce = b64url(crypto.randomBytes(16));
  const verifier = b64url(crypto.randomBytes(32));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, response_type: 'code',
    scope: 'openid email profile groups', state, nonce,
    code_challenge: b64url(crypto.createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256',
  });
  let step = await follow(await request(url.href), url.href);
  if (!step.location) {
    check(expectLoginForm, 'login form shown only when expected');
    const html = await step.res.text();
    check(/name="login"/.test(html) && /name="password"/.test(html) && /type="submit"/.test(html), 'login form has login, password and a submit button');
    const action = new URL(formOf(html).action, step.url).href;
    if (wrongPasswordFirst) {
      const bad = await request(action, { method: 'POST', form: { login: user, password: 'wrong' } });
      const badHtml = await bad.text();
      check(bad.status === 200 && /Invalid login or password/.test(badHtml) && /name="password"/.test(badHtml),
        'wrong password shows the form again with an error', bad.status);
    }
    await beforeLogin?.();
    step = await follow(await request(action, { method: 'POST', form: { login: user, password } }), action);
  } else {
    check(!expectLoginForm, 'existing session skips the login form');
  }
  check(step.location, 'redirected back to the redirect_uri', step.res.status);
  const back = new URL(step.location);
  check(back.searchParams.get('state') === state, 'state returned unchanged');
  check(back.searchParams.get('iss') === issuer, 'iss parameter in the authorization response (RFC 9207)');
  return { code: back.searchParams.get('code'), nonce, verifier };
}

async function token({ code, verifier, auth = 'basic', resource }) {
  const form = { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier };
  if (resource) form.resource = resource;
  const headers = {};
  if (auth === 'basic') headers.authorization = basic;
  else Object.assign(form, { client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
  const res = await fetch(config.token_endpoint, { method: 'POST', headers, body: new URLSearchParams(form) });
  return { status: res.status, body: await res.json() };
}

async function verifyIdToken(idToken, nonce) {
  const { payload, protectedHeader } = await jose.jwtVerify(idToken, jose.createLocalJWKSet({ keys: await jwks() }),
    { issuer, audience: CLIENT_ID, algorithms: ['RS256'] });
  check(payload.nonce === nonce, 'ID token nonce matches');
  return { payload, protectedHeader };
}

// 1. ana, wrong password first, client_secret_basic
const first = await authorize({ user: 'ana', password: 'ana-password', wrongPasswordFirst: true });
const t1 = await token({ ...first });
check(t1.status === 200 && t1.body.id_token && t1.body.access_token, 'code exchanged with client_secret_basic + code_verifier', t1.body);
check(t1.body.expires_in === 600, 'access token lifetime 10 minutes', t1.body.expires_in);
const id1 = await verifyIdToken(t1.body.id_token, first.nonce);
check(id1.payload.sub === 'ana' && id1.payload.email === 'ana@example.org' && id1.payload.email_verified === true
  && id1.payload.name === 'Ana Example' && JSON.stringify(id1.payload.groups) === '["glucosync-admins"]',
'ID token carries ana\'s email, email_verified, name and groups', id1.payload);
check(id1.payload.exp - id1.payload.iat === 600, 'ID token lifetime 10 minutes');
const firstKid = id1.protectedHeader.kid;
check(firstKid && (await jwks()).some((k) => k.kid === firstKid), 'ID token kid is published in /jwks', firstKid);

const me = await fetch(config.userinfo_endpoint, { headers: { authorization: `Bearer ${t1.body.access_token}` } });
const meBody = await me.json();
check(me.status === 200 && meBody.sub === 'ana' && meBody.email === 'ana@example.org' && meBody.groups?.[0] === 'glucosync-admins',
  'access token works at the userinfo endpoint', meBody);

const replay = await token({ ...first });
check(replay.status === 400 && replay.body.error === 'invalid_grant', 'a code cannot be used twice', replay.body);

// 2. same browser session: no login form; client_secret_post; JWT access token for the API
const second = await authorize({ expectLoginForm: false });
const t2 = await token({ ...second, auth: 'post', resource: API });
check(t2.status === 200, 'code exchanged with client_secret_post and resource=urn:glucosync:api', t2.body);
const at = await jose.jwtVerify(t2.body.access_token, jose.createLocalJWKSet({ keys: await jwks() }), { issuer, audience: API });
check(at.protectedHeader.typ === 'at+jwt' && at.payload.sub === 'ana' && at.payload.client_id === CLIENT_ID,
  'JWT access token (RFC 9068) for urn:glucosync:api verifies against /jwks', at.payload);

// 3. PKCE is enforced
const third = await authorize({ expectLoginForm: false });
const badPkce = await token({ ...third, verifier: b64url(crypto.randomBytes(32)) });
check(badPkce.status === 400 && badPkce.body.error === 'invalid_grant', 'wrong code_verifier is rejected', badPkce.body);
const noPkce = new URL(config.authorization_endpoint);
noPkce.search = new URLSearchParams({ client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid', state: 's' });
const noPkceLoc = new URL((await request(noPkce.href)).headers.get('location') ?? 'http://x/');
check(noPkceLoc.searchParams.get('error') === 'invalid_request', 'authorization without code_challenge is refused', noPkceLoc.href);

// 4. key rotation: new kid signs, old kid still published; then drop_old
const rot = await (await fetch(`${testApi}/rotate-keys`, { method: 'POST' })).json();
check(rot.kid && rot.kid !== firstKid && rot.kids.includes(firstKid), 'rotate-keys returns a new kid and keeps the old one', rot);
const fourth = await authorize({ expectLoginForm: false }); // the session survived the rotation
const t4 = await token({ ...fourth });
const id4 = await verifyIdToken(t4.body.id_token, fourth.nonce);
check(id4.protectedHeader.kid === rot.kid, 'ID token after rotation is signed with the new kid', id4.protectedHeader);
const kids = (await jwks()).map((k) => k.kid);
check(kids.includes(rot.kid) && kids.includes(firstKid), 'JWKS publishes the new and the old key', kids);
await jose.jwtVerify(t1.body.id_token, jose.createLocalJWKSet({ keys: await jwks() }), { issuer, audience: CLIENT_ID });
check(true, 'an ID token from before the rotation still verifies');

const rot2 = await (await fetch(`${testApi}/rotate-keys?drop_old=1`, { method: 'POST' })).json();
check(JSON.stringify((await jwks()).map((k) => k.kid)) === JSON.stringify([rot2.kid]), 'rotate-keys?drop_old=1 publishes only the new key', rot2);
const oldFails = await jose.jwtVerify(t4.body.id_token, jose.createLocalJWKSet({ keys: await jwks() })).then(() => null, (e) => e);
check(oldFails?.code === 'ERR_JWKS_NO_MATCHING_KEY', 'an ID token of a dropped key no longer verifies', oldFails?.code);

// 5. /test/sign: validly signed but expired / wrong audience
const now = Math.floor(Date.now() / 1000);
async function signed(claims) {
  return (await (await fetch(`${testApi}/sign`, { method: 'POST', body: JSON.stringify(claims) })).json()).token;
}
const base = { iss: issuer, sub: 'ana', aud: CLIENT_ID, nonce: 'n', iat: now - 3600 };
const keys = jose.createLocalJWKSet({ keys: await jwks() });
const good = await jose.jwtVerify(await signed({ ...base, exp: now + 600 }), keys, { issuer, audience: CLIENT_ID });
check(good.protectedHeader.kid === rot2.kid, '/test/sign signs with the current key and kid');
const expired = await jose.jwtVerify(await signed({ ...base, exp: now - 60 }), keys, { issuer, audience: CLIENT_ID }).then(() => null, (e) => e);
check(expired?.code === 'ERR_JWT_EXPIRED', 'an expired /test/sign token fails jwtVerify', expired?.code);
const wrongAud = await jose.jwtVerify(await signed({ ...base, aud: 'someone-else', exp: now + 600 }), keys, { issuer, audience: CLIENT_ID }).then(() => null, (e) => e);
check(wrongAud?.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && wrongAud.claim === 'aud', 'a wrong-audience /test/sign token fails jwtVerify', wrongAud?.code);

// 6. RP-initiated logout (with a fresh ID token: the hint must verify against the current keys)
const fifth = await authorize({ expectLoginForm: false });
const t5 = await token({ ...fifth });
const endUrl = new URL(config.end_session_endpoint);
endUrl.search = new URLSearchParams({ id_token_hint: t5.body.id_token, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' });
const logoutPage = await request(endUrl.href);
const logoutHtml = await logoutPage.text();
const logoutForm = formOf(logoutHtml);
check(logoutPage.status === 200 && logoutForm.hidden.xsrf && logoutForm.hidden.logout === 'yes' && /document\.forms\[0\]\.submit\(\)/.test(logoutHtml),
  'end_session returns a self-submitting logout form', logoutPage.status);
const done = await follow(await request(new URL(logoutForm.action, endUrl).href, { method: 'POST', form: logoutForm.hidden }), endUrl.href);
check(done.location === `${POST_LOGOUT_URI}?state=bye`, 'logout redirects to post_logout_redirect_uri with state', done.location);
const afterLogout = await fetch(config.userinfo_endpoint, { headers: { authorization: `Bearer ${t5.body.access_token}` } });
check(afterLogout.status === 401, 'logout revoked the access token', afterLogout.status);

// 7. after logout a login form is needed again; a rotation while the form is open does not
// lose the pending login; ben's claims
let rot3;
const sixth = await authorize({
  user: 'ben',
  password: 'ben-password',
  beforeLogin: async () => { rot3 = await (await fetch(`${testApi}/rotate-keys`, { method: 'POST' })).json(); },
});
const t6 = await token({ ...sixth });
const id6 = await verifyIdToken(t6.body.id_token, sixth.nonce);
check(id6.protectedHeader.kid === rot3.kid, 'a login pending across a key rotation completes (signed with the newest kid)');
check(id6.payload.sub === 'ben' && id6.payload.email === 'ben@example.org' && id6.payload.email_verified === false
  && Array.isArray(id6.payload.groups) && id6.payload.groups.length === 0, 'ben: email_verified false, groups []', id6.payload);

check(stdoutLines.length === 1, 'the provider printed nothing but READY on stdout', stdoutLines);

console.log(`selftest: all ${passed} checks passed against ${issuer}`);
process.exit(0); // the 'exit' handler stops the provider
