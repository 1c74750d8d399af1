"""The merchant file: which merchant each account belongs to, in one place.

payment-intake reads each merchant's payment policy from it, the status-projector the
hashes of each merchant's read-API keys. Both load it here, so an account's merchant
is decided once.

```
default: full-payment-portal             # payment-intake: policy of unlisted accounts;
                                         # without it their pay commands are refused
merchants:
  acme-us:
    policy: full-payment-portal          # payment-intake
    accounts: [C100, C200]
    api_keys:                            # status-projector: SHA-256 of each live key,
      - sha256:9f86d081884c7d65...       # two during a rotation
    remittance:                          # check / ach / wire details (contracts.remittance)
      check: {payee: Acme Corp, mailing_address: {...}}
    provider: stripe                     # sandbox (the default) or stripe: both services
    stripe:                              # docs/providers.md; never a key in the clear here
      credentials: env:ACME              # STRIPE_ACME_SECRET_KEY, ..._WEBHOOK_SECRETS, ..._ACCOUNT
      return_url: https://portal.acme.example/invoices
```

Both services read the file again when it changes (`WatchedMerchantFile`): adding an
account to a merchant needs no restart.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from payments_contracts.remittance import RemittanceDetails

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class MerchantEntry:
    name: str
    accounts: frozenset[str]
    api_keys: tuple[str, ...]
    remittance: RemittanceDetails | None = None
    provider: str = "sandbox"
    stripe: Mapping[str, Any] | None = None


PROVIDERS = ("sandbox", "stripe")
# What a Stripe credential looks like: kept out of the merchant file, which is
# configuration people read, diff and paste into tickets.
_CREDENTIAL_PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_")


def _clear_credentials(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(_CREDENTIAL_PREFIXES)
    if isinstance(value, Mapping):
        return any(_clear_credentials(v) for v in value.values())
    if isinstance(value, list):
        return any(_clear_credentials(v) for v in value)
    return False


@dataclass(frozen=True)
class MerchantFile:
    raw: Mapping[str, Any]
    merchants: tuple[MerchantEntry, ...]

    def merchant_of(self, account_id: str) -> str | None:
        for merchant in self.merchants:
            if account_id in merchant.accounts:
                return merchant.name
        return None

    def provider_of(self, account_id: str) -> str:
        """The provider that takes the account's money (an unlisted account: the sandbox's)."""
        for merchant in self.merchants:
            if account_id in merchant.accounts:
                return merchant.provider
        return "sandbox"

    def entry(self, name: str) -> MerchantEntry | None:
        return next((m for m in self.merchants if m.name == name), None)


def parse_merchant_file(config: Mapping[str, Any]) -> MerchantFile:
    merchants = []
    owner: dict[str, str] = {}
    for name, spec in (config.get("merchants") or {}).items():
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"merchant {name}: expected a mapping")
        accounts = frozenset(str(a) for a in spec.get("accounts") or [])
        for account in accounts:
            if account in owner:
                raise ValueError(f"account {account} belongs to two merchants: {owner[account]}, {name}")
            owner[account] = str(name)
        keys = spec.get("api_keys") or []
        if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"merchant {name}: api_keys is a list of 'sha256:<hex>' strings")
        remittance = spec.get("remittance")
        try:
            details = None if remittance is None else RemittanceDetails.model_validate(remittance)
        except ValueError as exc:
            raise ValueError(f"merchant {name}: remittance: {exc}") from None
        provider = str(spec.get("provider") or "sandbox")
        if provider not in PROVIDERS:
            raise ValueError(f"merchant {name}: provider is one of {list(PROVIDERS)}, not {provider!r}")
        stripe = spec.get("stripe")
        if stripe is not None and not isinstance(stripe, Mapping):
            raise ValueError(f"merchant {name}: stripe is a mapping")
        if _clear_credentials(spec):
            raise ValueError(
                f"merchant {name}: a Stripe key or signing secret in the merchant file; name where it"
                " is instead (stripe.credentials: env:<NAME> or file:<path>, docs/providers.md)"
            )
        merchants.append(MerchantEntry(str(name), accounts, tuple(keys), details, provider, stripe))
    return MerchantFile(raw=config, merchants=tuple(merchants))


def load_merchant_file(path: Path) -> MerchantFile:
    """A JSON (`.json`) or YAML merchant file."""
    text = Path(path).read_text()
    config: Any = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top")
    return parse_merchant_file(config or {})


class WatchedMerchantFile(Generic[T]):
    """What a service builds from the merchant file, built again when the file changes.

    The file's mtime and size are looked at most every `interval_s`; a file that no
    longer parses keeps the last good build (and is logged), so a typo never takes a
    running service down.
    """

    def __init__(self, path: Path, build: Callable[[MerchantFile], T], interval_s: float = 1.0) -> None:
        self._path = Path(path)
        self._build = build
        self._interval_s = interval_s
        self._stamp = self._stat()
        self._value = build(load_merchant_file(self._path))
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int]:
        info = os.stat(self._path)
        return info.st_mtime_ns, info.st_size

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked < self._interval_s:
            return self._value
        self._checked = now
        try:
            stamp = self._stat()
            if stamp != self._stamp:
                self._value = self._build(load_merchant_file(self._path))
                self._stamp = stamp
                log.info("merchant file reloaded", extra={"path": str(self._path)})
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error("merchant file not reloaded; keeping the last good one", extra={"error": str(exc)})
        return self._value
