"""`invoice-sync`: the ERP consumer, the registration worker, the outbox relay and HTTP."""

from __future__ import annotations

from collections.abc import Sequence

from invoice_sync.adapters.provider import HttpProvider
from invoice_sync.adapters.providers import MerchantRegistrations
from invoice_sync.adapters.schema import install
from invoice_sync.adapters.unit_of_work import PostgresUnitOfWork, UnitsOfWork
from invoice_sync.entrypoints.http import build_app
from invoice_sync.handlers import apply_batch
from invoice_sync.settings import ERP_CONSUMER, SCHEMA, SERVICE, InvoiceSyncSettings
from invoice_sync.workers import RegistrationWorker
from payments_platform.health import BrokerProbe
from payments_platform.merchants import MerchantFile, WatchedMerchantFile
from payments_platform.messaging import Delivery, OutboxRelay, Transaction, TransactionalConsumer
from payments_platform.ops_metrics import OpsGauges
from payments_platform.retention import Pruner, RetentionSettings
from payments_platform.sandbox import UnsafeConfiguration
from payments_platform.service import ServiceHost, run_service, start_up


async def handle_batch(deliveries: Sequence[Delivery], tx: Transaction) -> None:
    """What the consumer calls: the ERP handlers, in a unit of work on its transaction."""
    await apply_batch(deliveries, PostgresUnitOfWork.of(tx))


async def serve(settings: InvoiceSyncSettings) -> None:
    retention = RetentionSettings()
    merchant_file = None
    if settings.merchant_config is not None:
        merchant_file = WatchedMerchantFile[MerchantFile](settings.merchant_config, lambda f: f).current
    registry, pool = await start_up(SERVICE, settings, schema=SCHEMA, install=install)
    # After start_up, which turns tracing on: the provider's HTTP client is instrumented
    # when it is built.
    provider = MerchantRegistrations(  # refuses to start on a Stripe merchant without usable credentials
        HttpProvider(settings.provider_url, timeout_s=settings.provider_timeout_s),
        merchant_file,
        sandbox_mode=settings.sandbox,
        stripe_api_base=settings.stripe_api_base,
        timeout_s=settings.provider_timeout_s,
    )
    relay = OutboxRelay(pool, settings.kafka_bootstrap, service=SERVICE)
    worker = RegistrationWorker(
        UnitsOfWork(pool, registry),
        provider,
        on_commit=relay.wake,
        batch_size=settings.registration_batch_size,
        concurrency=settings.registration_concurrency,
        lease_s=settings.registration_lease_s,
    )

    def committed() -> None:
        relay.wake()
        worker.wake()

    consumer = TransactionalConsumer(
        service=SERVICE,
        name=ERP_CONSUMER,
        registry=registry,
        topics=[registry.erp_invoices],
        pool=pool,
        bootstrap=settings.kafka_bootstrap,
        handle=handle_batch,
        on_commit=committed,
        batch_size=settings.consumer_batch_size,
    )
    host = ServiceHost(
        name=SERVICE,
        app=build_app(pool),
        host=settings.http_host,
        port=settings.http_port,
        pool=pool,
        broker=BrokerProbe(settings.kafka_bootstrap),
        relay=relay,
        consumers=[consumer],
        background=[
            worker,
            Pruner.for_service(pool, SERVICE, retention),
            OpsGauges(SERVICE, pool, settings.kafka_bootstrap, interval_s=settings.metrics_interval_s),
        ],
        on_stop=provider.aclose,
    )
    await host.serve()


def main() -> None:
    settings = InvoiceSyncSettings()
    try:
        run_service(lambda: serve(settings))
    except UnsafeConfiguration as exc:  # raised before anything starts
        raise SystemExit(f"{SERVICE}: {exc}") from None
