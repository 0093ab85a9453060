"""The request-target of a request line, and the forms of it the gateway accepts.

RFC 9112 §3.2 names four forms. A gateway in front of origin servers sees two of them:

- origin-form, `/users/1?x=2`: what a client sends to a server; nearly every request.
- absolute-form, `http://api.example/users/1?x=2`: what a client sends to a forward
  proxy, and what §3.2.2 says a server MUST accept too (so that servers can one day
  expect it from everyone). The gateway routes on its path and, as §3.2.2 requires,
  takes the host from the URL and ignores the Host header: the request goes on as if the
  client had sent `GET /users/1?x=2` with `Host: api.example`.

The other two, `OPTIONS *` (asterisk-form) and `CONNECT host:port` (authority-form), ask
for something no route can give: 400.

A fragment (`#top`) is never part of any form: a client keeps it to itself. A raw `#`
in a request line is a broken client or a probe, and it is refused (400), not cut off
there as nginx does: `GET /public/x#/../../admin/x` read by a router that cuts at the
`#` and an origin that does not (or the reverse) is two readers of one path again, the
bug gateway/pathsafety.py exists to prevent (stage 02). Refusing is the one reading that
cannot disagree with anyone. Browsers, curl and every HTTP library strip fragments before
sending, so no real request is lost.
"""

from __future__ import annotations

import re

from aiohttp import web
from yarl import URL

from gateway.errors import BadRequest

# host[:port]: a registered name or IPv4 address, or a bracketed IPv6 address. No
# userinfo (`user@host`): RFC 9110 §4.2.4 has recipients treat it as an error.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def origin_form(request: web.Request) -> web.Request:
    """`request` if its request-target is in origin-form; for absolute-form, a copy of it
    in origin-form with the URL's authority as its Host. BadRequest for anything else."""
    target = request.raw_path
    if target[:1] == "/" and "#" not in target:
        return request  # the fast path: nearly every request
    if "#" in target:
        raise BadRequest("a fragment ('#') is never part of a request-target (RFC 9112 §3.2)")
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise BadRequest("the request-target must be a path ('/...') or an http:// URL")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:]
    if not _AUTHORITY.fullmatch(authority):
        raise BadRequest("the request-target's host is not a valid host[:port]")
    if not path.startswith("/"):  # `http://host` or `http://host?x`: an empty path is "/"
        path = "/" + path
    headers = request.headers.copy()
    headers["Host"] = authority
    # encoded=True: the path keeps the client's bytes (%2F, %20, ..) exactly.
    return request.clone(rel_url=URL(path, encoded=True), host=authority, headers=headers)
