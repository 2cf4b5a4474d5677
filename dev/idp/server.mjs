// Demo / test OpenID Connect provider for the SMC Dashboard. NOT for production.
//
// Built on oidc-provider 8.x (the newest major that supports Node 20; 9.x wants Node 22).
// One confidential client (the dashboard), the users of users.toml, our own minimal
// sign-in page, automatic consent and one-step RP-initiated logout.
//
//   node dev/idp/server.mjs        (after `npm ci --prefix dev/idp`)
//
// Env: IDP_PORT (9400), IDP_CLIENT_ID (smc-dashboard),
//      IDP_CLIENT_SECRET (smc-demo-client-secret), IDP_USERS (users.toml beside this file).

import { createHash, generateKeyPairSync, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider, { errors, interactionPolicy } from 'oidc-provider';
import { parse as parseToml } from 'smol-toml';

const PORT = Number.parseInt(process.env.IDP_PORT || '9400', 10);
const HOST = '127.0.0.1'; // loopback only: this provider is for one machine's demo and tests
const ISSUER = `http://${HOST}:${PORT}`;
const CLIENT_ID = process.env.IDP_CLIENT_ID || 'smc-dashboard';
const CLIENT_SECRET = process.env.IDP_CLIENT_SECRET || 'smc-demo-client-secret';
const USERS_FILE = process.env.IDP_USERS || join(dirname(fileURLToPath(import.meta.url)), 'users.toml');

// ---------------------------------------------------------------------------------------------
// Users

function loadUsers(file) {
  const { users } = parseToml(readFileSync(file, 'utf8'));
  if (!Array.isArray(users)) throw new Error(`${file}: expected a [[users]] list`);
  const byName = new Map();
  for (const u of users) {
    for (const key of ['username', 'password', 'name', 'email']) {
      if (typeof u[key] !== 'string' || !u[key]) throw new Error(`${file}: a user lacks "${key}"`);
    }
    for (const key of ['groups', 'sites']) {
      if (!Array.isArray(u[key]) || !u[key].every((v) => typeof v === 'string')) {
        throw new Error(`${file}: user "${u.username}": "${key}" must be a list of strings`);
      }
    }
    if (byName.has(u.username)) throw new Error(`${file}: duplicate user "${u.username}"`);
    byName.set(u.username, u);
  }
  return byName;
}

const USERS = loadUsers(USERS_FILE);

// Compare fixed-length digests so the time taken tells nothing about the password.
const digest = (s) => createHash('sha256').update(String(s)).digest();
function checkPassword(username, password) {
  const user = USERS.get(username);
  const ok = timingSafeEqual(digest(password), digest(user ? user.password : randomUUID()));
  return ok && user ? user : undefined;
}

// ---------------------------------------------------------------------------------------------
// Redirect URIs: the app runs on arbitrary loopback ports in tests, so any
// http://127.0.0.1:<port>/oauth2callback or http://localhost:<port>/oauth2callback is accepted
// (and, after logout, also the app's root "/"). Nothing but loopback http.

function isLoopbackUri(value, paths) {
  let url;
  try { url = new URL(value); } catch { return false; }
  return url.protocol === 'http:'
    && (url.hostname === '127.0.0.1' || url.hostname === 'localhost')
    && !url.username && !url.password && !url.search && !url.hash
    && paths.includes(url.pathname);
}

// ---------------------------------------------------------------------------------------------
// Provider

// Signing keys live in memory for the life of the process; a fresh kid per start so a relying
// party that cached the old JWKS refetches it instead of failing on a reused kid.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: `demo-${randomUUID()}`, use: 'sig', alg: 'RS256',
};

// A fresh sign-in is asked for with prompt=login; also honour max_age=0 even when the last
// sign-in was less than a second ago (the library compares whole seconds with ">").
const { Check, Prompt, base } = interactionPolicy;
const policy = base();
policy.get('login').checks.add(new Check(
  'max_age_zero', 'a fresh sign-in was requested (max_age=0)',
  (ctx) => (ctx.oidc.params.max_age !== undefined && Number(ctx.oidc.params.max_age) === 0
    && !ctx.oidc.result?.login),
));
// Streamlit's st.login sends prompt=select_account unless told otherwise; the library would
// refuse that value. There is no account chooser here: accept it and ask nothing more (no
// session: the sign-in form anyway; a session: single sign-on as that user, as without prompt).
const selectAccount = new Prompt({ name: 'select_account', requestable: true });
selectAccount.checks.clear();
policy.add(selectAccount);

