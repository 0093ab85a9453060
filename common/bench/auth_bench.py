"""auth-bench: what stage 06's authentication costs per request, beside stage 05 (no auth).

    make auth-bench                   every row (about 1.5 minutes)
    make auth-bench ARGS=--quick      shorter runs
    python -m common.bench.auth_bench --markdown      for ARCHITECTURE.md "Measured"

Every gateway sits in front of the bench's fast origin (common/bench/origin.py): the
dummy FastAPI backends cost ~120 µs a request and would hide the gateway's own cost. The
cache is off in every gateway (the origin's /small is not cacheable anyway): this is about
the auth step alone. Tokens come from the identity provider (common/idp), whose JWKS the
gateway fetched at start-up; HS256 tokens are checked with an inline secret.

Rows: stage 05 (no auth at all); stage 06 on a public route (the spoofed-header scan
only); an API key (SHA-256 + constant-time compare); a bearer token per algorithm, with
the verified-token cache (a hit: one SHA-256 of the token and a dictionary lookup) and
without it (`verified_cache = 0`: parse, verify the signature, check the claims, every
time). 16 connections, alternating rounds, median. Everything on 127.0.0.1, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import statistics
import sys
import tempfile
import urllib.request
from functools import partial
from pathlib import Path

from rich.console import Console

from common.bench import cpu, load
from common.bench.compare import compare_main
from common.bench.eventloop import loop_factory
from common.bench.lb_report import Section
from common.bench.run import pin_this_process
from common.idp.keys import new_secret
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import Proc, spawn
from common.testing.specs import (
    AuthSpec,
    CacheSpec,
    ConsumerSpec,
    GatewaySpec,
    IssuerSpec,
    RouteAuthSpec,
    RouteSpec,
)

KEY = "gwk_bench001_" + "k" * 43
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")


def token(idp: Proc, alg: str) -> str:
    body = {"sub": "bench", "alg": alg, "expires_in": 3600}
    if alg.startswith("HS"):
        body["iss"] = idp.url + "/internal"
    request = urllib.request.Request(idp.url + "/token", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["access_token"])


def spec(origin: Proc, idp: Proc, secret: str, verified_cache: int) -> GatewaySpec:
    auth = AuthSpec(
        issuers=(
            IssuerSpec(
                "demo", idp.url, ("RS256", "ES256", "EdDSA"), jwks_url=idp.url + "/jwks.json"
            ),
            IssuerSpec("internal", idp.url + "/internal", ("HS256",), secret=secret),
        ),  # fmt: skip
        consumers=(
            ConsumerSpec(
                "bench",
                api_keys=(("bench001", "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()),),
            ),
        ),  # fmt: skip
        verified_cache=verified_cache,
    )
    routes = [RouteSpec("/open", origin.url, strip_prefix=True)] + [
        RouteSpec(f"/{mode}", origin.url, strip_prefix=True, auth=RouteAuthSpec(mode=mode))
        for mode in ("key", "jwt")
    ]
    return GatewaySpec(routes, cache=CacheSpec(enabled=False), auth=auth)


def run_all(before: Path, after: Path, seconds: float, rounds: int, console: Console) -> Section:
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp, contextlib.ExitStack() as stack:
        where = Path(tmp)

        def started(proc: Proc) -> Proc:
            stack.callback(proc.stop)
            return proc

        secret = new_secret()
        origin = started(spawn("origin", [sys.executable, "-m", "common.bench.origin"],
                               log_dir=where))  # fmt: skip
        idp = started(spawn("idp", [sys.executable, "-m", "common.idp", "--secret", secret],
                            log_dir=where))  # fmt: skip
        base = started(start_gateway(before, stage_render(before)(GatewaySpec(
            [RouteSpec("/open", origin.url, strip_prefix=True)], cache=CacheSpec(enabled=False))),
            where, "--no-access-log"))  # fmt: skip
        render = stage_render(after)
        cached = started(start_gateway(after, render(spec(origin, idp, secret, 10_000)), where,
                                       "--no-access-log"))  # fmt: skip
        uncached = started(start_gateway(after, render(spec(origin, idp, secret, 0)), where,
                                         "--no-access-log"))  # fmt: skip
        tokens = {alg: token(idp, alg) for alg in ALGORITHMS}
        b, a = before.name[:2], after.name[:2]  # "05", "06": short row labels
        runs: dict[str, tuple[Proc, str, tuple[tuple[str, str], ...]]] = {
            f"{b}: no auth": (base, "/open/small", ()),
            f"{a}: public route": (cached, "/open/small", ()),
            f"{a}: API key": (cached, "/key/small", (("X-API-Key", KEY),)),
        }
        for alg, value in tokens.items():
            runs[f"{a}: {alg}, verified-token cache"] = (
                cached, "/jwt/small", (("Authorization", f"Bearer {value}"),))  # fmt: skip
        for alg, value in tokens.items():
            runs[f"{a}: {alg}, no cache"] = (
                uncached, "/jwt/small", (("Authorization", f"Bearer {value}"),))  # fmt: skip
        pinning = pin_this_process()
        for proc in (base, cached, uncached):
            if pinning.proxy_cores is not None:
                cpu.pin_tree(proc.pid, pinning.proxy_cores)
        results: dict[str, list[load.LoadResult]] = {name: [] for name in runs}
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for round_no in range(rounds):
                names = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
                for name in names:
                    proc, path, headers = runs[name]
                    console.log(f"round {round_no + 1}/{rounds}: {name}")
                    results[name].append(runner.run(load.run_builtin(
                        proc.url + path, connections=16, duration=seconds, warmup=0.3,
                        meter=partial(cpu.tree_cpu_us, proc.pid), headers=headers)))  # fmt: skip
    out = Section(
        f"CPU per request, {before.name} vs {after.name}: 16 connections, {rounds} rounds of"
        f" {seconds:g} s, median",
        ["gateway, credential", "rps", "p50", "p99", "errors", "CPU µs/request", "vs no auth"],
    )
    # the type ignore below: meter_delta is None only for runs without a meter; these have one
    per = {name: statistics.median(r.meter_delta / r.requests for r in rs)  # type: ignore[operator]
           for name, rs in results.items()}  # fmt: skip
    baseline = per[f"{b}: no auth"]
    for name, rs in results.items():
        out.rows.append(
            [name, f"{statistics.median(r.rps for r in rs):,.0f}",
             f"{statistics.median(r.p50_ms for r in rs):.2f} ms",
             f"{statistics.median(r.p99_ms for r in rs):.2f} ms",
             str(sum(r.errors for r in rs)), f"{per[name]:.0f}",
             "-" if name.endswith("no auth") else f"{per[name] - baseline:+.0f} µs"]
        )  # fmt: skip
    errors = sum(r.errors for rs in results.values() for r in rs)
    out.verdicts.append((f"every request answered 200 ({errors} errors)", errors == 0))
    rs256 = (per[f"{a}: RS256, no cache"], per[f"{a}: RS256, verified-token cache"])
    out.verdicts.append(
        (f"the verified-token cache turns RS256's {rs256[0] - baseline:+.0f} µs into"
         f" {rs256[1] - baseline:+.0f} µs", None)
    )  # fmt: skip
    out.notes.append(pinning.note)
    return out


def main(argv: list[str] | None = None) -> int:
    def run(old: Path, new: Path, quick: bool, console: Console) -> list[Section]:
        return [run_all(old, new, 1.0 if quick else 2.5, 3, console)]

    return compare_main(argv, name="auth-bench", what="auth", before="05", after="06", run=run)


if __name__ == "__main__":
    sys.exit(main())
