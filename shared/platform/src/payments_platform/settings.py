"""Settings every service reads from the environment (pydantic-settings)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """Endpoints and knobs shared by all services, under the PAYMENTS_ prefix."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias=_env("PAYMENTS_KAFKA_BOOTSTRAP"))
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/payments",
        validation_alias=_env("PAYMENTS_DATABASE_URL"),
    )
    http_host: str = Field("127.0.0.1", validation_alias=_env("PAYMENTS_HTTP_HOST"))
    log_level: str = Field("INFO", validation_alias=_env("PAYMENTS_LOG_LEVEL"))
    consumer_batch_size: int = Field(500, validation_alias=_env("PAYMENTS_CONSUMER_BATCH_SIZE"))
    topic_prefix: str = Field("", validation_alias=_env("PAYMENTS_TOPIC_PREFIX"))
    # Every process of a deployment must agree on it (a rebuild reads every partition).
    topic_partitions: int | None = Field(None, validation_alias=_env("PAYMENTS_TOPIC_PARTITIONS"))
    topic_replication_factor: int | None = Field(
        None,
        ge=1,
        validation_alias=_env("PAYMENTS_TOPIC_REPLICATION_FACTOR"),
        description="Copies of each new topic; unset: 3 on a cluster of three or more brokers, else 1",
    )
    # Install the topics and this service's schema, then exit (the deployment's set-up Job).
    setup_only: bool = Field(False, validation_alias=_env("PAYMENTS_SETUP_ONLY"))
    db_pool_size: int = Field(8, validation_alias=_env("PAYMENTS_DB_POOL_SIZE"))
    # How often the lag / outbox-depth gauges are sampled (payments_platform.ops_metrics).
    metrics_interval_s: float = Field(15.0, gt=0, validation_alias=_env("PAYMENTS_METRICS_INTERVAL_S"))
    # Where the Stripe connectors send their requests: Stripe itself, or in sandbox mode the
    # sandbox provider's Stripe mode (`<sandbox>/stripe`), or stripe-mock in the tests.
    stripe_api_base: str = Field("https://api.stripe.com", validation_alias=_env("PAYMENTS_STRIPE_API_BASE"))
    sandbox: bool = Field(
        False,
        validation_alias=_env("PAYMENTS_SANDBOX"),
        description="Accept the sandbox's published credentials (payments_platform.sandbox)",
    )