// Lax rather than the library's SameSite=None for the long-lived cookie: browsers drop
// SameSite=None cookies that are not Secure, and this provider speaks plain http.
const COOKIE_OPTIONS = { signed: true, httpOnly: true, sameSite: 'lax' };

const page = (title, body) => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:22rem;margin:3rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;box-sizing:border-box;margin:.3rem 0}
input{padding:.4rem}button{padding:.5rem;margin-top:1rem}.error{color:#a00}</style>
</head><body>${body}</body></html>`;

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    client_name: 'SMC Dashboard',
    // The registered ones are the Streamlit defaults; any other loopback port is allowed below.
    redirect_uris: ['http://localhost:8501/oauth2callback', 'http://127.0.0.1:8501/oauth2callback'],
    post_logout_redirect_uris: ['http://localhost:8501/oauth2callback', 'http://127.0.0.1:8501/oauth2callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    // Authlib's default. oidc-provider also accepts client_secret_post for such a client.
    token_endpoint_auth_method: 'client_secret_basic',
    require_auth_time: true, // auth_time in every ID token, not only with max_age
  }],
  responseTypes: ['code'], // authorization code flow only
  // Confidential client: PKCE (S256 only) is used when sent but not required.
  pkce: { methods: ['S256'], required: () => false },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups', 'sites'],
  },
  // Put the scope's claims into the ID token too, not only into userinfo: the app reads the
  // ID token only.
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    const user = USERS.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: user.name,
          email: user.email,
          email_verified: true,
          preferred_username: user.username,
          groups: [...user.groups],
          sites: [...user.sites],
        };
      },
    };
  },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false }, // our own pages below
    rpInitiatedLogout: {
      enabled: true,
      // Never shown: autoLogout (below) replaces this page by a redirect.
      logoutSource: async (ctx, form) => { ctx.body = page('Sign out', form); },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '<h1>Signed out</h1><p>You are signed out of the demo provider.</p>');
      },
    },
  },
  // Fixed development keys (the cookies only need to survive a restart of the provider).
  cookies: {
    keys: ['smc-demo-idp-cookie-key-1'],
    long: COOKIE_OPTIONS,
    short: COOKIE_OPTIONS,
  },
  jwks: { keys: [signingKey] },
  clientBasedCORS: () => false, // no browser-side (CORS) calls to the token/userinfo endpoints
  // The library's default TTLs, set explicitly so it prints no notices on stdout.
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<h1>Sign-in error</h1>${Object.entries(out)
      .map(([key, value]) => `<p><strong>${esc(key)}</strong>: ${esc(value)}</p>`).join('')}`);
  },
});

// Accept any loopback port for this client (see isLoopbackUri); registered URIs still work.
const { redirectUriAllowed, postLogoutRedirectUriAllowed } = provider.Client.prototype;
provider.Client.prototype.redirectUriAllowed = function allowed(value) {
  return redirectUriAllowed.call(this, value)
    || (this.clientId === CLIENT_ID && isLoopbackUri(value, ['/oauth2callback']));
};
provider.Client.prototype.postLogoutRedirectUriAllowed = function allowed(value) {
  return postLogoutRedirectUriAllowed.call(this, value)
    || (this.clientId === CLIENT_ID && isLoopbackUri(value, ['/oauth2callback', '/']));
};

function jwtKid(jwt) {
  try { return JSON.parse(Buffer.from(String(jwt).split('.')[0], 'base64url')).kid; } catch { return undefined; }
}

