"""Settings of the status projector (env prefix STATUS_PROJECTOR_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from payments_platform.merchants import MerchantFile, load_merchant_file
from payments_platform.sandbox import UnsafeConfiguration, demo_api_key
from payments_platform.settings import CommonSettings
from status_projector.domain.access import MerchantKeys, PortalKeys, digest_of

SERVICE = "status-projector"
SCHEMA = "status_projector"


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
    rebuild_workers: int = Field(
        2,
        validation_alias=AliasChoices("STATUS_PROJECTOR_REBUILD_WORKERS"),
        description="Processes a rebuild's first pass runs in, each on its share of the partitions",
    )
    snapshot_interval_h: float = Field(
        24.0,
        validation_alias=AliasChoices("STATUS_PROJECTOR_SNAPSHOT_INTERVAL_H"),
        description="Hours between snapshots of the read model a rebuild starts from (0: none)",
    )
    switch_poll_s: float = Field(1.0, validation_alias=AliasChoices("STATUS_PROJECTOR_SWITCH_POLL_S"))
    read_database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PAYMENTS_READ_DATABASE_URL"),
        description="A streaming replica the read API reads from (the primary when it cannot answer)",
    )
    read_deadline_s: float = Field(
        1.5,
        gt=0,
        validation_alias=AliasChoices("STATUS_PROJECTOR_READ_DEADLINE_S"),
        description="Longest a read waits for the databases before answering 503 with Retry-After",
    )
    consistency_wait_s: float = Field(
        1.0,
        ge=0,
        validation_alias=AliasChoices("STATUS_PROJECTOR_CONSISTENCY_WAIT_S"),
        description="Longest a read with min_offset waits for the replica to replay that far",
    )
    merchant_config: Path | None = Field(
        None,
        validation_alias=AliasChoices("PAYMENTS_MERCHANT_CONFIG"),
        description="The merchant file: each merchant's accounts and the SHA-256 of its API keys",
    )

    def portal_keys(self) -> PortalKeys:
        if self.merchant_config is None:
            raise UnsafeConfiguration(
                "PAYMENTS_MERCHANT_CONFIG is not set: without the merchant file no portal can read"
            )
        return portal_keys(load_merchant_file(self.merchant_config), sandbox=self.sandbox)


def portal_keys(merchants: MerchantFile, *, sandbox: bool) -> PortalKeys:
    """The configured keys; in sandbox mode each merchant's published demo key as well,
    which outside sandbox mode is refused even when configured."""
    entries = []
    for merchant in merchants.merchants:
        digests = list(merchant.api_keys)
        demo = digest_of(demo_api_key(merchant.name))
        if sandbox:
            digests.append(demo)
        elif demo in digests:
            raise UnsafeConfiguration(
                f"merchant {merchant.name}: its published demo key is accepted only with PAYMENTS_SANDBOX=1"
            )
        entries.append(MerchantKeys(merchant.name, merchant.accounts, tuple(digests)))
    keys = PortalKeys(entries)
    if len(keys) == 0:
        raise UnsafeConfiguration(
            "no merchant in the merchant file has an api key (api_keys: [sha256:...]); "
            "create one with `status-projector-ops new-api-key`"
        )
    return keys
