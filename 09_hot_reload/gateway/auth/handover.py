"""What a reload's new authenticator keeps of the old one (gateway/reload/).

Two caches are worth keeping, and each must not outlive what it was built from:

- an issuer's keys (a JWKS fetched over the network, and the rules about how often to
  fetch it again): kept when the issuer's settings are exactly as they were, fetched
  again when anything about it changed (another URL may serve other keys);
- the verified tokens (a signature check costs 50-250 µs, the cache makes it a dict
  lookup): a token's identity was built from its issuer and from the consumer that owns
  its subject, so it is kept only when both are as they were. A consumer counts as
  changed when its entry changed, appeared or went: a new consumer may now own a subject
  that was nobody's, and the token's identity would be a different one.

Envoy's jwt_authn has no such question: a listener update builds a new filter, and its
token cache starts empty. Keeping what is still true is cheaper for the IdP and for the
first requests after a reload, and no identity survives the change that made it wrong.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .config import ConsumerConfig, IssuerConfig
from .identity import Identity

if TYPE_CHECKING:  # auth.py imports this module
    from .auth import Authenticator

Verified = OrderedDict[bytes, tuple[Identity, str, float]]


async def take_over(new: Authenticator, previous: Authenticator) -> None:
    """The issuers whose settings did not change, with their keys (a new or changed one
    fetches now, as at start-up), the verified tokens still true, the key-fetching
    session, the counts."""
    kept = unchanged_issuers(previous.config.issuers, new.config.issuers)
    new.issuers.update({iss: previous.issuers[iss] for iss in kept})
    new._session = previous._session  # one session for every generation's issuers
    await new.fetch_keys([i for iss, i in new.issuers.items() if iss not in kept])
    changed = changed_consumers(previous.consumers, new.consumers)
    names = {new.issuers[iss].name for iss in kept}
    new.verified = still_verified(previous.verified, names, changed, new.config.verified_cache)
    new.counts, new.by_method = previous.counts, previous.by_method


def unchanged_issuers(before: Iterable[IssuerConfig], after: Iterable[IssuerConfig]) -> set[str]:
    """The `iss` of every issuer whose settings are the same before and after."""
    old = {issuer.issuer: issuer for issuer in before}
    return {issuer.issuer for issuer in after if old.get(issuer.issuer) == issuer}


def changed_consumers(
    before: Mapping[str, ConsumerConfig], after: Mapping[str, ConsumerConfig]
) -> set[str]:
    """The ids and subjects of every consumer whose entry changed, appeared or went."""
    return {
        name
        for id_ in before.keys() | after.keys()
        if before.get(id_) != after.get(id_)
        for consumer in (before.get(id_), after.get(id_))
        if consumer is not None
        for name in (consumer.id, *consumer.subjects)
    }


def still_verified(verified: Verified, issuers: set[str], changed: set[str], most: int) -> Verified:
    """The verified tokens whose issuer (by name) is in `issuers` and whose consumer is
    not in `changed`, the most recently used `most` of them."""
    kept: Verified = OrderedDict()
    for digest, (identity, issuer, until) in verified.items():
        if issuer not in issuers or identity.consumer_id in changed:
            continue
        if f"{issuer}:{identity.subject}" in changed:  # now, or until now, a consumer's
            continue
        kept[digest] = (identity, issuer, until)
    while len(kept) > most:  # its bound may be smaller now
        kept.popitem(last=False)
    return kept
