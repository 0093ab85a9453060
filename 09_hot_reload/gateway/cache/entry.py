"""One stored response, and what RFC 9111 says about it: may it be stored, how long is it
fresh, how old is it now, which requests may it answer (Vary), and how a 304 updates it.

Everything is computed from the stored headers and two clock readings, so an entry read
back from Redis is judged exactly like one that never left memory.

A shared cache: `s-maxage` and `proxy-revalidate` apply, `private` responses are never
stored, and a request with Authorization is answered from the cache only when the
response said so (public, s-maxage, must-revalidate; §3.5).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, field
from http import HTTPStatus

from multidict import CIMultiDict, CIMultiDictProxy

from .directives import (
    Directives,
    delta_seconds,
    parse_age,
    parse_directives,
    parse_targeted,
    single_date,
)

# RFC 9110 §15.1: the statuses a cache may give a heuristic lifetime to.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# Statuses this cache knows the meaning of (for `must-understand`, RFC 9111 §5.2.2.3):
# the registered ones, minus those it cannot store as they are (206, 304).
UNDERSTOOD = frozenset(s.value for s in HTTPStatus if s.value >= 200) - {206, 304}
# Fields that describe one exchange, not the stored response: never stored, never taken
# from a 304. (Hop-by-hop fields never reach here: headers.to_client removed them.)
PER_EXCHANGE = ("X-Request-ID", "X-Attempt-Count")
NOT_UPDATED_BY_304 = frozenset({"content-length"})


@dataclass(frozen=True, slots=True)
class Heuristics:
    """How long to keep a response fresh that gave no explicit lifetime (§4.2.2)."""

    fraction: float = 0.1  # of the time since Last-Modified: the usual 10%
    max_lifetime: float = 86400.0  # and never more than this
    default_ttl: float = 0.0  # with no Last-Modified at all; 0: no freshness


@dataclass(slots=True)
class Facts:
    """What the headers of a stored response mean for reusing it (computed once)."""

    lifetime: float  # freshness lifetime, seconds (§4.2.1)
    initial_age: float  # corrected_initial_age (§4.2.3)
    no_cache: bool  # every reuse revalidates first
    no_stale: bool  # must-revalidate, proxy-revalidate or s-maxage: never served stale
    stale_while_revalidate: float
    stale_if_error: float
    etag: str | None
    last_modified: str | None
    hidden: tuple[str, ...] = ()  # fields named by no-cache="..." / private="...": not sent


@dataclass(slots=True)
class Entry:
    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes | bytearray  # a fill's buffer, never written again once stored
    request_time: float  # when the request that got it was sent (wall clock)
    response_time: float  # when its head arrived
    vary: tuple[tuple[str, str | None], ...]  # selecting request fields, normalised
    facts: Facts = field(init=False)
    heuristics: Heuristics = field(default_factory=Heuristics, repr=False)

    def __post_init__(self) -> None:
        self.facts = judge(
            self.status, self.headers, self.request_time, self.response_time, self.heuristics
        )

    def age(self, now: float) -> float:
        """current_age (§4.2.3): as old as it was when it arrived, plus the time since."""
        return self.facts.initial_age + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left; negative when stale (RFC 9211's `ttl`)."""
        return self.facts.lifetime - self.age(now)

    def matches(self, request_headers: Mapping[str, str]) -> bool:
        """Does this variant answer a request with these headers (§4.1)?"""
        return all(normalise(name, request_headers) == value for name, value in self.vary)

    @property
    def size(self) -> int:
        """Bytes it holds, roughly: what the memory store's bound counts."""
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers.items()) + 200

    def updated(
        self,
        fresh: CIMultiDictProxy[str] | CIMultiDict[str],
        request_time: float,
        response_time: float,
    ) -> Entry:
        """This entry as a 304 (or a HEAD's 200) with `fresh` headers leaves it (§3.2): each
        field the new response carries replaces the stored one, Content-Length aside."""
        headers = CIMultiDict(self.headers)
        names = {name.lower() for name in fresh} - NOT_UPDATED_BY_304
        for name in names:
            if name in {n.lower() for n in PER_EXCHANGE}:
                continue
            headers.popall(name, None)
            for value in fresh.getall(name):
                headers.add(name, value)
        return Entry(
            status=self.status,
            reason=self.reason,
            headers=headers,
            body=self.body,
            request_time=request_time,
            response_time=response_time,
            vary=self.vary,
            heuristics=self.heuristics,
        )

    # --- Redis: one value per entry ----------------------------------------------------

    def dump(self) -> bytes:
        meta = {
            "status": self.status,
            "reason": self.reason,
            "headers": list(self.headers.items()),
            "times": [self.request_time, self.response_time],
            "vary": self.vary,
            "heuristics": list(astuple(self.heuristics)),
        }
        head = json.dumps(meta, separators=(",", ":")).encode()
        return struct.pack(">I", len(head)) + head + self.body

    @classmethod
    def load(cls, data: bytes) -> Entry:
        (size,) = struct.unpack_from(">I", data)
        meta = json.loads(data[4 : 4 + size])
        request_time, response_time = meta["times"]
        vary = tuple((name, value) for name, value in meta["vary"])
        return cls(
            meta["status"],
            meta["reason"],
            CIMultiDict(meta["headers"]),
            data[4 + size :],
            request_time,
            response_time,
            vary,
            Heuristics(*meta["heuristics"]),
        )


