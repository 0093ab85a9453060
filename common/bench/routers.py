"""trie-bench's route tables and its two baselines: stage 01's dict scan and a regex list.

The trie itself is the stage's own `gateway.trie` (common/bench/trie_bench.py imports it
from the stage folder it runs in); what it is compared with lives here, so the bench
measures the real router and not a copy of it.

Routes have a realistic shape, generated deterministically: /api/v{1..3}/<resource> with
`search`, `{id}`, and four sub-resources with `{sub_id}` (11 routes per resource and
version; static and parameter segments mixed, `search` beside `{id}`). Hits are random
routes with random ids; misses are an unknown resource, an unknown sub-resource, and two
segments too many (after `.../search`, that one makes the trie come back to try `{id}`).
"""

from __future__ import annotations

import random
import re

RESOURCES = (
    "users",
    "orders",
    "products",
    "invoices",
    "carts",
    "reviews",
    "stores",
    "payments",
    "shipments",
    "coupons",
)
SUBS = ("items", "notes", "tags", "history")


def route_patterns(n: int) -> list[str]:
    out: list[str] = []
    k = 0
    while len(out) < n:
        name = RESOURCES[k % len(RESOURCES)] + (str(k // len(RESOURCES)) if k >= 10 else "")
        for version in (1, 2, 3):
            base = f"/api/v{version}/{name}"
            out += [base, f"{base}/search", f"{base}/{{id}}"]
            for sub in SUBS:
                out += [f"{base}/{{id}}/{sub}", f"{base}/{{id}}/{sub}/{{sub_id}}"]
        k += 1
    return out[:n]


def workload(patterns: list[str], count: int) -> tuple[list[str], list[str]]:
    rng = random.Random(2)  # the same paths on every run

    def concrete(pattern: str) -> str:
        return re.sub(r"\{\w+\}", lambda _: str(rng.randrange(1, 10**6)), pattern)

    hits = [concrete(rng.choice(patterns)) for _ in range(count)]
    misses = []
    for k in range(count):
        base = concrete(rng.choice(patterns))
        version = base.split("/")[2]
        kinds = (f"/api/{version}/nosuch{k}/{k}", f"{base}/archive/{k}", f"{base}/x/y")
        misses.append(kinds[k % 3])
    return hits, misses


# --- the baselines ---------------------------------------------------------------------------


class DictScan:
    """01_pass_through/gateway/routing.py's Router.match, verbatim but for the method arg.

    Every lookup visits every route for the longest prefix on a segment boundary. It reads
    the same N route strings as prefixes (it cannot capture parameters, so its answers
    differ from the others'); its cost does not depend on the answer.
    """

    def __init__(self, patterns: list[str]) -> None:
        self._routes = {p: p for p in patterns}

    def match(self, target: str, method: str) -> str | None:
        best: str | None = None
        best_len = -1
        for prefix, route in self._routes.items():
            n = len(prefix)
            if (
                n > best_len
                and target.startswith(prefix)
                and (n == len(target) or prefix == "/" or target[n] in "/?")
            ):
                best, best_len = route, n
        return best


class RegexList:
    """Starlette's and Django's way: each pattern becomes one anchored regex (Starlette's
    `compile_path`), tried in declaration order, first match wins. A hit costs the routes
    declared before it; a miss costs them all."""

    def __init__(self, patterns: list[str]) -> None:
        self._routes = [(re.compile(self._regex(p)), p) for p in patterns]

    @staticmethod
    def _regex(pattern: str) -> str:
        out, last = "^", 0
        for field in re.finditer(r"\{(\w+)(:path)?\}", pattern):
            out += re.escape(pattern[last : field.start()])
            out += f"(?P<{field.group(1)}>{'.*' if field.group(2) else '[^/]+'})"
            last = field.end()
        return out + re.escape(pattern[last:]) + "$"

    def match(self, path: str, method: str) -> tuple[str, dict[str, str]] | None:
        for regex, route in self._routes:
            found = regex.match(path)
            if found:
                return route, found.groupdict()
        return None
