// A real OpenID Connect provider (panva's certified `oidc-provider`) for GlucoSync tests.
// TEST TOOL ONLY: in-memory accounts with known passwords, a /test/ API that signs arbitrary
// tokens. Never run it anywhere but a test machine; it binds to 127.0.0.1 only.
//
//   node server.mjs --port P [--redirect-uri URI]... [--client-id ID] [--client-secret S]
//                   [--issuer-path /path] [--id-token-ttl S] [--access-token-ttl S]
//                   [--jwt-access-tokens]
//
// Prints exactly one line, `READY <issuer>`, to stdout once listening; logs go to stderr.
// See README.md for the accounts, the /test/ endpoints and the quirks.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

// stdout carries only the READY line (a harness waits for it): oidc-provider's notices use
// console.info, so send those to stderr with the rest of the log.
console.info = console.error;

const HOST = '127.0.0.1';
const API_RESOURCE = 'urn:glucosync:api';

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'client-id': { type: 'string', default: 'glucosync' },
    'client-secret': { type: 'string', default: 'glucosync-test-secret' },
    'issuer-path': { type: 'string', default: '' },
    'id-token-ttl': { type: 'string', default: '600' },
    'access-token-ttl': { type: 'string', default: '600' },
    // Make the token endpoint return a JWT access token for urn:glucosync:api by default
    // (then that token is NOT accepted by /me; without the flag a client gets the JWT only
    // when it sends resource=urn:glucosync:api to the token endpoint).
    'jwt-access-tokens': { type: 'boolean', default: false },
  },
});

function fail(message) {
  console.error(`[oidc] ${message}`);
  process.exit(2);
}

const port = Number(opt.port);
if (opt.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
  fail('--port P is required (0 picks a free port)');
}
const idTokenTtl = Number(opt['id-token-ttl']);
const accessTokenTtl = Number(opt['access-token-ttl']);
if (!(idTokenTtl > 0) || !(accessTokenTtl > 0)) fail('TTLs must be positive seconds');
// "/oidc/" -> "/oidc"; "" or "/" -> "" (issuer at the root).
const issuerPath = opt['issuer-path'].replace(/\/+$/, '');
if (issuerPath && !issuerPath.startsWith('/')) fail('--issuer-path must start with /');
if (issuerPath.startsWith('/test')) fail('--issuer-path must not shadow /test/');
const redirectUris = opt['redirect-uri'] ?? ['http://127.0.0.1:8080/api/v1/auth/oidc/callback'];
// Where RP-initiated logout may send the browser back to: each redirect URI's origin + /app/.
const postLogoutRedirectUris = [...new Set(redirectUris.map((u) => `${new URL(u).origin}/app/`))];

// In-memory accounts. Passwords are test fixtures, documented in README.md.
const ACCOUNTS = {
  ana: {
    password: 'ana-password',
    claims: { email: 'ana@example.org', email_verified: true, name: 'Ana Example', groups: ['glucosync-admins'] },
  },
  ben: {
    password: 'ben-password',
    claims: { email: 'ben@example.org', email_verified: false, name: 'Ben Example', groups: [] },
  },
};

// --- signing keys -------------------------------------------------------------------------
// Newest first: oidc-provider signs with the first key matching the algorithm (its key sort
// is stable), so the head of this list is "the current signing key".
const signingKeys = [];

