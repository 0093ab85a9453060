"""Reading what the origin and the client said: Cache-Control, CDN-Cache-Control, Pragma,
Age and HTTP-dates, each the way RFC 9111 (and RFC 9213, RFC 9110) asks a cache to.

Every parser here is strict where being lenient would keep a response the origin meant
to expire (an `Expires` that is not a valid HTTP-date means "already expired", §5.3; a
`max-age` that is not all digits makes the response stale, §4.2.1) and lenient where
being strict would only lose a cache hit (a quoted `max-age="60"`, directive names in
any case). The conformance suite (make cache-conformance) checks most of these corners.
"""

from __future__ import annotations

import calendar
import re
import time

from gateway.cachecontrol import MAX_DELTA, Directives, delta_seconds, parse_directives

# Cache-Control's syntax and delta-seconds live in gateway/cachecontrol.py, beside the cache
# and not in it: 06's JWKS fetcher reads a max-age too, and a later concern must not import
# the cache's package for it (dependencies between concerns run one way).
__all__ = ["MAX_DELTA", "Directives", "delta_seconds", "parse_directives"]


# --- CDN-Cache-Control (RFC 9213): a Structured Fields dictionary (RFC 8941) ----------------

_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_INTEGER = re.compile(r"-?[0-9]{1,15}")
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')


def parse_targeted(lines: list[str]) -> Directives | None:
    """A targeted field such as CDN-Cache-Control, or None when it is absent or is not a
    valid Structured Fields dictionary (RFC 9213 §2.1: then it is ignored, as if absent).

    Only what cache directives use is accepted: keys in lower case, values that are
    integers, tokens, strings or booleans, parameters ignored. A `max-age` must be an
    integer here (`max-age="60"` is the wrong type: the field is invalid).
    """
    if not lines:
        return None
    text = ",".join(lines).strip(" \t")
    found: Directives = {}
    i, n = 0, len(text)
    while i < n:
        key = _SF_KEY.match(text, i)
        if key is None:
            return None
        name, i = key.group(), key.end()
        value: str | None = None
        integer = False
        if i < n and text[i] == "=":
            i += 1
            for pattern in (_SF_INTEGER, _SF_STRING, _SF_TOKEN):
                item = pattern.match(text, i)
                if item is not None:
                    value = item.group(1) if pattern is _SF_STRING else item.group()
                    if pattern is _SF_STRING:
                        value = value.replace('\\"', '"').replace("\\\\", "\\")
                    i = item.end()
                    break
            else:
                if text.startswith(("?0", "?1"), i):
                    value, i = text[i + 1], i + 2
                else:
                    return None
            integer = pattern is _SF_INTEGER
            if integer and text[i : i + 1] == ".":
                return None  # a decimal: not what any cache directive takes
        while i < n and text[i] == ";":  # parameters: read over them
            param = _SF_KEY.match(text, i + 1)
            if param is None:
                return None
            i = param.end()
            if i < n and text[i] == "=":
                item = _SF_INTEGER.match(text, i + 1) or _SF_TOKEN.match(text, i + 1)
                item = item or _SF_STRING.match(text, i + 1)
                if item is None:
                    return None
                i = item.end()
        if name in ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"):
            if not integer:
                return None  # the wrong type for a delta-seconds (a string, a token)
        found.setdefault(name, value)
        while i < n and text[i] in " \t":
            i += 1
        if i == n:
            break
        if text[i] != ",":
            return None
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i == n:
            return None  # a trailing comma
    return found


# --- Age (RFC 9111 §5.1) ------------------------------------------------------------------


def parse_age(lines: list[str]) -> int:
    """The Age a response arrived with, in seconds; 0 when there is none or it is invalid.

    Only the first value counts (`Age: 0, 7200` is 0; a second line is ignored). A value
    that is not a non-negative integer is ignored, as §5.1 asks; a parameter after it
    (`7200;foo=bar`) is read over, keeping the number.
    """
    if not lines:
        return 0
    first = lines[0].split(",", 1)[0].split(";", 1)[0].strip()
    if not first.isascii() or not first.isdigit():
        return 0
    return min(int(first), MAX_DELTA)


# --- HTTP-date (RFC 9110 §5.6.7) ------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DAY = "(mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = "(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = "(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF = re.compile(rf"{_DAY}, (\d\d) {_MONTH} (\d{{4}}) {_TIME} gmt", re.I)
_RFC850 = re.compile(rf"{_LONG_DAY}, (\d\d)-{_MONTH}-(\d\d) {_TIME} gmt", re.I)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ( \d|\d\d) {_TIME} (\d{{4}})", re.I)


def parse_http_date(value: str, now: float) -> float | None:
    """Seconds since the epoch, or None when `value` is not an HTTP-date.

    The three forms a recipient must accept, and nothing else: `UTC` instead of `GMT`, a
    missing comma, a one-digit hour or doubled spaces make it invalid (an invalid
    Expires is a date in the past). Names are compared without case (a cache that
    rejected `mon` for `Mon` would only lose hits). A two-digit year (RFC 850) more than
    50 years ahead is in the past century (§5.6.7).
    """
    value = value.strip(" \t")
    if m := _IMF.fullmatch(value):
        _, day, month, year, hh, mm, ss = m.groups()
    elif m := _RFC850.fullmatch(value):
        _, day, month, yy, hh, mm, ss = m.groups()
        this_year = time.gmtime(now).tm_year
        year = str(this_year - this_year % 100 + int(yy))
        if int(year) > this_year + 50:
            year = str(int(year) - 100)
    elif m := _ASCTIME.fullmatch(value):
        _, month, day, hh, mm, ss, year = m.groups()
    else:
        return None
    parts = int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss)
    if not (1 <= parts[2] <= 31 and parts[3] < 24 and parts[4] < 60 and parts[5] < 61):
        return None
    return float(calendar.timegm((*parts, 0, 0, 0)))


def single_date(lines: list[str], now: float) -> float | None:
    """A date field that must appear once (Date, Expires, Last-Modified): None when it is
    absent, invalid or given twice with different values (§4.2.1: then it is unusable)."""
    if not lines or any(line != lines[0] for line in lines[1:]):
        return None
    return parse_http_date(lines[0], now)
