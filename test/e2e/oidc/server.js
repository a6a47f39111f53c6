// A real OpenID Connect provider (panva/oidc-provider) for ztgate's
// end-to-end tests: client-credentials access tokens as RS256 JWTs for the
// resources urn:orders-api (callers of the gateway) and urn:backend-api (a
// backend the gateway calls with a token it gets as client ztgate-gateway),
// on loopback only.
//
//   node server.js PORT [KEYFILE]
//
// With KEYFILE the keys survive a restart (the provider "comes back").
// POST /__rotate makes the pre-published next key the signing key and
// publishes a fresh next key, the way Microsoft Entra ID rolls its keys.
// POST /__rotate?unannounced=1 signs with a key never published before and
// retires the old ones.
//
// The token endpoint also takes RFC 8693 token exchange from ztgate-gateway:
// a subject_token for urn:orders-api is exchanged for a token for
// urn:backend-api (audience or resource) with the same sub and client_id,
// act.sub naming the gateway, and never outliving the subject token.
import fs from 'node:fs';
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createLocalJWKSet, importJWK, jwtVerify, SignJWT } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function build(keys) {
  const provider = new Provider(issuer, {
    clients: [
      { client_id: 'orders-client', client_secret: 'orders-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'orders.read' },
      { client_id: 'other-client', client_secret: 'other-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'other.read' },
      { client_id: 'ztgate-gateway', client_secret: 'gateway-secret', grant_types: ['client_credentials', TOKEN_EXCHANGE], redirect_uris: [], response_types: [], scope: 'backend.call' },
    ],
    scopes: ['orders.read', 'other.read', 'backend.call'],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client) => ({ 'orders-client': 'urn:orders-api', 'ztgate-gateway': 'urn:backend-api' })[client.clientId] ?? 'urn:other-api',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => ({
          scope: ({ 'urn:orders-api': 'orders.read', 'urn:backend-api': 'backend.call' })[resource] ?? 'other.read',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    jwks: { keys },
  });
  provider.proxy = false;
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience']);
  return provider;
}

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

function publicKeys() {
  return { keys: [signing, next].map(({ kty, n, e, kid, alg }) => ({ kty, n, e, kid, alg })) };
}

async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  const fail = (error, description) => {
    ctx.status = 400;
    ctx.body = { error, error_description: description };
  };
  if (params.subject_token_type !== ACCESS_TOKEN) {
    fail('invalid_request', 'subject_token_type must be an access token');
    return;
  }
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.subject_token, createLocalJWKSet(publicKeys()), { issuer, audience: 'urn:orders-api' }));
  } catch (err) {
    fail('invalid_grant', `subject_token: ${err.message}`);
    return;
  }
  if (params.audience !== 'urn:backend-api') {
    fail('invalid_target', 'this provider exchanges tokens for urn:backend-api only');
    return;
  }
  const now = Math.floor(Date.now() / 1000);
  const exp = Math.min(now + 300, subject.exp);
  const token = await new SignJWT({ client_id: subject.client_id, scope: 'backend.call', act: { sub: client.clientId } })
    .setProtectedHeader({ alg: 'RS256', kid: signing.kid, typ: 'at+jwt' })
    .setIssuer(issuer).setAudience(params.audience).setSubject(subject.sub)
    .setIssuedAt(now).setExpirationTime(exp).setJti(randomUUID())
    .sign(await importJWK(signing, 'RS256'));
  ctx.body = { access_token: token, issued_token_type: ACCESS_TOKEN, token_type: 'Bearer', expires_in: exp - now };
}

const keyFile = process.argv[3];
let signing;
let next;
if (keyFile && fs.existsSync(keyFile)) {
  ({ signing, next } = JSON.parse(fs.readFileSync(keyFile, 'utf8')));
} else {
  signing = newKey();
  next = newKey();
}
const save = () => keyFile && fs.writeFileSync(keyFile, JSON.stringify({ signing, next }), { mode: 0o600 });
save();
let provider = build([signing, next]); // the first key signs; the next is published ahead

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate?unannounced=1') {
    // A key nobody has seen signs from now on; every older key is retired.
    signing = newKey();
    next = newKey();
    provider = build([signing, next]);
    save();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ signing: signing.kid }));
    return;
  }
  if (req.method === 'POST' && req.url === '/__rotate') {
    const old = signing;
    signing = next;
    next = newKey();
    provider = build([signing, next, old]);
    save();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ signing: signing.kid }));
    return;
  }
  provider.callback()(req, res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready ${issuer}`);
});
