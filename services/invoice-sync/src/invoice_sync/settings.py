"""invoice-sync's settings: the common ones plus its port, the provider and the worker."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from payments_platform.settings import CommonSettings

SERVICE = "invoice-sync"
SCHEMA = "invoice_sync"
ERP_CONSUMER = "erp-invoices"  # the consumer of erp.invoices: its offsets and dedupe records


class InvoiceSyncSettings(CommonSettings):
    # ERP feeds arrive in bulk: bigger transactions amortise their fixed cost (offsets,
    # dedupe, commit) and the provider calls they queue (measured: bench_invoice_sync).
    consumer_batch_size: int = Field(
        2000,
        validation_alias=AliasChoices("INVOICE_SYNC_CONSUMER_BATCH_SIZE", "PAYMENTS_CONSUMER_BATCH_SIZE"),
    )
    http_port: int = Field(8010, validation_alias=AliasChoices("INVOICE_SYNC_HTTP_PORT"))
    provider_url: str = Field("http://127.0.0.1:8040", validation_alias=AliasChoices("PAYMENTS_PROVIDER_URL"))
    provider_timeout_s: float = Field(10.0, validation_alias=AliasChoices("INVOICE_SYNC_PROVIDER_TIMEOUT_S"))
    registration_batch_size: int = Field(
        500, validation_alias=AliasChoices("INVOICE_SYNC_REGISTRATION_BATCH_SIZE")
    )
    registration_concurrency: int = Field(
        2, validation_alias=AliasChoices("INVOICE_SYNC_REGISTRATION_CONCURRENCY")
    )
    registration_lease_s: float = Field(
        60.0, validation_alias=AliasChoices("INVOICE_SYNC_REGISTRATION_LEASE_S")
    )
    # Which provider each merchant's accounts register with (`provider: sandbox | stripe`);
    # without it every invoice goes to the sandbox provider (PAYMENTS_PROVIDER_URL).
    merchant_config: Path | None = Field(None, validation_alias=AliasChoices("PAYMENTS_MERCHANT_CONFIG"))
