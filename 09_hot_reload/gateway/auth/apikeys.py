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

Keys made elsewhere. A team moving from another gateway has keys in the wild that do not
look like ours (`probe-key-3f9a7c1e5b2d4680`), and cannot ask every client to change.
Such a key is *imported*: `{ id = "legacy-1", hash = "sha256:...", imported = true }`
(`python -m gateway keygen --import` reads the key on stdin and prints the line). It has
no id inside it, so it is found by its hash: a dict from SHA-256 digest to consumer. That
lookup leaks no timing about the key: what the dict compares is the digest, and learning
a digest's first bytes from timing brings an attacker no closer to a key that produces
it (SHA-256 is preimage resistant). GitHub finds its tokens the same way. An imported key
must be at least MIN_IMPORTED characters of printable ASCII: a short one could be
guessed, whatever the hash. `gwk_` keys stay the kind the gateway makes.
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
# An imported key's id names it in logs and upstream (X-Credential-Identifier); the key's
# own form is free, within bounds.
IMPORTED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
MIN_IMPORTED, MAX_IMPORTED = 16, 256
_PRINTABLE = frozenset(chr(c) for c in range(0x21, 0x7F))
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
    return NewKey(key=key, key_id=key_id, hash=key_hash(key))


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    hash: str  # "sha256:<hex>"
    consumer: str
    imported: bool = False


class KeyRing:
    """Every consumer's stored key hashes: `gwk_` keys by key id, imported ones by hash."""

    def __init__(self, keys: list[StoredKey]) -> None:
        # key id -> (sha256 digest of the key, the consumer's id)
        self._by_id = {k.key_id: (_digest(k.hash), k.consumer) for k in keys if not k.imported}
        # sha256 digest -> (the consumer's id, key id)
        self._imported = {_digest(k.hash): (k.consumer, k.key_id) for k in keys if k.imported}

    def __len__(self) -> int:
        return len(self._by_id) + len(self._imported)

    def check(self, presented: str) -> tuple[str, str] | None:
        """(consumer id, key id) for a valid key; None for anything else (`why` says what).

        A key that is a prefix of a valid one, or a valid one with a character changed,
        has another hash; a string that is no key at all never gets as far as hashing.
        """
        match = KEY.fullmatch(presented)
        if match is not None:
            stored = self._by_id.get(match.group(1))
            if stored is None:
                return None
            digest, consumer = stored
            if not hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), digest):
                return None
            return consumer, match.group(1)
        if self._imported and _importable(presented):
            return self._imported.get(hashlib.sha256(presented.encode()).digest())
        return None

    def why(self, presented: str) -> str:
        """Why `check` refused a key, for the log (never the key itself): the slow path."""
        match = KEY.fullmatch(presented)
        if match is not None:
            if match.group(1) not in self._by_id:
                return f"no gwk_ key with id {match.group(1)!r}"
            return f"gwk_ key {match.group(1)!r}: the secret does not match its hash"
        if presented.startswith(PREFIX):
            return "starts with gwk_ but is not a whole gwk_ key"
        if not _importable(presented):
            return (
                f"neither a gwk_ key nor a possible imported key ({MIN_IMPORTED}-"
                f"{MAX_IMPORTED} printable characters)"
            )
        return "not a gwk_ key, and no imported key has its hash"


def _digest(stored: str) -> bytes:
    return bytes.fromhex(stored.removeprefix("sha256:"))


def _importable(key: str) -> bool:
    return MIN_IMPORTED <= len(key) <= MAX_IMPORTED and _PRINTABLE.issuperset(key)


def importable_problem(key: str) -> str | None:
    """Why a key cannot be imported (keygen --import), or None."""
    if KEY.fullmatch(key):
        return "this is a gwk_ key already: use its id (the 8 characters after gwk_)"
    if not _importable(key):
        return (
            f"an imported key must be {MIN_IMPORTED} to {MAX_IMPORTED} printable ASCII"
            " characters without spaces"
        )
    return None
