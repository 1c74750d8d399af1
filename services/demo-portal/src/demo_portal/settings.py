"""demo-portal's settings: PAYMENTS_* shared endpoints plus DEMO_PORTAL_* knobs."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from payments_platform.settings import CommonSettings

SERVICE = "demo-portal"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class DemoPortalSettings(CommonSettings):
    http_port: int = Field(8050, validation_alias=_env("DEMO_PORTAL_HTTP_PORT"))
    read_api_url: str = Field("http://127.0.0.1:8030", validation_alias=_env("DEMO_PORTAL_READ_API_URL"))
    # The merchant file every service reads (which merchant each account belongs to).
    merchant_config: Path | None = Field(
        None, validation_alias=_env("DEMO_PORTAL_MERCHANT_CONFIG", "PAYMENTS_MERCHANT_CONFIG")
    )
    # {"merchant name": "api key"}: each merchant's portal reads only its own accounts.
    api_keys: dict[str, str] = Field(default_factory=dict, validation_alias=_env("DEMO_PORTAL_API_KEYS"))
    sandbox: bool = Field(False, validation_alias=_env("PAYMENTS_SANDBOX"))
    outcome_timeout_s: float = Field(15.0, validation_alias=_env("DEMO_PORTAL_OUTCOME_TIMEOUT_S"))
    poll_interval_ms: int = Field(1500, validation_alias=_env("DEMO_PORTAL_POLL_INTERVAL_MS"))