// RP-initiated logout in one step. The library validates the request (id_token_hint,
// post_logout_redirect_uri) and then shows an "are you sure?" page that must be POSTed back.
// Once it has validated the request, do what confirming does (end the provider session, drop
// the grants and their tokens, clear the cookie) and redirect straight to
// post_logout_redirect_uri (with state), or to the "signed out" page when none was given.
provider.use(async function autoLogout(ctx, next) {
  // An ID token from before a restart of this provider (signed with a key it no longer has)
  // cannot be checked as id_token_hint; drop it rather than fail the logout. The client_id that
  // Streamlit also sends still names the client whose post_logout_redirect_uris apply.
  if (ctx.path === '/session/end' && ctx.method === 'GET' && ctx.query.id_token_hint
      && jwtKid(ctx.query.id_token_hint) !== signingKey.kid) {
    const query = { ...ctx.query };
    delete query.id_token_hint;
    ctx.query = query;
  }
  await next();
  if (ctx.oidc?.route !== 'end_session' || ctx.status !== 200) return;
  const { session } = ctx.oidc;
  const { postLogoutRedirectUri, state } = session.state || {};
  for (const { grantId } of Object.values(session.authorizations || {})) {
    if (!grantId) continue;
    await provider.AccessToken.revokeByGrantId(grantId);
    await provider.AuthorizationCode.revokeByGrantId(grantId);
    await provider.Grant.adapter.destroy(grantId);
  }
  await session.destroy();
  // overwrite: replace the Set-Cookie that the library's session handling already added.
  ctx.oidc.cookies.set(provider.cookieName('session'), null, { ...COOKIE_OPTIONS, overwrite: true });
  const target = new URL(postLogoutRedirectUri || ctx.oidc.urlFor('end_session_success'));
  if (postLogoutRedirectUri && state != null) target.searchParams.set('state', state);
  provider.emit('end_session.success', ctx);
  ctx.status = 303;
  ctx.redirect(target.href);
});

// ---------------------------------------------------------------------------------------------
// Interaction pages: /interaction/<uid> (GET: sign-in form, or automatic consent) and
// /interaction/<uid>/login (POST: check the password).

function loginForm(uid, { username = '', error } = {}) {
  return page('SMC demo sign-in', `<h1>SMC demo sign-in</h1>
<p>Demo identity provider. Not for production.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">User name</label>
<input id="username" name="username" type="text" value="${esc(username)}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>`);
}

function send(res, status, html) {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Frame-Options': 'DENY',
  });
  res.end(html);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// The first-party dashboard gets what it asks for: save a Grant with the missing scopes and
// claims and finish the consent step without a page.
async function autoConsent(req, res, { prompt: { details }, grantId, session, params }) {
  const grant = (grantId && await provider.Grant.find(grantId))
    || new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
}

async function handleInteraction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (!(err instanceof errors.SessionNotFound)) throw err;
    send(res, 400, page('SMC demo sign-in', '<h1>Sign-in expired</h1><p>This sign-in request has expired or is not valid. Go back to the app and sign in again.</p>'));
    return;
  }
  if (details.uid !== uid) { send(res, 400, page('SMC demo sign-in', '<h1>Bad request</h1>')); return; }
  const prompt = details.prompt.name;

  if (action === '' && req.method === 'GET' && prompt === 'login') {
    send(res, 200, loginForm(uid, { username: details.params.login_hint || '' }));
  } else if (action === '' && req.method === 'GET' && prompt === 'consent') {
    await autoConsent(req, res, details);
  } else if (action === '/login' && req.method === 'POST' && prompt === 'login') {
    const form = await readForm(req);
    const username = form.get('username') || '';
    const user = checkPassword(username, form.get('password') || '');
    if (!user) {
      send(res, 200, loginForm(uid, { username, error: 'Invalid user name or password.' }));
      return;
    }
    // A new login with its own timestamp: auth_time in the ID token is the time of this sign-in.
    await provider.interactionFinished(req, res, {
      login: { accountId: user.username, ts: Math.floor(Date.now() / 1000), remember: true },
    }, { mergeWithLastSubmission: false });
  } else {
    send(res, 405, page('SMC demo sign-in', '<h1>Not allowed</h1>'));
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP server: our interaction routes, everything else to the provider.

const providerCallback = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(req.url.split('?')[0]);
  if (!match) { providerCallback(req, res); return; }
  handleInteraction(req, res, match[1], match[2] || '').catch((err) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, page('SMC demo sign-in', '<h1>Internal error</h1>'));
    else res.end();
  });
});

server.on('error', (err) => {
  console.error(`idp: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  // The launcher waits for exactly this line.
  process.stdout.write(`idp ready ${ISSUER}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
