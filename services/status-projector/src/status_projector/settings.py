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
    batch_size: int = Field(2000, validation_alias=AliasChoices("STATUS_PROJECTOR_BATCH_SIZE"))
    rebuild_batch_size: int = Field(
        10_000,
        validation_alias=AliasChoices("STATUS_PROJECTOR_REBUILD_BATCH_SIZE"),
        description="Events a rebuild applies per transaction (fewer commits, fewer round trips)",
    )
    switch_poll_s: float = Field(1.0, validation_alias=AliasChoices("STATUS_PROJECTOR_SWITCH_POLL_S"))
