"""Who may read which account: each merchant's portal backend and its API keys.

A key is a random secret the merchant's backend sends as `Authorization: Bearer <key>`.
Only its SHA-256 is configured (a key has 256 random bits, so a fast hash is enough: no
dictionary to slow down), and a presented key's digest is compared with every
configured one in constant time. Each merchant may have several live keys, so a key
is rotated by adding the new one, switching the backend, then removing the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
KEY_PREFIX = "pk_"


@dataclass(frozen=True)
class Tenant:
    merchant: str
    accounts: frozenset[str]

    def can_read(self, account_id: str) -> bool:
        return account_id in self.accounts


@dataclass(frozen=True)
class MerchantKeys:
    merchant: str
    accounts: frozenset[str]
    digests: tuple[str, ...]


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_of(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()


class PortalKeys:
    """The keys of every merchant; `tenant_for` answers who presented a key, if anyone."""

    def __init__(self, merchants: Iterable[MerchantKeys]) -> None:
        self._entries: list[tuple[bytes, Tenant]] = []
        for merchant in merchants:
            tenant = Tenant(merchant.merchant, merchant.accounts)
            for digest in merchant.digests:
                if not _DIGEST.match(digest):
                    raise ValueError(
                        f"merchant {merchant.merchant}: api key {digest[:12]}... is not sha256:<hex>"
                    )
                self._entries.append((digest.encode(), tenant))

    def __len__(self) -> int:
        return len(self._entries)

    def tenant_for(self, presented: str) -> Tenant | None:
        wanted = digest_of(presented).encode()
        found = None
        for digest, tenant in self._entries:  # no early exit: every key costs the same
            if hmac.compare_digest(digest, wanted):
                found = tenant
        return found
