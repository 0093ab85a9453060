"""`python -m gateway keygen [--consumer ID]`: a new API key, and the line for gateway.toml.

The key is printed once and kept nowhere: the gateway stores only its hash (apikeys.py).
Give it to the consumer over a channel you trust, paste the line into that consumer's
`api_keys` list, and restart (or reload) the gateway.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.text import Text

from .apikeys import new_key


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway keygen", description=__doc__.partition("\n")[0]
    )
    parser.add_argument("--consumer", default="CONSUMER", help="the consumer's id, for the hint")
    args = parser.parse_args(argv)
    made = new_key()
    out = Console(highlight=False, soft_wrap=True)
    out.print(Text.assemble(("key:  ", "bold"), made.key))
    out.print(Text("the gateway keeps only its hash; this is the one time it is shown", "dim"))
    out.print()
    out.print(Text(f'gateway.toml, in [[consumers]] id = "{args.consumer}":', "bold"))
    out.print(Text(f"api_keys = [{made.config_line()}]"))
    out.print(Text("(a consumer may hold several keys: add the new one, retire the old one later)",
                   "dim"))  # fmt: skip
    return 0
