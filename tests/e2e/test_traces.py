"""One payment seen across every service: the services as OS processes export their spans
over OTLP/HTTP to a receiver this test runs (tests/otlp_collector.py), and the test acts
as a portal backend with the portal client, its own spans going to the same receiver.

- An ERP document makes one trace: invoice-sync applies it, queues its registration,
  the registration worker calls the provider in that trace, and status-projector applies
  both `invoice.synced` and `invoice.registered` in it.
- A pay command makes one trace, each hop the child of the one before: the portal's
  publish, payment-intake's decision, the checkout opening and its provider call, the
  provider's webhook (joined by the payment id: the provider carries no trace of ours),
  the callback applied, `payment.succeeded` published and applied by status-projector,
  and the portal's read of the read API.

The running services also serve every metric the alerting rules and the dashboard read
(deploy/observability).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from erp_invoices import erp_invoice
from kafka_tools import eventually, produce
from observability_files import exported_names_needed, sample_names, scraped_families
from otlp_collector import Collector, ReceivedSpan, table
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from payments_portal_client import Accepted, BillingAddress, GuestCheckout, NotFound, PortalClient
from payments_portal_client.read_model import PayStatus
from system import System

pytestmark = pytest.mark.e2e

E2E_MERCHANT = "e2e-merchant"  # owns the run's accounts in the merchant file (conftest.py)


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def system_env(collector: Collector) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        # The batching processor's delay, short: the test waits for the last hop's spans.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01",
    }


@pytest.fixture
def portal_tracing(collector: Collector) -> Iterator[TracerProvider]:
    """The portal backend's own tracer (not the process-wide one: other tests run here)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "portal-backend"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.endpoint}/v1/traces"))
    )
    try:
        yield provider
    finally:
        provider.shutdown()


def one(spans: list[ReceivedSpan], what: str, match: Callable[[ReceivedSpan], bool]) -> ReceivedSpan:
    found = [s for s in spans if match(s)]
    assert len(found) == 1, f"expected one {what}, found {len(found)} in:\n{table(spans)}"
    return found[0]


def has(spans: list[ReceivedSpan], match: Callable[[ReceivedSpan], bool]) -> bool:
    return any(match(s) for s in spans)


def chain(hops: list[tuple[str, ReceivedSpan]], spans: list[ReceivedSpan]) -> None:
    """Each hop is the child of the one before it, starts no earlier, in the same trace."""
    for (parent_name, parent), (name, child) in itertools.pairwise(hops):
        assert child.trace_id == parent.trace_id, f"{name} is not in {parent_name}'s trace:\n{table(spans)}"
        assert child.parent_id == parent.span_id, f"{name}'s parent is not {parent_name}:\n{table(spans)}"
        assert child.start_ns >= parent.start_ns, f"{name} starts before {parent_name}:\n{table(spans)}"


def log_lines(system: System, service: str) -> list[dict[str, Any]]:
    lines = []
    for line in (system.log_dir / f"{service}.log").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


