"""A small OpenID-style identity provider for stage 06's demo and tests (common/idp).

    python -m common.idp --port 9100        # or --fd N, as the launcher and tests do

It holds one signing key per algorithm family (RSA, EC P-256, Ed25519, and an HMAC
secret), publishes the public ones as a JWKS with a kid each, issues tokens with the
claims and lifetime a caller asks for, and rotates its keys on request, so that a
gateway's JWKS caching and refetch-on-unknown-kid can be watched working:

    GET  /.well-known/openid-configuration   issuer, jwks_uri, token_endpoint
    GET  /jwks.json        the public keys (Cache-Control: max-age=300); every fetch counted
    POST /token            {"sub": "alice", "alg": "RS256", "scope": "orders:read",
                            "aud": "api", "expires_in": 300, "claims": {...}}
                           -> {"access_token": ..., "token_type": "Bearer", "expires_in"}
                           also "header": {...} (extra JWS header fields: jku, crit, an odd
                           kid) and "raw_payload": "..." (signed byte for byte)
    POST /_rotate          new keys with new kids; the old public keys stay published
                           unless {"drop_old": true}
    GET  /_stats           {"jwks_fetches": n, "tokens": n}; DELETE resets the counts
    GET  /health

A real identity provider (Keycloak, Auth0, Okta, Dex) authenticates users and clients
before it issues anything; this one issues whatever it is asked for, to whoever asks.
It is a test fixture: it binds 127.0.0.1 only and must never face a network.
forge.py builds the tokens an attacker would send without any private key.
"""
