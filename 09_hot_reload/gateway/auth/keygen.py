"""`python -m gateway keygen [--consumer ID]`: a new API key, and the line for gateway.toml.

The key is printed once and kept nowhere: the gateway stores only its hash (apikeys.py).
Give it to the consumer over a channel you trust, paste the line into that consumer's
`api_keys` list, and restart the gateway.

`keygen --import [--id NAME]` takes a key made elsewhere (another gateway's) on stdin, so
that it is in no shell history, and prints its line (`imported = true`): clients keep the
key they have.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.text import Text

from .apikeys import importable_problem, key_hash, new_key


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway keygen", description=__doc__.partition("\n")[0]
    )
    parser.add_argument("--consumer", default="CONSUMER", help="the consumer's id, for the hint")
    parser.add_argument(
        "--import",
        dest="imported",
        action="store_true",
        help="read an existing key on stdin and print its line",
    )
    parser.add_argument("--id", default="imported-1", help="with --import: a name for the key")
    args = parser.parse_args(argv)
    out = Console(highlight=False, soft_wrap=True)
    if args.imported:
        key = sys.stdin.readline().strip()
        problem = importable_problem(key)
        if problem is not None:
            Console(stderr=True, highlight=False).print(f"[red]keygen --import:[/] {problem}")
            return 2
        line = f'{{ id = "{args.id}", hash = "{key_hash(key)}", imported = true }}'
        out.print(Text(f'gateway.toml, in [[consumers]] id = "{args.consumer}":', "bold"))
        out.print(Text(f"api_keys = [{line}]"))
        return 0
    made = new_key()
    out.print(Text.assemble(("key:  ", "bold"), made.key))
    out.print(Text("the gateway keeps only its hash; this is the one time it is shown", "dim"))
    out.print()
    out.print(Text(f'gateway.toml, in [[consumers]] id = "{args.consumer}":', "bold"))
    out.print(Text(f"api_keys = [{made.config_line()}]"))
    out.print(
        Text("(a consumer may hold several keys: add the new one, retire the old one later)", "dim")
    )
    return 0