def directives_of(
    headers: Mapping[str, str] | CIMultiDict[str], targeted: Iterable[str]
) -> Directives:
    """The response's cache directives: from the first valid targeted field (RFC 9213:
    CDN-Cache-Control, which a cache that honours it uses *instead* of Cache-Control),
    else from Cache-Control."""
    for name in targeted:
        lines = _getall(headers, name)
        if lines and (found := parse_targeted(lines)) is not None:
            return found
    return parse_directives(_getall(headers, "Cache-Control"))


TARGETED: tuple[str, ...] = ("CDN-Cache-Control",)


def judge(
    status: int,
    headers: CIMultiDict[str],
    request_time: float,
    response_time: float,
    heuristics: Heuristics,
) -> Facts:
    cc = directives_of(headers, TARGETED)
    date = single_date(headers.getall("Date", []), response_time)
    date_value = date if date is not None else response_time
    # §4.2.3, the age it arrived with.
    apparent_age = max(0.0, response_time - date_value)
    age_value = parse_age(headers.getall("Age", []))
    corrected_age_value = age_value + (response_time - request_time)
    initial_age = max(apparent_age, corrected_age_value)
    last_modified = _one(headers, "Last-Modified")
    return Facts(
        lifetime=_lifetime(
            status, headers, cc, date_value, last_modified, response_time, heuristics
        ),
        initial_age=initial_age,
        no_cache="no-cache" in cc and not cc["no-cache"],
        no_stale=any(d in cc for d in ("must-revalidate", "proxy-revalidate", "s-maxage")),
        stale_while_revalidate=float(delta_seconds(cc.get("stale-while-revalidate")) or 0),
        stale_if_error=float(delta_seconds(cc.get("stale-if-error")) or 0),
        etag=_one(headers, "ETag"),
        last_modified=last_modified,
        hidden=_field_names(cc.get("no-cache")) + _field_names(cc.get("private")),
    )


def _lifetime(
    status: int,
    headers: CIMultiDict[str],
    cc: Directives,
    date_value: float,
    last_modified: str | None,
    now: float,
    heuristics: Heuristics,
) -> float:
    """§4.2.1: s-maxage, else max-age, else Expires - Date, else a heuristic (§4.2.2).
    An explicit value that cannot be read makes the response stale: 0."""
    for name in ("s-maxage", "max-age"):
        if name in cc:
            return float(delta_seconds(cc[name]) or 0)
    if "Expires" in headers:
        expires = single_date(headers.getall("Expires"), now)
        return max(0.0, expires - date_value) if expires is not None else 0.0
    if status not in HEURISTIC_STATUSES and "public" not in cc:
        return 0.0
    modified = single_date([last_modified], now) if last_modified is not None else None
    if modified is not None and modified < date_value:
        return min(heuristics.max_lifetime, (date_value - modified) * heuristics.fraction)
    return heuristics.default_ttl


def storable(status: int, headers: CIMultiDict[str], authorized: bool) -> str | None:
    """Why this response to a GET may not be stored (§3), or None when it may."""
    if status < 200 or status in (206, 304):
        return "status"
    cc = directives_of(headers, TARGETED)
    if "must-understand" in cc:
        if status not in UNDERSTOOD:
            return "must-understand"
    elif "no-store" in cc:
        return "no-store"
    if "private" in cc and not cc["private"]:
        return "private"
    if authorized and not any(d in cc for d in ("public", "s-maxage", "must-revalidate")):
        return "authorization"
    if "*" in vary_names(headers):
        return "vary-star"
    explicit = any(d in cc for d in ("public", "max-age", "s-maxage")) or "Expires" in headers
    if not explicit and status not in HEURISTIC_STATUSES:
        return "no-freshness"
    return None


# --- Vary (§4.1) -----------------------------------------------------------------------------


def vary_names(headers: Mapping[str, str] | CIMultiDict[str]) -> tuple[str, ...]:
    names: list[str] = []
    for line in _getall(headers, "Vary"):
        names += [n.strip().lower() for n in line.split(",") if n.strip()]
    return tuple(dict.fromkeys(names))


_SPACE = re.compile(r"\s+")
_ORDERLESS = frozenset({"accept-language", "accept-encoding"})


def normalise(name: str, request_headers: Mapping[str, str]) -> str | None:
    """A selecting field's value as compared (§4.1 allows normalising): every line
    combined, whitespace removed; for Accept-Language and Accept-Encoding also case and
    order ignored. None: the request did not send it (which only matches absence)."""
    lines = _getall(request_headers, name)
    if not lines:
        return None
    members = [_SPACE.sub("", m) for m in ",".join(lines).split(",")]
    members = [m for m in members if m]
    if name in _ORDERLESS:
        members = sorted(m.lower() for m in members)
    return ",".join(members)


def selecting(
    headers: CIMultiDict[str], request_headers: Mapping[str, str]
) -> tuple[tuple[str, str | None], ...]:
    """The request's values of the fields the response varies on, normalised."""
    return tuple((name, normalise(name, request_headers)) for name in vary_names(headers))


def _getall(headers: Mapping[str, str] | CIMultiDict[str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def _one(headers: CIMultiDict[str], name: str) -> str | None:
    values = headers.getall(name, [])
    return values[0] if values else None


def _field_names(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(n.strip().lower() for n in value.split(",") if n.strip())
