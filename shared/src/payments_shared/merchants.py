"""The merchant file: which merchant each account belongs to, in one place.

payment-intake reads each merchant's payment policy from it, the status-projector the
hashes of each merchant's read-API keys. Both load it here, so an account's merchant
is decided once.

```
default: full-payment-portal             # payment-intake: policy of unlisted accounts
merchants:
  acme-us:
    policy: full-payment-portal          # payment-intake
    accounts: [C100, C200]
    api_keys:                            # status-projector: SHA-256 of each live key,
      - sha256:9f86d081884c7d65...       # two during a rotation
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class MerchantEntry:
    name: str
    accounts: frozenset[str]
    api_keys: tuple[str, ...]


@dataclass(frozen=True)
class MerchantFile:
    raw: Mapping[str, Any]
    merchants: tuple[MerchantEntry, ...]

    def merchant_of(self, account_id: str) -> str | None:
        for merchant in self.merchants:
            if account_id in merchant.accounts:
                return merchant.name
        return None


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
        merchants.append(MerchantEntry(str(name), accounts, tuple(keys)))
    return MerchantFile(raw=config, merchants=tuple(merchants))


def load_merchant_file(path: Path) -> MerchantFile:
    """A JSON (`.json`) or YAML merchant file."""
    text = Path(path).read_text()
    config: Any = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top")
    return parse_merchant_file(config or {})
