from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_PROVIDER_", extra="ignore")

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
    webhook_attempts: int = 12
    checkout_ttl_s: int = 900
