"""The verified identity of a request, and the headers that tell the upstream about it.

The upstream trusts these headers blindly (common/backends/whoami.py shows what it sees),
which is only safe because the gateway removes every header of the same families that the
client sent itself, on every route, public ones too: a public route that let
`X-Consumer-ID: admin` through would hand any client the identity of its choice, on the
one route nobody thought to protect. The families go by prefix, not by a list of names,
so a header the gateway does not set today (`X-Consumer-Custom-ID`) is no way in either,
and `_` counts as `-`: CGI-style servers (WSGI, PHP, many frameworks) read both
`X-Consumer-ID` and `X_Consumer_ID` as `HTTP_X_CONSUMER_ID`.

Kong sets the same family (X-Consumer-ID, X-Consumer-Username, X-Credential-Identifier,
X-Anonymous-Consumer); Envoy's jwt_authn forwards the payload in a header of your choice
(`forward_payload_header`) and strips the Authorization header unless `forward: true`.
`X-User-ID` is not in the families: in this repo it is a routing hint the client chooses
(the users pool hashes on it), not an identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

# Lower case, with "-": a client's header is compared after `_` -> `-` (see above).
SPOOFABLE_PREFIXES = ("x-consumer-", "x-authenticated-", "x-credential-")

CONSUMER_ID = "X-Consumer-ID"
CONSUMER_NAME = "X-Consumer-Username"
CONSUMER_GROUPS = "X-Consumer-Groups"
SUBJECT = "X-Authenticated-Subject"
SCOPE = "X-Authenticated-Scope"
ISSUER = "X-Authenticated-Issuer"
CREDENTIAL = "X-Credential-Identifier"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the caller is, once a credential was verified."""

    consumer_id: str  # a configured consumer's id, or "<issuer>:<sub>" for a JWT
    name: str
    subject: str  # the JWT's sub; an API key's consumer id
    scopes: frozenset[str]
    groups: tuple[str, ...]
    credential: str  # which credential: "key:<key id>" or "jwt:<issuer name>"
    issuer: str | None = None  # the JWT's iss
    expires: float | None = None  # the JWT's exp (epoch seconds); None for an API key
    plan: str = ""  # the consumer's plan: which of a limit's `plans` applies (stage 07)

    def headers(self) -> list[tuple[str, str]]:
        """The identity headers, in a fixed order."""
        pairs = [(CONSUMER_ID, self.consumer_id), (CONSUMER_NAME, self.name),
                 (SUBJECT, self.subject), (CREDENTIAL, self.credential)]  # fmt: skip
        if self.groups:
            pairs.append((CONSUMER_GROUPS, ",".join(self.groups)))
        if self.scopes:
            pairs.append((SCOPE, " ".join(sorted(self.scopes))))
        if self.issuer is not None:
            pairs.append((ISSUER, self.issuer))
        return pairs


IDENTITY = web.RequestKey("identity", Identity)


def spoofable(name: str) -> bool:
    return name.lower().replace("_", "-").startswith(SPOOFABLE_PREFIXES)


def has_spoofable(headers: CIMultiDict[str] | object) -> bool:
    """Any identity-family header among the request's (the common case is none: then the
    request goes on as it is, without a copy of its headers)."""
    return any(spoofable(name) for name in headers)  # type: ignore[attr-defined]