async function newSigningKey() {
  const { privateKey } = await jose.generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  // A short readable kid with a counter so tests and logs can tell keys apart.
  return { ...jwk, kid: `test-${signingKeys.length + 1}-${crypto.randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

// --- storage shared by every Provider instance ----------------------------------------------
// oidc-provider's built-in memory adapter keeps one store per instance (9.13), so a key
// rotation (= a new instance) would forget every session, grant, code and pending login.
// This adapter keeps one module-level store instead; entries expire lazily on read.
const store = new Map(); // key -> { payload, expiresAt (ms, 0 = never) }
const grantMembers = new Map(); // grantId -> Set of keys to drop when the grant is revoked

function stored(key) {
  const entry = store.get(key);
  if (entry && entry.expiresAt && entry.expiresAt <= Date.now()) store.delete(key);
  else return entry?.payload;
  return undefined;
}

class SharedMemoryAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    store.set(this.key(id), { payload, expiresAt });
    if (this.model === 'Session') store.set(`sessionUid:${payload.uid}`, { payload: id, expiresAt });
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expiresAt });
    if (payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(this.key(id));
    }
  }

  async find(id) { return stored(this.key(id)); }

  async findByUid(uid) {
    const id = stored(`sessionUid:${uid}`);
    return id && this.find(id);
  }

  async findByUserCode(userCode) {
    const id = stored(`userCode:${userCode}`);
    return id && this.find(id);
  }

  async consume(id) {
    const payload = stored(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) store.delete(key);
    grantMembers.delete(grantId);
  }
}

// --- the provider -------------------------------------------------------------------------
// Cookie signing keys must outlive a key rotation (which builds a new Provider instance),
// otherwise every browser session and pending login would be invalidated by it.
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: opt['client-id'],
      client_secret: opt['client-secret'],
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutRedirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      // The registered method; oidc-provider accepts client_secret_post too for a client
      // registered with either of the two secret methods (see shared/client_auth.js).
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'], // authorization code flow only (no implicit/hybrid)
    // CORS only for the origins of the registered redirect URIs (e.g. a browser app calling
    // /me); the same as the default for /me, without its "you should change this" notice.
    clientBasedCORS: (ctx, origin, client) => client.redirectUris.some((u) => new URL(u).origin === origin),
    adapter: SharedMemoryAdapter,
    jwks: { keys: signingKeys },
    cookies: { keys: cookieKeys },
    // PKCE for every client, not only public ones (the default); oidc-provider 9 only
    // implements S256, so "plain" is rejected.
    pkce: { required: () => true },
    // Scope -> claims. The `groups` scope carries the custom `groups` claim (an array).
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // Put the scope-requested claims (email, name, groups) into the ID token as well, not
    // only into /me; the default (true) would leave the ID token with sub only.
    conformIdTokenClaims: false,
    async findAccount(ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account) return undefined;
      // oidc-provider filters these down to what the grant's scopes/claims allow.
      return { accountId: sub, claims: async () => ({ sub, ...account.claims }) };
    },
    interactions: {
      // Our own login page (below) instead of devInteractions, which accept any password.
      url: (ctx, interaction) => `${issuerPath}/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        // oidc-provider always shows a confirmation page for a signed-in session. This one
        // submits itself (like a form_post response) so a browser sees no extra step; the
        // visible button serves clients without JavaScript (plain fetch tests).
        async logoutSource(ctx, form) {
          ctx.body = page('Signing out', `${form.replace('</form>',
            '<input type="hidden" name="logout" value="yes"/></form>')}
            <button type="submit" form="op.logoutForm" id="logout">Sign out</button>
            <script>document.forms[0].submit()</script>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p>You are signed out.</p>');
        },
      },
      // JWT access tokens for the GlucoSync API. The authorization endpoint defaults the
      // resource to the API so every code can be exchanged for such a token; whether the token
      // endpoint returns it without an explicit `resource` is --jwt-access-tokens.
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? API_RESOURCE,
        useGrantedResource: async () => opt['jwt-access-tokens'],
        async getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== API_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'api',
            audience: API_RESOURCE,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
      IdToken: () => idTokenTtl,
      AuthorizationCode: () => 60,
      Interaction: () => 3600,
      Session: () => 24 * 3600,
      Grant: () => 24 * 3600,
      RefreshToken: () => 24 * 3600,
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', Object.entries(out)
        .map(([k, v]) => `<pre id="${esc(k)}">${esc(k)}: ${esc(v)}</pre>`).join(''));
    },
  });
  provider.on('server_error', (ctx, err) => console.error('[oidc] server_error', err));
  return provider;
}

// --- HTML ---------------------------------------------------------------------------------
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

function loginPage(uid, clientId, error) {
  return page('Sign in', `<p>to ${esc(clientId)} (test identity provider)</p>
${error ? `<p id="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${issuerPath}/interaction/${esc(uid)}/login">
  <label>Login <input name="login" autocomplete="username" required autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit" id="submit">Sign in</button>
</form>`);
}

// --- interactions (login + automatic consent) -----------------------------------------------
async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function interaction(provider, req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    // Unknown/expired interaction or missing cookie (e.g. a different host name was used).
    return send(res, 400, 'text/html; charset=utf-8', page('Error', `<p>${esc(err.message)}</p>`));
  }
  if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch');
  const { prompt, params } = details;

  if (prompt.name === 'login') {
    if (req.method === 'GET' && !action) {
      return send(res, 200, 'text/html; charset=utf-8', loginPage(uid, params.client_id));
    }
    if (req.method === 'POST' && action === 'login') {
      const form = new URLSearchParams(await readBody(req));
      const login = form.get('login') ?? '';
      const account = Object.hasOwn(ACCOUNTS, login) ? ACCOUNTS[login] : undefined;
      if (!account || account.password !== form.get('password')) {
        console.error(`[oidc] login failed for ${JSON.stringify(login)}`);
        return send(res, 200, 'text/html; charset=utf-8',
          loginPage(uid, params.client_id, 'Invalid login or password.'));
      }
      console.error(`[oidc] login ok: ${login}`);
      return provider.interactionFinished(req, res, { login: { accountId: login } },
        { mergeWithLastSubmission: false });
    }
  }

  if (prompt.name === 'consent' && req.method === 'GET' && !action) {
    // Test client: grant whatever was asked (scopes, claims, API resource scopes) so there
    // is never a consent page. Same shape as oidc-provider's own example.
    const { details: missing } = prompt;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res,
      { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
  }

  return send(res, 400, 'text/plain', `unexpected ${req.method} for prompt ${prompt.name}`);
}

// --- /test/ admin endpoints (exist only in this test tool) ----------------------------------
async function testApi(req, res, path, query) {
  if (path === '/test/health' && req.method === 'GET') return send(res, 200, 'text/plain', 'ok');

  if (path === '/test/rotate-keys' && req.method === 'POST') {
    const key = await newSigningKey();
    if (query.get('drop_old') === '1') signingKeys.length = 0;
    signingKeys.unshift(key);
    // oidc-provider reads `jwks` once, in its constructor: build a fresh instance and swap it
    // in. Same process and port; sessions, grants, codes, tokens and pending interactions
    // live in the shared store and cookies use the same keys, so they all survive.
    install(buildProvider(current.issuer));
    console.error(`[oidc] rotated keys: signing kid ${key.kid}, published ${signingKeys.map((k) => k.kid).join(', ')}`);
    return send(res, 200, 'application/json', JSON.stringify({ kid: key.kid, kids: signingKeys.map((k) => k.kid) }));
  }

  if (path === '/test/sign' && req.method === 'POST') {
    let claims;
    try {
      claims = JSON.parse(await readBody(req));
    } catch {
      return send(res, 400, 'text/plain', 'body must be a JSON object of claims');
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      return send(res, 400, 'text/plain', 'body must be a JSON object of claims');
    }
    // Exactly the claims given (no iss/iat/exp added) so tests control every one of them.
    const [key] = signingKeys;
    const token = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
      .sign(await jose.importJWK(key, 'RS256'));
    return send(res, 200, 'application/json', JSON.stringify({ token, kid: key.kid }));
  }

  return send(res, 404, 'text/plain', 'not found');
}

// --- server -------------------------------------------------------------------------------
let current; // the live Provider instance; replaced on key rotation
let handle; // current.callback(), built once per instance

function install(provider) {
  current = provider;
  handle = provider.callback();
}

const server = http.createServer(async (req, res) => {
  const started = Date.now();
  const url = new URL(req.url, 'http://x');
  // Log method, path and status only: query strings carry codes and state.
  res.on('finish', () => console.error(`[oidc] ${req.method} ${url.pathname} ${res.statusCode} ${Date.now() - started}ms`));
  try {
    if (!current) return send(res, 503, 'text/plain', 'starting'); // before READY
    if (url.pathname.startsWith('/test/')) return await testApi(req, res, url.pathname, url.searchParams);

    // Everything else belongs to the issuer path.
    if (issuerPath && url.pathname !== issuerPath && !url.pathname.startsWith(`${issuerPath}/`)) {
      return send(res, 404, 'text/plain', 'not found');
    }
    const rest = url.pathname.slice(issuerPath.length) || '/';
    const m = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(rest);
    if (m) return await interaction(current, req, res, m[1], m[2]);

    // Hand over to oidc-provider (a Koa app) with the issuer path stripped, the way Express
    // mounting does; it derives the mount path back from req.originalUrl for its URLs.
    req.originalUrl = req.url;
    req.url = req.url.slice(issuerPath.length) || '/';
    return handle(req, res);
  } catch (err) {
    console.error('[oidc] error', err);
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error');
  }
});

server.on('error', (err) => fail(`cannot listen on ${HOST}:${port}: ${err.message}`));
server.listen(port, HOST, async () => {
  const issuer = `http://${HOST}:${server.address().port}${issuerPath}`;
  signingKeys.push(await newSigningKey());
  install(buildProvider(issuer));
  console.error(`[oidc] client ${opt['client-id']}, redirect_uris ${redirectUris.join(' ')}`);
  process.stdout.write(`READY ${issuer}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)).closeAllConnections());
}
