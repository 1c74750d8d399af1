"""Settings of the status projector (env prefix STATUS_PROJECTOR_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from payments_shared.settings import CommonSettings

SERVICE = "status-projector"


class ProjectorSettings(CommonSettings):
    http_port: int = Field(8030, validation_alias=AliasChoices("STATUS_PROJECTOR_HTTP_PORT"))
    provider_configured: bool = Field(
        True,
        validation_alias=AliasChoices("STATUS_PROJECTOR_PROVIDER_CONFIGURED"),
        description="Gates every Pay button (seed 000: 'visible only when ... is configured')",
    )
    restricted_countries_csv: str = Field(
        "",
        validation_alias=AliasChoices("STATUS_PROJECTOR_RESTRICTED_COUNTRIES"),
        description="ISO country codes whose invoices are paid through a distributor (seed 003); "
        "a change needs a rebuild, since pay status is stored",
    )
    batch_size: int = Field(2000, validation_alias=AliasChoices("STATUS_PROJECTOR_BATCH_SIZE"))
    switch_poll_s: float = Field(1.0, validation_alias=AliasChoices("STATUS_PROJECTOR_SWITCH_POLL_S"))

    @property
    def restricted_countries(self) -> frozenset[str]:
        return frozenset(c.strip().upper() for c in self.restricted_countries_csv.split(",") if c.strip())
