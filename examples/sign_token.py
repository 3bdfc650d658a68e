"""Sign a Mkondo user token from your backend: HS256, standard library only.

    python3 examples/sign_token.py APP_ID KID SECRET USER_ID
"""
import base64, hashlib, hmac, json, sys, time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(app_id, kid, secret, user_id, ttl=3600, name=None, groups=()):
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    claims = {"sub": user_id, "app": app_id, "iat": now, "exp": now + ttl}
    if name:
        claims["name"] = name
    if groups:
        claims["groups"] = list(groups)
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


if __name__ == "__main__":
    app_id, kid, secret, user_id = sys.argv[1:5]
    print(sign_token(app_id, kid, secret, user_id))
