"""Request mixes the benches share."""

from __future__ import annotations

import random


def zipf_keys(rng: random.Random, count: int, n_keys: int = 1000, s: float = 1.1) -> list[str]:
    """`count` keys drawn from `n_keys` with Zipf weights (rank r: 1 / r^s): a few hot
    keys and a long tail, the shape of most real traffic (users, URLs, products)."""
    weights = [1 / (rank + 1) ** s for rank in range(n_keys)]
    return rng.choices([f"key-{i}" for i in range(n_keys)], weights=weights, k=count)
