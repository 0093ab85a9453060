"""The verified identity of a request, and the headers that tell the upstream about it.

The upstream trusts these headers blindly (common/backends/whoami.py shows what it sees),
which is only safe because the gateway removes every header of the same families that the
client sent itself, on every route, public ones too: a public route that let
`X-Consumer-ID: admin` through would hand any client the identity of its choice, on the
one route nobody thought to protect. The families go by prefix, not by a list of names,
so a header the gateway does not set today (`X-Consumer-Custom-ID`) is no way in either,
and `_` counts as `-`: CGI-style servers (WSGI, PHP, many frameworks) read both
`X-Consumer-ID` and `X_Consumer_ID` as `HTTP_X_CONSUMER_ID`.

Besides the gateway's own families, upstreams commonly trust single names that other
proxies set: oauth2-proxy's X-Auth-Request-User and X-Forwarded-User, Apache's and nginx
auth_request's X-Remote-User and Remote-User, Grafana's X-WEBAUTH-USER, and the X-User-ID
many services read. A client that sends one of those through a gateway that does not set
it is believed by a service that was written for a gateway that does. So they go too, on
every route: `STRIPPED_NAMES` is the documented default list, `[auth] strip_headers` adds
names, and `keep_headers` lets one of the list through on purpose (gateway.toml keeps
X-User-ID: in this repo it is the routing hint the users pool hashes on, not an identity).
The gateway's own families cannot be kept: it sets them.

Kong sets the same family (X-Consumer-ID, X-Consumer-Username, X-Credential-Identifier,
X-Anonymous-Consumer) and strips nothing else; Envoy's jwt_authn forwards the payload in a
header of your choice (`forward_payload_header`) and strips the Authorization header
unless `forward: true`; oauth2-proxy removes its own X-Forwarded-* and X-Auth-Request-*
names from what the client sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

# Lower case, with "-": a client's header is compared after `_` -> `-` (see above).
SPOOFABLE_PREFIXES = ("x-consumer-", "x-authenticated-", "x-credential-")
# Names other proxies set for "the authenticated user", which upstreams behind them trust.
STRIPPED_NAMES = frozenset(
    {
        "x-user-id",
        "x-user",
        "x-user-email",
        "x-user-name",
        "x-user-groups",
        "x-auth-user",
        "x-auth-subject",
        "x-auth-email",
        "x-auth-groups",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-auth-request-access-token",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-forwarded-access-token",
        "x-remote-user",
        "remote-user",
        "x-remote-groups",
        "x-webauth-user",
    }
)

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

    # The identity headers, made once: an API key's identity is built at start-up and a
    # token's is kept by the verified-token cache, and both go upstream on every request.
    _headers: tuple[tuple[str, str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_headers", tuple(self._pairs()))  # frozen: set once, here

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The identity headers, in a fixed order."""
        return self._headers

    def _pairs(self) -> list[tuple[str, str]]:
        pairs = [
            (CONSUMER_ID, self.consumer_id),
            (CONSUMER_NAME, self.name),
            (SUBJECT, self.subject),
            (CREDENTIAL, self.credential),
        ]
        if self.groups:
            pairs.append((CONSUMER_GROUPS, ",".join(self.groups)))
        if self.scopes:
            pairs.append((SCOPE, " ".join(sorted(self.scopes))))
        if self.issuer is not None:
            pairs.append((ISSUER, self.issuer))
        return pairs


IDENTITY = web.RequestKey("identity", Identity)


def normalise(name: str) -> str:
    return name.lower().replace("_", "-")


MAX_VERDICTS = 4096


class Spoofable:
    """Which client headers never reach the upstream: the families, the default names,
    plus `strip_headers`, less `keep_headers`."""

    def __init__(self, strip: Iterable[str] = (), keep: Iterable[str] = ()) -> None:
        self.names = (STRIPPED_NAMES | {normalise(n) for n in strip}) - {normalise(n) for n in keep}
        # Verdicts by header name as the client spelled it: a client sends the same dozen
        # names on every request, and each costs a normalise and a prefix scan otherwise.
        # Bounded, since names are the client's choice.
        self._verdicts: dict[str, bool] = {}
        # The spellings judged harmless, as a set: `clean` asks it about all of a
        # request's names in one C call, where a call per name was most of the check.
        self._harmless: set[str] = set()

    def __call__(self, name: str) -> bool:
        verdict = self._verdicts.get(name)
        if verdict is None:
            normal = normalise(name)
            verdict = normal in self.names or normal.startswith(SPOOFABLE_PREFIXES)
            if len(self._verdicts) < MAX_VERDICTS:
                self._verdicts[name] = verdict
                if not verdict:
                    self._harmless.add(name)
        return verdict

    def clean(self, names: Iterable[str]) -> bool:
        """No such header among the request's names (the common case: then nothing needs
        removing). Names seen before are answered by one set comparison."""
        return self._harmless.issuperset(names) or not any(self(name) for name in names)
