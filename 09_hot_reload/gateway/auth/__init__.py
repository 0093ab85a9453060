"""Authentication at the edge: who is calling, decided once, before any other work.

- `config.py`    [auth], [[auth.issuers]], [[consumers]] and a route's `auth` table
- `apikeys.py`   API keys: the format, hashing, constant-time lookup, `keygen`
- `keys.py`      verification keys (PEM, JWK, HMAC secret) and which algorithm fits which
- `jwks.py`      an issuer's keys fetched from its JWKS (or OpenID discovery), cached,
                 refetched on an unknown kid at most once per interval
- `tokens.py`    a JWT parsed strictly and verified against one issuer's policy
- `identity.py`  the verified identity, and the headers that carry it upstream
- `upstream.py`  the request as the upstream gets it: identity in, credential out
- `auth.py`      the middleware: credential -> identity or 401/403
"""
