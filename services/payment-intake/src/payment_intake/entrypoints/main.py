"""`payment-intake`: the pay-command/callback consumer, checkout opener, expiry timer,
outbox relay and the webhook endpoint, in one process."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from fastapi import FastAPI

from payment_intake.adapters.merchant_file import watched_policies
from payment_intake.adapters.providers import MerchantProviders
from payment_intake.adapters.queued_work import QueuedWork
from payment_intake.adapters.sandbox_webhooks import StandardWebhooks
from payment_intake.adapters.schema import install
from payment_intake.adapters.stripe_webhooks import StripeWebhooks
from payment_intake.adapters.unit_of_work import unit_of_work_factory, units
from payment_intake.domain.provider import WebhookSource
from payment_intake.entrypoints.http import callback_router
from payment_intake.handlers import consuming
from payment_intake.metrics import sample_payments
from payment_intake.retention import IntakeRetentionSettings, pruner
from payment_intake.settings import SCHEMA, SERVICE, PaymentIntakeSettings, load_policies
from payment_intake.unit_of_work import IntakeConfig
from payment_intake.workers import CheckoutOpener, ExpiryTimer, ProviderWorker
from payments_contracts.topics import TopicRegistry
from payments_platform.health import BrokerProbe
from payments_platform.http_limits import BodyLimit
from payments_platform.messaging import OutboxRelay, TransactionalConsumer
from payments_platform.ops_metrics import OpsGauges
from payments_platform.sandbox import UnsafeConfiguration
from payments_platform.service import ServiceHost, run_service, start_up


@dataclass
class Parts:
    """The pieces of one payment-intake process (tests run them without the host)."""

    pool: asyncpg.Pool
    registry: TopicRegistry
    relay: OutboxRelay
    consumer: TransactionalConsumer
    opener: CheckoutOpener
    expiry: ExpiryTimer
    provider_worker: ProviderWorker
    gauges: OpsGauges
    provider: MerchantProviders
    app: FastAPI


async def build_parts(settings: PaymentIntakeSettings) -> Parts:
    secrets = settings.webhook_secrets()  # refuses to start without one of our own
    policies = load_policies(settings) if settings.merchant_config is None else watched_policies(settings)
    config = IntakeConfig(policies=policies, checkout_ttl_s=settings.checkout_ttl_s)
    registry, pool = await start_up(SERVICE, settings, schema=SCHEMA, install=install)
    relay = OutboxRelay(pool, settings.kafka_bootstrap, service=SERVICE)
    provider = MerchantProviders.of(settings)
    unit = units(pool, registry, config, on_published=relay.wake)
    opener = CheckoutOpener(
        unit,
        provider,
        lease_s=settings.checkout_lease_s,
        concurrency=settings.checkout_concurrency,
        gather_s=settings.checkout_gather_s,
    )
    expiry = ExpiryTimer(unit, interval_s=settings.expiry_interval_s)
    provider_worker = ProviderWorker(
        unit,
        provider,
        config,
        lease_s=settings.provider_lease_s,
        interval_s=settings.provider_worker_interval_s,
        concurrency=settings.checkout_concurrency,
        refund_query_after_s=settings.refund_query_after_s,
    )

    queued = QueuedWork()

    def committed() -> None:
        relay.wake()
        checkouts, provider_calls = queued.take()
        if checkouts:
            opener.wake()
        if provider_calls:
            provider_worker.wake()

    consumer = TransactionalConsumer(
        service=SERVICE,
        name="intake",
        registry=registry,
        topics=[registry.payments_commands, registry.payments_callbacks, registry.invoices],
        pool=pool,
        bootstrap=settings.kafka_bootstrap,
        handle=consuming(unit_of_work_factory(config, queued)),
        on_commit=committed,
        batch_size=settings.consumer_batch_size,
        fetch_min_bytes=settings.consumer_fetch_min_bytes,
        fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
        # Deployments (and test runs) sharing a cluster must not share a consumer group.
        group_id=f"{settings.topic_prefix}{SERVICE}.intake",
    )
    app = FastAPI(title=SERVICE, version="1.0.0")
    sources: dict[str, WebhookSource] = {
        "provider": StandardWebhooks(secrets),
        "stripe": StripeWebhooks(provider.stripe_merchants, provider.merchant_of),
    }
    app.include_router(callback_router(unit, sources))
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.callback_max_bytes,
        timeout_s=settings.callback_body_timeout_s,
        path_prefix="/callbacks/",
    )
    gauges = OpsGauges(
        SERVICE, pool, settings.kafka_bootstrap, interval_s=settings.metrics_interval_s, extra=sample_payments
    )
    return Parts(pool, registry, relay, consumer, opener, expiry, provider_worker, gauges, provider, app)


async def serve() -> None:
    settings = PaymentIntakeSettings()
    retention = IntakeRetentionSettings()
    parts = await build_parts(settings)
    host = ServiceHost(
        name=SERVICE,
        app=parts.app,
        host=settings.http_host,
        port=settings.http_port,
        pool=parts.pool,
        broker=BrokerProbe(settings.kafka_bootstrap),
        relay=parts.relay,
        consumers=[parts.consumer],
        background=[
            parts.opener,
            parts.expiry,
            parts.provider_worker,
            parts.gauges,
            pruner(parts.pool, retention),
        ],
        on_stop=parts.provider.close,
    )
    await host.serve()


def main() -> None:
    try:
        run_service(serve)
    except UnsafeConfiguration as exc:  # raised before anything starts (build_parts)
        raise SystemExit(f"{SERVICE}: {exc}") from None
