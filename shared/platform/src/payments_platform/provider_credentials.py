"""Where a Stripe merchant's credentials come from, and the rules they must pass.

The merchant file says only *where* they are (`stripe.credentials`):

- `env:ACME`: `STRIPE_ACME_SECRET_KEY`, `STRIPE_ACME_WEBHOOK_SECRETS` (one, or two while an
  endpoint secret is rolled, space- or comma-separated) and optionally `STRIPE_ACME_ACCOUNT`
  (a Connect account id the calls are made on behalf of);
- `file:/run/secrets/acme-stripe.yaml`: a YAML (or JSON) mapping with `secret_key`,
  `webhook_secrets` (a list) and optionally `account`.

In sandbox mode (`PAYMENTS_SANDBOX=1`) a Stripe merchant that names none gets the
published sandbox credentials below, which only the sandbox provider's Stripe mode
accepts; a live key (`sk_live_`) is refused there, so a demo never moves real money.
Outside sandbox mode nothing has a default: a Stripe merchant without credentials, or
with the published ones, stops the service at start-up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from payments_platform.merchants import MerchantEntry, MerchantFile
from payments_platform.sandbox import UnsafeConfiguration

# Published with the sandbox provider's Stripe mode: never a real key or secret.
SANDBOX_STRIPE_SECRET_KEY = "sk_test_51SandboxPublishedDemoKeyNotReal"  # noqa: S105
SANDBOX_STRIPE_WEBHOOK_SECRET = "whsec_sandbox_stripe_published_demo_secret"  # noqa: S105
SANDBOX_RETURN_URL = "http://127.0.0.1:8050/"
_PUBLISHED = {SANDBOX_STRIPE_SECRET_KEY, SANDBOX_STRIPE_WEBHOOK_SECRET}
_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class StripeCredentials:
    secret_key: str = field(repr=False)
    webhook_secrets: tuple[str, ...] = field(repr=False)
    account: str | None = None  # Stripe Connect: act on this connected account

    @property
    def live(self) -> bool:
        return "_live_" in self.secret_key


@dataclass(frozen=True)
class StripeMerchant:
    merchant: str
    credentials: StripeCredentials
    # Where Stripe's hosted page sends the payer back to (the portal); not a secret.
    return_url: str


def _split(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(s for s in re.split(r"[\s,]+", value) if s)
    if isinstance(value, list):
        return tuple(str(v) for v in value if v)
    return ()


def _from_env(name: str, environ: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"STRIPE_{name.upper()}_"
    return {
        "secret_key": environ.get(prefix + "SECRET_KEY"),
        "webhook_secrets": environ.get(prefix + "WEBHOOK_SECRETS"),
        "account": environ.get(prefix + "ACCOUNT"),
    }


def _from_file(path: str) -> dict[str, Any]:
    loaded = yaml.safe_load(Path(path).read_text())
    if not isinstance(loaded, Mapping):
        raise UnsafeConfiguration(f"{path}: expected a mapping of secret_key, webhook_secrets, account")
    return dict(loaded)


def _checked(merchant: str, found: Mapping[str, Any], *, sandbox: bool) -> StripeCredentials:
    key = str(found.get("secret_key") or "")
    secrets = _split(found.get("webhook_secrets"))
    account = found.get("account") or None
    if not key or not secrets:
        raise UnsafeConfiguration(
            f"merchant {merchant}: a Stripe secret key and at least one webhook signing secret are needed"
        )
    if not _KEY.match(key):
        raise UnsafeConfiguration(f"merchant {merchant}: the Stripe key is not a secret or restricted key")
    if len(secrets) > 2 or not all(s.startswith("whsec_") for s in secrets):
        raise UnsafeConfiguration(
            f"merchant {merchant}: one or two webhook signing secrets (whsec_...), two only while rolling"
        )
    if account is not None and not str(account).startswith("acct_"):
        raise UnsafeConfiguration(f"merchant {merchant}: a Connect account id starts with acct_")
    credentials = StripeCredentials(key, secrets, None if account is None else str(account))
    if sandbox and credentials.live:
        raise UnsafeConfiguration(
            f"merchant {merchant}: a live Stripe key in sandbox mode (PAYMENTS_SANDBOX=1); use a test key"
        )
    if not sandbox and _PUBLISHED & {key, *secrets}:
        raise UnsafeConfiguration(
            f"merchant {merchant}: the sandbox's published Stripe credentials work only"
            " with PAYMENTS_SANDBOX=1"
        )
    return credentials


def stripe_merchant(
    entry: MerchantEntry, *, sandbox: bool, environ: Mapping[str, str] | None = None
) -> StripeMerchant:
    """One Stripe merchant's credentials and return URL; UnsafeConfiguration when they are
    missing, malformed or not allowed here."""
    spec = dict(entry.stripe or {})
    where = spec.get("credentials")
    if where is None:
        if not sandbox:
            raise UnsafeConfiguration(
                f"merchant {entry.name}: provider stripe needs stripe.credentials (env:<NAME> or"
                " file:<path>); only sandbox mode (PAYMENTS_SANDBOX=1) has published ones"
            )
        found: Mapping[str, Any] = {
            "secret_key": SANDBOX_STRIPE_SECRET_KEY,
            "webhook_secrets": [SANDBOX_STRIPE_WEBHOOK_SECRET],
        }
    elif str(where).startswith("env:"):
        found = _from_env(str(where)[4:], os.environ if environ is None else environ)
    elif str(where).startswith("file:"):
        found = _from_file(str(where)[5:])
    else:
        raise UnsafeConfiguration(f"merchant {entry.name}: stripe.credentials is env:<NAME> or file:<path>")
    return_url = spec.get("return_url") or (SANDBOX_RETURN_URL if sandbox else None)
    if not return_url:
        raise UnsafeConfiguration(f"merchant {entry.name}: stripe.return_url (the portal's page) is needed")
    return StripeMerchant(entry.name, _checked(entry.name, found, sandbox=sandbox), str(return_url))


def stripe_merchants(
    merchants: MerchantFile, *, sandbox: bool, environ: Mapping[str, str] | None = None
) -> dict[str, StripeMerchant]:
    """Every Stripe merchant of the file, by name, checked (a service calls it at start-up
    so a missing credential stops it there, not at the first payment)."""
    return {
        m.name: stripe_merchant(m, sandbox=sandbox, environ=environ)
        for m in merchants.merchants
        if m.provider == "stripe"
    }
