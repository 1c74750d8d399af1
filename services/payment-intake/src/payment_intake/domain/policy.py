"""The merchant payment policy (docs/product.md, "Payment policy"): what a portal lets its customers do.

A policy is data. The two seed portals ship as presets; a deployment picks a default
preset and may map merchants (and the accounts that belong to them) to other presets
or to policies of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from payments_contracts.remittance import RemittanceDetails

METHOD_KINDS: frozenset[str] = frozenset({"guest_checkout", "payer_portal", "card", "remittance"})


@dataclass(frozen=True)
class PaymentPolicy:
    name: str
    partial_payment: bool
    multiple_invoices: bool
    account_balance: bool
    invoice_methods: frozenset[str]
    account_balance_methods: frozenset[str] = frozenset()
    distributor_countries: frozenset[str] = frozenset()
    remittance_payee: str = ""
    # A checkout open or a payment processing this long without the provider's word is
    # asked about at the provider (status sync), as if its callback had arrived.
    status_sync_after_s: int = 600
    # Money taken twice, late or in another amount goes back without an operator.
    auto_refund: bool = True

    def __post_init__(self) -> None:
        unknown = (self.invoice_methods | self.account_balance_methods) - METHOD_KINDS
        if unknown:
            raise ValueError(f"policy {self.name}: unknown payment methods {sorted(unknown)}")
        if self.status_sync_after_s <= 0:
            raise ValueError(f"policy {self.name}: status_sync_after_s must be positive")
        if self.account_balance and not self.account_balance_methods:
            raise ValueError(f"policy {self.name}: account balance payment needs a method")
        bad = [c for c in self.distributor_countries if len(c) != 2 or not c.isupper()]
        if bad:
            raise ValueError(f"policy {self.name}: country codes must be ISO alpha-2: {bad}")


# Seed 003 names continents and countries; a policy needs ISO 3166-1 alpha-2 codes.
AFRICA = frozenset(
    "DZ AO BJ BW BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR "
    "LY MG MW ML MR MU YT MA MZ NA NE NG RE RW SH ST SN SC SL SO ZA SS SD TZ TG TN UG EH "
    "ZM ZW".split()
)
EUROPE = frozenset(
    "AL AD AT BY BE BA BG HR CY CZ DK EE FO FI FR DE GI GR GG HU IS IE IM IT JE XK LV LI "
    "LT LU MT MD MC ME NL MK NO PL PT RO RU SM RS SK SI ES SJ SE CH UA GB VA AX".split()
)
# Australia, Brazil, Canada, China, Hong Kong, India, Israel, Japan, Macau, Malaysia,
# Mexico, New Zealand, Philippines, Singapore, South Korea, Taiwan, Thailand, Vietnam
SEED_003_DISTRIBUTOR_COUNTRIES = (
    AFRICA | EUROPE | frozenset("AU BR CA CN HK IN IL JP MO MY MX NZ PH SG KR TW TH VN".split())
)

FULL_PAYMENT_PORTAL = PaymentPolicy(
    name="full-payment-portal",
    partial_payment=False,
    multiple_invoices=False,
    account_balance=True,
    invoice_methods=frozenset({"guest_checkout", "payer_portal"}),
    account_balance_methods=frozenset({"payer_portal"}),
)
PARTIAL_MULTI_PORTAL = PaymentPolicy(
    name="partial-multi-portal",
    partial_payment=True,
    multiple_invoices=True,
    account_balance=False,
    invoice_methods=frozenset({"card", "remittance"}),
    distributor_countries=SEED_003_DISTRIBUTOR_COUNTRIES,
    remittance_payee="Accounts Receivable",
)
PRESETS: dict[str, PaymentPolicy] = {p.name: p for p in (FULL_PAYMENT_PORTAL, PARTIAL_MULTI_PORTAL)}


@dataclass(frozen=True)
class MerchantPolicies:
    """Which policy applies to an account: its merchant's, else the portal's default.

    With a merchant file, an account listed under no merchant may pay only when the file
    names a `default` policy; otherwise its pay commands are refused
    (`account_without_merchant`). Without a merchant file (PAYMENT_INTAKE_POLICY only)
    every account is the one merchant's.
    """

    default: PaymentPolicy
    merchants: Mapping[str, PaymentPolicy] = field(default_factory=dict)
    account_merchant: Mapping[str, str] = field(default_factory=dict)
    unlisted_accounts_pay: bool = True
    remittance: Mapping[str, RemittanceDetails] = field(default_factory=dict)

    def accepts(self, account_id: str) -> bool:
        """Whether pay commands of the account are judged at all (it has a merchant or a default)."""
        return self.unlisted_accounts_pay or account_id in self.account_merchant

    def remittance_for(self, account_id: str) -> RemittanceDetails | None:
        merchant = self.account_merchant.get(account_id)
        return None if merchant is None else self.remittance.get(merchant)

    def all(self) -> list[PaymentPolicy]:
        return [self.default, *self.merchants.values()]

    def with_status_sync_after(self, seconds: int) -> MerchantPolicies:
        """Every policy with this status-sync threshold (a deployment-wide override)."""
        return MerchantPolicies(
            default=replace(self.default, status_sync_after_s=seconds),
            merchants={m: replace(p, status_sync_after_s=seconds) for m, p in self.merchants.items()},
            account_merchant=self.account_merchant,
            unlisted_accounts_pay=self.unlisted_accounts_pay,
            remittance=self.remittance,
        )

    def for_account(self, account_id: str) -> PaymentPolicy:
        merchant = self.account_merchant.get(account_id)
        if merchant is None:
            return self.default
        return self.merchants[merchant]

    @classmethod
    def preset(cls, name: str) -> MerchantPolicies:
        return cls(default=_preset(name))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], default_preset: str | None = None) -> MerchantPolicies:
        """Build from a mapping (the parsed JSON/YAML merchant file).

        ```
        default: full-payment-portal          # a preset name or an inline policy
        policies:                             # optional named policies of your own
          eu-partial: {preset: partial-multi-portal, distributor_countries: [AU]}
        merchants:
          acme-us: {policy: full-payment-portal, accounts: [C100, C200]}
          acme-eu: {policy: eu-partial, accounts: [C300], remittance: {check: {payee: ...}}}
        ```

        Without `default`, `default_preset` is the policy of listed merchants that name
        none, and unlisted accounts cannot pay.
        """
        named: dict[str, PaymentPolicy] = dict(PRESETS)
        for name, spec in (config.get("policies") or {}).items():
            named[name] = _policy_from_spec(name, spec, named)
        default_spec = config.get("default", default_preset or FULL_PAYMENT_PORTAL.name)
        default = _resolve(default_spec, named, "default")
        merchants: dict[str, PaymentPolicy] = {}
        account_merchant: dict[str, str] = {}
        remittance: dict[str, RemittanceDetails] = {}
        for merchant, spec in (config.get("merchants") or {}).items():
            spec = spec or {}
            merchants[merchant] = _resolve(spec.get("policy", default.name), named, merchant)
            for account in spec.get("accounts") or []:
                if account in account_merchant:
                    raise ValueError(f"account {account} belongs to two merchants")
                account_merchant[str(account)] = merchant
            if spec.get("remittance") is not None:
                remittance[merchant] = RemittanceDetails.model_validate(spec["remittance"])
        return cls(
            default=default,
            merchants=merchants,
            account_merchant=account_merchant,
            unlisted_accounts_pay="default" in config,
            remittance=remittance,
        )


def _preset(name: str) -> PaymentPolicy:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown policy preset {name!r}; presets: {sorted(PRESETS)}") from None


def _resolve(spec: Any, named: Mapping[str, PaymentPolicy], owner: str) -> PaymentPolicy:
    if isinstance(spec, str):
        if spec not in named:
            raise ValueError(f"{owner}: unknown policy {spec!r}; known: {sorted(named)}")
        return named[spec]
    if isinstance(spec, Mapping):
        return _policy_from_spec(owner, spec, named)
    raise ValueError(f"{owner}: a policy is a name or a mapping, not {type(spec).__name__}")


_SET_FIELDS = ("invoice_methods", "account_balance_methods", "distributor_countries")


def _policy_from_spec(
    name: str, spec: Mapping[str, Any], named: Mapping[str, PaymentPolicy]
) -> PaymentPolicy:
    base = named[spec["preset"]] if "preset" in spec else None
    values: dict[str, Any] = (
        {}
        if base is None
        else {
            "partial_payment": base.partial_payment,
            "multiple_invoices": base.multiple_invoices,
            "account_balance": base.account_balance,
            "invoice_methods": base.invoice_methods,
            "account_balance_methods": base.account_balance_methods,
            "distributor_countries": base.distributor_countries,
            "remittance_payee": base.remittance_payee,
            "status_sync_after_s": base.status_sync_after_s,
            "auto_refund": base.auto_refund,
        }
    )
    for key, value in spec.items():
        if key == "preset":
            continue
        if key in _SET_FIELDS:
            value = frozenset(_strings(value))
        values[key] = value
    return PaymentPolicy(name=name, **values)


def _strings(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values]
