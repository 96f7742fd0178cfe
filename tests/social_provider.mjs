// A real OpenID Provider for the social-login tests: panva's certified `oidc-provider` from the npm
// registry (installed by tests/social_provider.py into a cache outside the repository), standing in
// for Google & co. Usage: node social_provider.mjs CONFIG.json
//
// CONFIG: {"module": "<path of oidc-provider/lib/index.js>", "port": N, "issuer": "http://127.0.0.1:N",
//          "jwks": {"keys": [<private signing JWKs>]}, "client": {client_id, client_secret, redirect_uris}}
// The signing keys come from the test, so that it can also sign tokens "as the provider" with a
// wrong issuer or an old expiry (what a multi-tenant provider's shared keys make possible).
//
// Instead of the development-only interactions, small interaction pages of our own, as a social
// network has them: a sign-in form (account + password) and a consent form on which the customer
// ticks the scopes they agree to share; scopes left unticked are *rejected*, so the grant, the
// token response's `scope` and userinfo hold only what was agreed.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { default: Provider } = await import(pathToFileURL(config.module).href);

// The test accounts: one whose provider vouches for the address, one who merely claims somebody
// else's address (email_verified false) -- the account-takeover attempt a relying party must refuse.
const ACCOUNTS = {
  alice: {
    password: 'alice-password',
    claims: {
      sub: 'alice-0001',
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice Liddell',
      given_name: 'Alice',
      family_name: 'Liddell',
      locale: 'en-GB',
      picture: 'https://social.example/alice.png',
      phone_number: '+44 20 7946 0018',
      phone_number_verified: true,
    },
  },
  mallory: {
    password: 'mallory-password',
    claims: {
      sub: 'mallory-0002',
      email: 'alice@example.com',
      email_verified: false,
      name: 'Not Alice',
      given_name: 'Mallory',
      family_name: 'Forger',
    },
  },
};
const BY_SUB = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.claims.sub, a]));

const provider = new Provider(config.issuer, {
  clients: [{ ...config.client, grant_types: ['authorization_code'], response_types: ['code'] }],
  jwks: config.jwks,
  cookies: { keys: ['social-provider-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'locale', 'picture'],
    phone: ['phone_number', 'phone_number_verified'],
  },
  scopes: ['openid', 'email', 'profile', 'phone'],
  pkce: { required: () => true },
  // registration: each accounts test registers its own client with its server's callback URL
  features: { devInteractions: { enabled: false }, registration: { enabled: true } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const account = BY_SUB[sub];
    if (!account) return undefined;
    return { accountId: sub, claims: async () => ({ ...account.claims }) };
  },
});

const escape = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, uid, prompt, message, scopes) {
  const fields = prompt === 'login'
    ? '<input name="login"><input name="password" type="password">'
    : scopes.map((s) => `<label><input type="checkbox" name="scope" value="${escape(s)}" checked>${escape(s)}</label>`).join('');
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><title>${prompt}</title><link rel="icon" href="data:,"><p>${escape(message)}</p>`
    + `<form method="post" action="/interaction/${escape(uid)}/${prompt}">${fields}<button>continue</button></form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, grantId } = details;
  if (details.uid !== uid) throw new Error('interaction uid does not match its cookie');
  const requested = String(params.scope || '').split(' ').filter(Boolean);
  if (req.method === 'GET') {
    return page(res, 200, uid, prompt.name, prompt.name === 'login' ? 'Sign in' : `Share with ${params.client_id}?`, requested);
  }
  const form = await readForm(req);
  if (action === 'login' && prompt.name === 'login') {
    const account = ACCOUNTS[form.get('login')];
    if (!account || account.password !== form.get('password')) {
      return page(res, 401, uid, 'login', 'Wrong account or password', requested);
    }
    return provider.interactionFinished(req, res, { login: { accountId: account.claims.sub } },
      { mergeWithLastSubmission: false });
  }
  if (action === 'consent' && prompt.name === 'consent') {
    const chosen = new Set(form.getAll('scope').flatMap((s) => s.split(' ')));
    chosen.add('openid');
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details.missingOIDCScope || [];
    const agreed = missing.filter((s) => chosen.has(s));
    const refused = missing.filter((s) => !chosen.has(s));
    if (agreed.length) grant.addOIDCScope(agreed.join(' '));
    if (refused.length) grant.rejectOIDCScope(refused.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const saved = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId: saved } },
      { mergeWithLastSubmission: true });
  }
  return page(res, 400, uid, prompt.name, `expected the ${prompt.name} step`, requested);
}

const oidc = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/(login|consent))?(?:\?.*)?$/.exec(req.url);
  if (!match) return oidc(req, res);
  interaction(req, res, match[1], match[2]).catch((err) => {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${err.message}`);
  });
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${config.issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
