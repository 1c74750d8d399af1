"""payment-intake's name, schema and settings: PAYMENTS_* shared endpoints plus PAYMENT_INTAKE_*
knobs."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field

from payment_intake.domain.policy import MerchantPolicies
from payments_platform.merchants import load_merchant_file
from payments_platform.sandbox import SANDBOX_WEBHOOK_SECRET, UnsafeConfiguration
from payments_platform.settings import CommonSettings

SERVICE = "payment-intake"
SCHEMA = "payment_intake"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class PaymentIntakeSettings(CommonSettings):
    http_port: int = Field(8020, validation_alias=_env("PAYMENT_INTAKE_HTTP_PORT"))
    provider_url: str = Field("http://127.0.0.1:8040", validation_alias=_env("PAYMENTS_PROVIDER_URL"))
    webhook_secret: str | None = Field(
        None,
        validation_alias=_env("PAYMENTS_WEBHOOK_SECRET"),
        description="The provider's signing secrets (whsec_...), space- or comma-separated: during a "
        "rotation both the old and the new one",
    )
    policy: str = Field("full-payment-portal", validation_alias=_env("PAYMENT_INTAKE_POLICY"))
    merchant_config: Path | None = Field(
        None, validation_alias=_env("PAYMENTS_MERCHANT_CONFIG", "PAYMENT_INTAKE_MERCHANT_CONFIG")
    )
    checkout_ttl_s: int = Field(900, validation_alias=_env("PAYMENT_INTAKE_CHECKOUT_TTL_S"))
    expiry_interval_s: float = Field(1.0, validation_alias=_env("PAYMENT_INTAKE_EXPIRY_INTERVAL_S"))
    checkout_lease_s: float = Field(15.0, validation_alias=_env("PAYMENT_INTAKE_CHECKOUT_LEASE_S"))
    checkout_concurrency: int = Field(16, validation_alias=_env("PAYMENT_INTAKE_CHECKOUT_CONCURRENCY"))
    # A checkout opener round at most this often unless the last one was full (batching).
    checkout_gather_s: float = Field(0.05, ge=0, validation_alias=_env("PAYMENT_INTAKE_CHECKOUT_GATHER_S"))
    provider_timeout_s: float = Field(5.0, validation_alias=_env("PAYMENT_INTAKE_PROVIDER_TIMEOUT_S"))
    # The consumer's fetch: the broker answers once this many bytes are there or this
    # many ms have passed (aiokafka's defaults: 1 byte, 500 ms).
    consumer_fetch_min_bytes: int = Field(
        1, ge=1, validation_alias=_env("PAYMENT_INTAKE_CONSUMER_FETCH_MIN_BYTES")
    )
    consumer_fetch_wait_ms: int = Field(
        500, ge=0, validation_alias=_env("PAYMENT_INTAKE_CONSUMER_FETCH_WAIT_MS")
    )
    status_sync_after_s: int | None = Field(
        None,
        gt=0,
        validation_alias=_env("PAYMENT_INTAKE_STATUS_SYNC_AFTER_S"),
        description="Seconds an open payment waits before status sync asks the provider about it, "
        "for every policy (unset: each policy's `status_sync_after_s`, 600)",
    )
    provider_worker_interval_s: float = Field(
        1.0, validation_alias=_env("PAYMENT_INTAKE_PROVIDER_WORKER_INTERVAL_S")
    )
    provider_lease_s: float = Field(15.0, validation_alias=_env("PAYMENT_INTAKE_PROVIDER_LEASE_S"))
    refund_query_after_s: float = Field(60.0, validation_alias=_env("PAYMENT_INTAKE_REFUND_QUERY_AFTER_S"))
    callback_max_bytes: int = Field(64 * 1024, validation_alias=_env("PAYMENT_INTAKE_CALLBACK_MAX_BYTES"))
    callback_body_timeout_s: float = Field(
        10.0, validation_alias=_env("PAYMENT_INTAKE_CALLBACK_BODY_TIMEOUT_S")
    )

    def webhook_secrets(self) -> list[str]:
        """The secrets callbacks are verified with; refuses published ones outside sandbox mode."""
        secrets = [s for s in re.split(r"[\s,]+", self.webhook_secret or "") if s]
        if not secrets:
            if not self.sandbox:
                raise UnsafeConfiguration(
                    "PAYMENTS_WEBHOOK_SECRET is not set; set the provider's signing secret "
                    "(or PAYMENTS_SANDBOX=1 to use the sandbox provider's published one)"
                )
            return [SANDBOX_WEBHOOK_SECRET]
        if SANDBOX_WEBHOOK_SECRET in secrets and not self.sandbox:
            raise UnsafeConfiguration(
                "PAYMENTS_WEBHOOK_SECRET holds the sandbox provider's published secret; "
                "it is accepted only with PAYMENTS_SANDBOX=1"
            )
        return secrets


def load_policies(settings: PaymentIntakeSettings) -> MerchantPolicies:
    """The preset named by PAYMENT_INTAKE_POLICY, or the merchant file (JSON or YAML)."""
    if settings.merchant_config is None:
        policies = MerchantPolicies.preset(settings.policy)
    else:
        merchants = load_merchant_file(settings.merchant_config)
        policies = MerchantPolicies.from_config(merchants.raw, default_preset=settings.policy)
    if settings.status_sync_after_s is not None:
        policies = policies.with_status_sync_after(settings.status_sync_after_s)
    return policies
