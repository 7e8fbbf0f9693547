// A real OAuth2 authorization server (oidc-provider) on loopback for the host's OAuth tests.
//
// Environment: PORT (0 picks one), REDIRECT_URI (the hub's /oauth/callback), CLIENT_ID,
// CLIENT_SECRET, ACCESS_TOKEN_TTL (seconds, default 3600).
//
// One confidential client (secret in the form body, as Salesforce documents), PKCE required,
// refresh tokens issued for every code and rotated on every use (a replayed refresh token is
// refused and revokes its grant), token revocation, client credentials. Logins and consents
// finish by themselves for a fixed test account, so a test completes the browser flow by
// following redirects with a cookie jar.
//
// Prints one line `listening <issuer>` once it serves.

import Provider from 'oidc-provider';

const port = Number(process.env.PORT ?? 0);
const redirectUri = process.env.REDIRECT_URI;
const clientId = process.env.CLIENT_ID ?? 'switchboard-test';
const clientSecret = process.env.CLIENT_SECRET ?? 'switchboard-test-secret-0123456789abcdef';
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL ?? 3600);
const ACCOUNT = 'test-agent';

if (!redirectUri) {
  console.error('REDIRECT_URI is required');
  process.exit(2);
}

const { createServer } = await import('node:http');
const server = createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  scopes: ['openid', 'offline_access', 'api'],
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
  },
  pkce: { required: () => true },
  // Refresh tokens without `offline_access` + `prompt=consent`: providers such as Salesforce
  // grant them by scope alone.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
  },
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  cookies: { keys: ['switchboard-oauth-test-cookie-key'] },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.proxy = false;

// Test control, as on the project's simulators: `POST /_test/expire` (form `token=`) ends one
// access token as its expiry would, leaving the grant and its refresh token alone (revoking a
// token would end the whole grant).
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/_test/expire') {
    return next();
  }
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const token = new URLSearchParams(Buffer.concat(chunks).toString()).get('token');
  const found = token ? await provider.AccessToken.find(token) : undefined;
  if (found) await found.destroy();
  ctx.status = found ? 204 : 404;
});

// The interaction pages: log the test account in, then grant what the client asked for.
provider.use(async (ctx, next) => {
  const match = ctx.method === 'GET' && ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) {
    return next();
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: ACCOUNT } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(returnTo);
});

server.on('request', provider.callback());
console.log(`listening ${issuer}`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
