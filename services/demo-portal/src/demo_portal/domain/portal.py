"""Which portal each merchant runs: the seed 000 page (full payments, a Pay dialog,
account PAY through the payer portal) or the seed 003 page (PAY SELECTED with amounts,
card or remittance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Style(StrEnum):
    FULL_PAYMENT = "full-payment"  # seed 000
    PAY_SELECTED = "pay-selected"  # seed 003


# payment-intake's policy presets and the portal page that goes with each.
POLICY_STYLES = {"full-payment-portal": Style.FULL_PAYMENT, "partial-multi-portal": Style.PAY_SELECTED}


@dataclass(frozen=True)
class Merchant:
    name: str
    title: str
    style: Style
    accounts: tuple[str, ...]
    api_key: str


@dataclass(frozen=True)
class Portals:
    merchants: tuple[Merchant, ...]

    def merchant_of(self, account_id: str) -> Merchant | None:
        return next((m for m in self.merchants if account_id in m.accounts), None)

    @property
    def accounts(self) -> list[tuple[Merchant, str]]:
        return [(m, a) for m in self.merchants for a in m.accounts]


def sandbox_demo_key(merchant: str) -> str:
    """The read-API key the status-projector accepts for `merchant` with PAYMENTS_SANDBOX=1
    (the same rule as payments_platform.sandbox.demo_api_key, printed by `make run`)."""
    return f"sandbox_key_{merchant}"


TITLES = {Style.FULL_PAYMENT: "Contoso Supply", Style.PAY_SELECTED: "Northwind Labs"}


def portals_from_config(
    config: Mapping[str, Any], api_keys: Mapping[str, str], *, sandbox: bool
) -> Portals:
    """The merchants of payment-intake's merchant file, each with the page its policy needs.

    A merchant without a configured key gets its published sandbox demo key in sandbox
    mode only; outside it a missing key is an error.
    """
    merchants = []
    for name, spec in (config.get("merchants") or {}).items():
        policy = spec.get("policy", config.get("default", "full-payment-portal"))
        style = Style(spec.get("portal") or POLICY_STYLES.get(policy, Style.FULL_PAYMENT))
        key = api_keys.get(name)
        if key is None:
            if not sandbox:
                raise ValueError(f"no API key for merchant {name} (DEMO_PORTAL_API_KEYS)")
            key = sandbox_demo_key(name)
        merchants.append(
            Merchant(
                name=name,
                title=str(spec.get("title") or TITLES[style]),
                style=style,
                accounts=tuple(str(a) for a in spec.get("accounts") or ()),
                api_key=key,
            )
        )
    return Portals(tuple(merchants))
