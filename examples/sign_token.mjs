// Sign a Mkondo user token from a Node.js backend: HS256, no dependencies.
//   node examples/sign_token.mjs APP_ID KID SECRET USER_ID
import { createHmac } from "node:crypto";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

export function signToken({ appId, kid, secret, userId, ttl = 3600, name, groups }) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "HS256", typ: "JWT", kid };
  const claims = { sub: userId, app: appId, iat: now, exp: now + ttl, name, groups };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(createHmac("sha256", secret).update(input).digest())}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [appId, kid, secret, userId] = process.argv.slice(2);
  console.log(signToken({ appId, kid, secret, userId }));
}
