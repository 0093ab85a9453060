"""Deterministic bytes for `/bytes/{n}`: the same (n, seed) gives the same bytes everywhere.

A test can check a 1 GiB download through a proxy with one hash, and neither the backend
nor the test ever holds more than one piece: both sides produce or consume the pattern
64 KiB at a time. `pattern_sha256` is the expected hash, computed the same way.

The bytes repeat with a period of 65,521 (the largest prime below 64 KiB), not 65,536.
Pieces are 64 KiB, so every piece starts at a different offset of the period and no two
consecutive pieces are equal: a proxy that duplicates, drops or reorders one piece
changes the hash. With a 64 KiB period every full piece would be identical and such a
bug would pass unnoticed.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator

PIECE_SIZE = 64 * 1024
PERIOD = 65_521


@functools.lru_cache(maxsize=8)
def _cycle(seed: int) -> bytes:
    """One period of pseudo-random bytes, repeated so any piece is a single slice."""
    period = random.Random(seed).randbytes(PERIOD)  # Mersenne Twister: stable across versions
    return (period * 3)[: PERIOD + PIECE_SIZE]


def pattern(n: int, seed: int = 0) -> Iterator[bytes]:
    """Yield exactly `n` bytes of the pattern for `seed`, in pieces of at most 64 KiB."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    cycle = _cycle(seed)
    offset = 0
    remaining = n
    while remaining > 0:
        size = min(PIECE_SIZE, remaining)
        yield cycle[offset : offset + size]
        offset = (offset + size) % PERIOD
        remaining -= size


def pattern_sha256(n: int, seed: int = 0) -> str:
    """Hex SHA-256 of `pattern(n, seed)`: what a client should see from `/bytes/{n}`."""
    digest = hashlib.sha256()
    for piece in pattern(n, seed):
        digest.update(piece)
    return digest.hexdigest()
