"""API keys: what one looks like, how it is stored, and how a presented one is checked.

    gwk_k7f3a9c2_Jd0x...43 characters...     (printed once by `python -m gateway keygen`)
    ^^^ ^^^^^^^^ ^^^^^^
    |   key id   secret: 32 random bytes, base64url
    prefix: says what it is (secret scanners, and a human, recognise it)

gateway.toml keeps only the key id and a SHA-256 of the whole key:

    api_keys = [{ id = "k7f3a9c2", hash = "sha256:5d41..." }]

so a leaked config file (or a backup, or a screenshot of the admin listener) leaks no
key. SHA-256 and not bcrypt or Argon2: those are slow on purpose, to protect passwords a
human chose from guessing; a key of 256 random bits cannot be guessed, and a slow hash
would cost milliseconds on every request (GitHub and Stripe store their tokens the same
way). The key id is public: it finds the one stored hash to compare with (no scan over
every key, nothing that varies with how many keys exist), it names the key in the log
and upstream (X-Credential-Identifier) without revealing it, and it is how a key is
revoked. The comparison is `hmac.compare_digest`, in constant time.

Rotation without downtime: give the consumer a second key, let its clients move to it,
then delete the old line. A consumer may hold any number of keys at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "gwk_"
KEY_ID = re.compile(r"[a-z0-9]{8}")
KEY = re.compile(r"gwk_([a-z0-9]{8})_[A-Za-z0-9_\-]{43}")
HASH = re.compile(r"sha256:[0-9a-f]{64}")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: str
    key_id: str
    hash: str

    def config_line(self) -> str:
        """What to paste into a consumer's `api_keys` list in gateway.toml."""
        return f'{{ id = "{self.key_id}", hash = "{self.hash}" }}'


def new_key() -> NewKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key, key_id, key_hash(key))


class KeyRing:
    """Every consumer's stored key hashes, by key id."""

    def __init__(self, hashes: dict[str, tuple[str, str]]) -> None:
        # key id -> (sha256 digest of the key, the consumer's id)
        self._by_id = {key_id: (bytes.fromhex(h.removeprefix("sha256:")), consumer)
                       for key_id, (h, consumer) in hashes.items()}  # fmt: skip

    def __len__(self) -> int:
        return len(self._by_id)

    def check(self, presented: str) -> tuple[str, str] | None:
        """(consumer id, key id) for a valid key; None for anything else.

        A key that is a prefix of a valid one, or a valid one with a character changed,
        has another hash; a string that is not a key at all never gets as far as hashing.
        """
        match = KEY.fullmatch(presented)
        if match is None:
            return None
        stored = self._by_id.get(match.group(1))
        if stored is None:
            return None
        digest, consumer = stored
        if not hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), digest):
            return None
        return consumer, match.group(1)
