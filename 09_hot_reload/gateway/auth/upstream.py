"""The request as the upstream gets it, once auth has decided who is calling.

Kept apart from identity.py, which config.py reads while the routing module is still
being built: this module needs the route match (gateway/routing.py), that one must not.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from aiohttp import web
from multidict import CIMultiDict

from gateway.routing import ROUTE, RouteMatch

from .config import AuthPolicy
from .identity import IDENTITY, Identity, Spoofable


def upstream_request(
    request: web.Request,
    found: RouteMatch,
    policy: AuthPolicy,
    identity: Identity,
    spoofable: Spoofable,
) -> web.Request:
    """The request as the upstream gets it: identity headers set from the verified
    identity, the client's own identity-family headers removed, and the credential
    removed unless the route forwards it.

    A clone, not a list of edits for the proxy to apply at the end: every later step reads
    these headers (the cache's Vary selection and key headers, the balancer's hash key, the
    rate limiter's header keys), and each must see them as the upstream will, never a
    client's own X-Consumer-ID, and always the gateway's. It is the largest single part of
    what an API key costs: aiohttp's request is immutable, and `clone` copies and encodes
    the header list again; Envoy's filters edit one shared header map in place.
    """
    drop = policy.credential_headers
    headers = CIMultiDict(
        (n, v) for n, v in request.headers.items() if not spoofable(n) and n.lower() not in drop
    )
    headers.extend(identity.headers())
    clone = request.clone(headers=headers)
    clone[IDENTITY] = identity
    if policy.key_query and not policy.forward_credential and found.path.query:
        query = without_param(found.path.query, policy.key_query)
        if query != found.path.query:
            # The route match carries the target the upstream (and the cache key) uses.
            clone[ROUTE] = found._replace(path=found.path._replace(query=query))
    return clone


def without_param(query: str, name: str) -> str:
    """`?a=1&api_key=X&b=2` -> `?a=1&b=2`: the other parameters byte for byte."""
    kept = [part for part in query[1:].split("&") if unquote_plus(part.partition("=")[0]) != name]
    return "?" + "&".join(kept) if kept else ""
