from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE = "sandbox-provider"


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_PROVIDER_", extra="ignore")

    log_level: str = Field("INFO", validation_alias="PAYMENTS_LOG_LEVEL")
    host: str = "127.0.0.1"
    port: int = 8040
    public_url: str = "http://127.0.0.1:8040"
    webhook_url: str = Field(
        "http://127.0.0.1:8020/callbacks/provider",
        validation_alias=AliasChoices("SANDBOX_PROVIDER_WEBHOOK_URL", "PAYMENTS_PROVIDER_WEBHOOK_URL"),
    )
    webhook_secret: str = Field(
        "whsec_c2FuZGJveC1zZWNyZXQtZm9yLWxvY2FsLWRlbW9zLW9ubHk=",
        validation_alias=AliasChoices("SANDBOX_PROVIDER_WEBHOOK_SECRET", "PAYMENTS_WEBHOOK_SECRET"),
    )
    # Standard Webhooks' schedule after the immediate attempt; `webhook_time_scale`
    # compresses it for tests (SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE=0.01: 5 min -> 3 s).
    webhook_schedule_s: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_time_scale: float = Field(1.0, gt=0)
    checkout_ttl_s: int = 900
    # How long a refund stays pending at the provider before it settles.
    refund_settle_s: float = 0.2
    # Stripe mode (`/stripe/v1/...`): where its Stripe-format webhooks go, signed with
    # Stripe's scheme under the published sandbox Stripe secret.
    stripe_webhook_url: str = "http://127.0.0.1:8020/callbacks/stripe"
    stripe_webhook_secret: str = "whsec_sandbox_stripe_published_demo_secret"  # noqa: S105