async def test_an_erp_document_and_a_pay_command_each_make_one_connected_trace(
    system: System,
    collector: Collector,
    portal_tracing: TracerProvider,
    kafka_bootstrap: str,
    topics: TopicRegistry,
    run_id: str,
    tmp_path: Path,
) -> None:
    account, number = f"C-{run_id}", f"INV-{run_id}"
    erp_topic, invoices_topic = topics.erp_invoices.name, topics.invoices.name
    commands_topic, callbacks_topic = topics.payments_commands.name, topics.payments_callbacks.name
    events_topic = topics.payments_events.name

    # --- the ERP document: no trace context comes with it, so invoice-sync starts one.
    document = erp_invoice(
        account, number, total="1250.00", invoice_date=date(2026, 10, 1), due_date=date(2026, 10, 31)
    )
    await produce(kafka_bootstrap, erp_topic, [document])

    def erp_trace_complete(spans: list[ReceivedSpan]) -> bool:
        return has(
            spans,
            lambda s: (
                s.service == "status-projector"
                and s.attributes.get("payments.message.type") == "invoice.registered"
                and s.attributes.get("payments.account_id") == account
            ),
        )

    spans = collector.wait_for(
        erp_trace_complete, timeout=60, what="invoice.registered applied by the projector"
    )
    applied_doc = one(
        spans,
        "invoice-sync process of the document",
        lambda s: (
            s.name == f"process {erp_topic}"
            and s.attributes.get("messaging.message.id") == str(document.event_id)
        ),
    )
    erp_trace = collector.trace(applied_doc.trace_id)
    assert applied_doc.service == "invoice-sync" and applied_doc.kind == "consumer"
    assert applied_doc.parent_id is None  # the ERP feed carries no trace: this is the root
    registering = one(erp_trace, "registration", lambda s: s.name == "register invoice")
    provider_call = one(
        erp_trace,
        "registration call",
        lambda s: s.kind == "client" and s.parent_id == registering.span_id,
    )
    registered_sent = one(
        erp_trace,
        "invoice.registered published",
        lambda s: s.name == f"send {invoices_topic}" and s.parent_id == registering.span_id,
    )
    registered_applied = one(
        erp_trace,
        "invoice.registered applied",
        lambda s: (
            s.service == "status-projector"
            and s.attributes.get("payments.message.type") == "invoice.registered"
        ),
    )
    chain(
        [
            ("document applied", applied_doc),
            ("registration", registering),
            ("invoice.registered published", registered_sent),
            ("invoice.registered applied", registered_applied),
        ],
        erp_trace,
    )
    chain([("registration", registering), ("registration call", provider_call)], erp_trace)
    assert provider_call.service == "invoice-sync"
    synced_applied = one(
        erp_trace,
        "invoice.synced applied by the projector",
        lambda s: (
            s.service == "status-projector" and s.attributes.get("payments.message.type") == "invoice.synced"
        ),
    )
    synced_sent = one(erp_trace, "invoice.synced published", lambda s: s.span_id == synced_applied.parent_id)
    chain([("document applied", applied_doc), ("invoice.synced published", synced_sent)], erp_trace)

    # --- the pay command, sent and followed by a portal backend with its own tracer.
    tracer = portal_tracing.get_tracer("e2e portal backend")
    client = PortalClient(
        kafka_bootstrap=kafka_bootstrap,
        read_api_url=system.url("status-projector"),
        api_key=demo_api_key(E2E_MERCHANT),
        topic_prefix=topics.prefix,
        timeout_s=30,
        tracer_provider=portal_tracing,
    )
    async with client:
        with tracer.start_as_current_span("portal backend pays an invoice") as root:
            outcome = await client.pay_invoice(account, number, guest())
            assert isinstance(outcome, Accepted), outcome
            async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
                assert outcome.checkout_url is not None and "/checkout/" in outcome.checkout_url
                checkout_id = outcome.checkout_url.rstrip("/").rsplit("/", 1)[-1]
                done = await provider.post(f"/sandbox/checkouts/{checkout_id}/complete")
                assert done.status_code == 200, done.text

            reads_made = 0

            async def status() -> PayStatus | None:
                nonlocal reads_made
                reads_made += 1
                try:
                    return (await client.read.invoice(account, number)).pay_status
                except NotFound:
                    return None

            await eventually(status, lambda s: s == PayStatus.paid, timeout=45, interval=0.3, what="paid")
    pay_trace_id = f"{root.get_span_context().trace_id:032x}"

    def pay_trace_complete(spans: list[ReceivedSpan]) -> bool:
        """payment.succeeded applied, and a request span for each read the portal made."""
        mine = [s for s in spans if s.trace_id == pay_trace_id and s.service == "status-projector"]
        applied = has(mine, lambda s: s.attributes.get("payments.message.type") == "payment.succeeded")
        return applied and len([s for s in mine if s.kind == "server"]) == reads_made

    collector.wait_for(pay_trace_complete, timeout=30, what="payment.succeeded applied in the pay trace")
    pay = collector.trace(pay_trace_id)
    portal = one(pay, "the portal's root span", lambda s: s.name == "portal backend pays an invoice")
    sent = one(pay, "the command published", lambda s: s.name == f"send {commands_topic}")
    decided = one(pay, "payment-intake's decision", lambda s: s.name == f"process {commands_topic}")
    opening = one(pay, "the checkout opening", lambda s: s.name == "open checkout")
    checkout_call = one(
        pay,
        "the provider call",
        lambda s: s.kind == "client" and s.parent_id == opening.span_id,
    )
    webhook = one(pay, "the provider's webhook", lambda s: s.name == "provider webhook payment.succeeded")
    # The provider sends payment.processing, then payment.succeeded: the second one's hops.
    callback_sent = one(
        pay,
        "the callback published",
        lambda s: s.name == f"send {callbacks_topic}" and s.parent_id == webhook.span_id,
    )
    callback = one(
        pay,
        "the callback applied",
        lambda s: s.name == f"process {callbacks_topic}" and s.parent_id == callback_sent.span_id,
    )
    succeeded_sent = one(
        pay,
        "payment.succeeded published",
        lambda s: s.name == f"send {events_topic}" and s.parent_id == callback.span_id,
    )
    applied = one(
        pay,
        "payment.succeeded applied",
        lambda s: (
            s.service == "status-projector"
            and s.attributes.get("payments.message.type") == "payment.succeeded"
        ),
    )
    reads = [s for s in pay if s.service == "status-projector" and s.kind == "server"]
    chain(
        [
            ("portal", portal),
            ("command published", sent),
            ("decision", decided),
            ("checkout opening", opening),
            ("webhook", webhook),
            ("callback published", callback_sent),
            ("callback applied", callback),
            ("payment.succeeded published", succeeded_sent),
            ("payment.succeeded applied", applied),
        ],
        pay,
    )
    chain([("checkout opening", opening), ("provider call", checkout_call)], pay)
    assert (portal.service, sent.service) == ("portal-backend", "portal-backend")
    assert {decided.service, opening.service, webhook.service, callback.service} == {"payment-intake"}
    assert (sent.kind, decided.kind, callback.kind, applied.kind) == (
        "producer",
        "consumer",
        "consumer",
        "consumer",
    )
    assert checkout_call.service == "payment-intake" and checkout_call.end_ns <= opening.end_ns
    assert decided.attributes["payments.message.type"] == "payment.pay_invoice"
    # The reads are the portal's, and the last (the one that saw `paid`) ended after the
    # projector began the transaction that made the invoice paid.
    assert reads and all(r.parent_id == portal.span_id for r in reads), table(pay)
    assert max(r.end_ns for r in reads) >= applied.start_ns, table(pay)
    assert {r.name for r in reads} == {"GET /v1/accounts/{account_id}/invoices/{invoice_number}"}

    # The decision was made in a batch: its span links the batch's, which links the command back.
    batch = one(
        collector.received(), "the decision's batch", lambda s: (s.trace_id, s.span_id) in decided.links
    )
    assert batch.name == "apply batch intake" and (sent.trace_id, sent.span_id) in batch.links
    # The webhook's own request (its own trace: the provider sends none of ours) is linked.
    request = one(
        collector.received(), "the webhook's request", lambda s: (s.trace_id, s.span_id) in webhook.links
    )
    assert request.name == "POST /callbacks/provider" and request.kind == "server"
    assert request.trace_id != pay_trace_id

    # The log line of the opening carries the opening's trace and span ids.
    opened = [line for line in log_lines(system, "payment-intake") if line.get("event") == "checkout opened"]
    assert [(line.get("trace_id"), line.get("span_id")) for line in opened] == [
        (pay_trace_id, opening.span_id)
    ]

    # Every metric the alerting rules and the dashboard read, on the running services' /metrics.
    families: dict[str, str] = {}
    async with httpx.AsyncClient() as scraper:
        for service in ("invoice-sync", "payment-intake", "status-projector"):
            page = await scraper.get(f"{system.url(service)}/metrics")
            assert page.status_code == 200
            families |= scraped_families(page.text)
    assert exported_names_needed() - sample_names(families) == set(), "read by the rules, served by nobody"

    (tmp_path / "pay-trace.txt").write_text(table(pay))
    print("\nthe pay command's trace as received:\n" + table(pay))
    print("\nthe ERP document's trace as received:\n" + table(erp_trace))


def guest() -> GuestCheckout:
    return GuestCheckout(
        billing_address=BillingAddress(
            email="ap@example.com",
            street="1 Main Street",
            country="US",
            postal_code="02139",
            phone_country_code="+1",
            phone_number="6175550100",
        ),
        name_on_card="Pat Buyer",
    )
