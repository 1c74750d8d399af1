"""invoice-sync on real Kafka and PostgreSQL, registering with the sandbox provider."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from invoice_sync_support import (
    InvoiceSyncParts,
    document,
    headers,
    invoice_events,
    of_type,
    provider_invoices,
    raw,
    sandbox,
    sandbox_provider,
    upserted,
)

from kafka_tools import eventually, produce, read_all
from payments_contracts.erp import (
    ErpAccountSnapshot,
    ErpAccountSnapshotPayload,
    ErpInvoiceCancelled,
    ErpInvoiceCancelledPayload,
)
from payments_contracts.topics import TopicRegistry

pytestmark = pytest.mark.integration


@pytest.fixture
async def provider_url() -> AsyncIterator[str]:
    async with sandbox_provider() as url:
        yield url


@pytest.fixture
async def service(
    database_url: str, kafka_bootstrap: str, topics: TopicRegistry, provider_url: str
) -> AsyncIterator[InvoiceSyncParts]:
    parts = await InvoiceSyncParts(database_url, kafka_bootstrap, topics, provider_url).start()
    yield parts
    await parts.stop()


async def test_out_of_order_and_repeated_documents_have_one_effect_each(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry, provider_url: str
) -> None:
    v1 = upserted("ACC-1", "INV-A", 1, total="100.00")
    v2 = upserted("ACC-1", "INV-A", 2, total="100.00", open_amount="60.00")
    v3 = upserted("ACC-1", "INV-A", 3, total="100.00", open_amount="25.50")
    b1 = upserted("ACC-2", "INV-B", 1, total="10.00")
    # v2 arrives first, then the older v1, a re-sent v2 (new envelope, same version),
    # the very same envelope of B twice, and finally v3.
    resent_v2 = upserted("ACC-1", "INV-A", 2, total="100.00", open_amount="60.00")
    await produce(kafka_bootstrap, topics.erp_invoices.name, [v2, v1, resent_v2, b1, b1, v3])

    def settled(events: list) -> bool:
        registered = of_type(events, "invoice.registered")
        return any(
            e.payload.invoice_number == "INV-A" and e.payload.amount.amount_minor == 2550 for e in registered
        ) and any(e.payload.invoice_number == "INV-B" for e in registered)

    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics), settled, timeout=45, what="registrations"
    )
    synced_a = of_type(events, "invoice.synced", "INV-A")
    assert [e.payload.erp_version for e in synced_a] == [2, 3]
    assert synced_a[-1].payload.open_amount.amount_minor == 2550
    assert synced_a[-1].payload.total.amount_minor == 10000
    assert synced_a[-1].correlation_id == v3.correlation_id
    assert synced_a[-1].causation_id == v3.event_id
    changed = of_type(events, "invoice.balance_changed", "INV-A")
    assert [
        (e.payload.previous_open_amount.amount_minor, e.payload.open_amount.amount_minor) for e in changed
    ] == [(6000, 2550)]
    assert len(of_type(events, "invoice.synced", "INV-B")) == 1
    assert len(of_type(events, "invoice.registered", "INV-B")) == 1

    held = await provider_invoices(provider_url)
    assert held[("ACC-1", "INV-A")]["amount_minor"] == 2550
    assert held[("ACC-2", "INV-B")]["registration_calls"] == 1


async def test_invalid_documents_go_to_the_dead_letter_topic_with_reason_and_position(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry
) -> None:
    bad = [
        upserted("ACC-1", "BAD-CUR", currency="XXY"),
        upserted("ACC-1", "BAD-DEC", total="10.005"),
        upserted("ACC-1", "BAD-OPEN", total="10.00", open_amount="10.01"),
        upserted("ACC-1", "BAD-NEG", total="-5.00", open_amount="0"),
        upserted("ACC-1", "BAD-JPY", total="100.5", currency="JPY"),
    ]
    missing = raw(upserted("ACC-1", "BAD-MISSING"), total=None)
    wrong_type = raw(upserted("ACC-1", "BAD-TYPE"), version="seven")
    good = upserted("ACC-1", "GOOD", total="99.99")
    await produce(kafka_bootstrap, topics.erp_invoices.name, [*bad, missing, wrong_type, good])

    dead = await eventually(
        lambda: read_all(kafka_bootstrap, topics.erp_invoices.dead_letter),
        lambda records: len(records) >= 7,
        timeout=45,
        what="dead letters",
    )
    by_offset = {int(headers(r)["dlq.source.offset"]): headers(r) for r in dead}
    assert len(dead) == 7
    reasons = {offset: h.get("dlq.reason") for offset, h in by_offset.items()}
    assert sorted(r for r in reasons.values() if r) == sorted(
        [
            "unknown_currency",
            "too_many_decimals",
            "open_amount_above_total",
            "negative_amount",
            "too_many_decimals",
        ]
    )
    for h in by_offset.values():
        assert h["dlq.source.topic"] == topics.erp_invoices.name
        assert h["dlq.service"] == "invoice-sync"
        assert h["dlq.error"]
    structural = [h["dlq.error"] for h in by_offset.values() if "dlq.reason" not in h]
    assert any("total" in e and "required" in e.lower() for e in structural)
    assert any("version" in e for e in structural)

    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: bool(of_type(evs, "invoice.registered", "GOOD")),
        timeout=30,
        what="the valid invoice registered",
    )
    assert {e.payload.invoice_number for e in of_type(events, "invoice.synced")} == {"GOOD"}


CARD = "4111 1111 1111 1111"


async def test_every_dead_letter_writes_one_warning_with_its_position_and_error_never_the_payload(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    card_in_document = upserted("ACC-1", "CARD", order_number=CARD)
    not_json = (b"ACC-1", f'{{"order_number": "{CARD}", '.encode())
    good = upserted("ACC-1", "GOOD", total="1.00")
    await produce(kafka_bootstrap, topics.erp_invoices.name, [card_in_document, not_json, good])
    dead = await eventually(
        lambda: read_all(kafka_bootstrap, topics.erp_invoices.dead_letter),
        lambda records: len(records) >= 2,
        timeout=45,
        what="two dead letters",
    )
    await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: bool(of_type(evs, "invoice.synced", "GOOD")),
        timeout=30,
        what="the good document applied",
    )
    lines = [r for r in caplog.records if r.getMessage() == "message dead-lettered"]
    assert sorted(int(headers(d)["dlq.source.offset"]) for d in dead) == sorted(r.offset for r in lines)  # type: ignore[attr-defined]
    for line in lines:
        assert line.levelno == logging.WARNING
        fields = vars(line)
        assert fields["topic"] == topics.erp_invoices.name and isinstance(fields["partition"], int)
        assert fields["service"] == "invoice-sync" and fields["error"]
    reasons = {vars(line).get("reason") for line in lines}
    assert reasons == {"card_number_in_document", None}  # None: the structural one
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert CARD not in text and CARD.replace(" ", "") not in text, text


# The broker's default limit on a record batch (message.max.bytes: 1 MiB plus the 12 bytes
# of log overhead), which every topic of the registry has.
BROKER_LIMIT = 1_048_588


async def test_a_document_whose_synced_event_would_not_fit_the_broker_is_dead_lettered_at_the_door(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry
) -> None:
    big = upserted("ACC-1", "BIG", order_number="")
    padding = 1_048_500 - len(big.model_dump_json().encode())  # the top of the range seen lost
    big = big.model_copy(update={"payload": big.payload.model_copy(update={"order_number": "x" * padding})})
    value = big.model_dump_json().encode()
    assert len(value) == 1_048_500
    nxt = upserted("ACC-1", "NEXT", total="12.00")
    # The ERP's producer may send up to the broker's limit; the broker takes the document.
    erp = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2 * BROKER_LIMIT)
    await erp.start()
    try:
        accepted = await erp.send_and_wait(topics.erp_invoices.name, value, key=big.key())
        await erp.send_and_wait(topics.erp_invoices.name, nxt.model_dump_json().encode(), key=nxt.key())
    finally:
        await erp.stop()

    dead = await eventually(
        lambda: read_all(kafka_bootstrap, topics.erp_invoices.dead_letter),
        bool,
        timeout=45,
        what="the dead letter of the document too large",
    )
    assert len(dead) == 1
    letter = headers(dead[0])
    assert letter["dlq.reason"] == "document_too_large", letter
    assert int(letter["dlq.source.offset"]) == accepted.offset
    assert letter["dlq.source.partition"] == str(accepted.partition)
    # The ERP team reads what was too large, by how much, and the limit.
    assert "invoice.synced" in letter["dlq.error"] and f"{BROKER_LIMIT:,}" in letter["dlq.error"], letter
    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: bool(of_type(evs, "invoice.registered", "NEXT")),
        timeout=45,
        what="the next document synced and registered",
    )
    assert not of_type(events, "invoice.synced", "BIG")
    assert service.pool is not None
    assert await service.pool.fetchval("SELECT count(*) FROM outbox_unpublishable") == 0
    assert await service.pool.fetchval("SELECT count(*) FROM invoices WHERE invoice_number = 'BIG'") == 0


async def test_snapshot_closes_missing_invoices_and_cancel_withdraws(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry, provider_url: str
) -> None:
    docs = [upserted("ACC-S", n, total="40.00") for n in ("S-A", "S-B", "S-C", "S-D")]
    await produce(kafka_bootstrap, topics.erp_invoices.name, docs)
    await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: len(of_type(evs, "invoice.registered")) == 4,
        timeout=30,
        what="four registrations",
    )
    as_of = datetime.now(UTC)
    snapshot = ErpAccountSnapshot.originating(
        producer="erp",
        account_id="ACC-S",
        payload=ErpAccountSnapshotPayload(
            as_of=as_of,
            sequence=5,
            invoices=[
                document("ACC-S", "S-A", 1, total="40.00"),
                document("ACC-S", "S-B", 2, total="40.00", open_amount="15.00"),
                document("ACC-S", "S-D", 1, total="40.00"),
            ],
        ),
    )
    older = ErpAccountSnapshot.originating(
        producer="erp",
        account_id="ACC-S",
        payload=ErpAccountSnapshotPayload(as_of=as_of, sequence=4, invoices=[]),
    )
    cancel_d = ErpInvoiceCancelled.originating(
        producer="erp",
        account_id="ACC-S",
        payload=ErpInvoiceCancelledPayload(invoice_number="S-D", version=2),
    )
    await produce(kafka_bootstrap, topics.erp_invoices.name, [snapshot, older, cancel_d])

    def settled(evs: list) -> bool:
        return len(of_type(evs, "invoice.closed")) >= 2 and any(
            e.payload.amount.amount_minor == 1500 for e in of_type(evs, "invoice.registered", "S-B")
        )

    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        settled,
        timeout=30,
        what="snapshot applied",
    )
    closed = {e.payload.invoice_number: e for e in of_type(events, "invoice.closed")}
    assert set(closed) == {"S-C", "S-D"}
    assert closed["S-C"].payload.reason == "missing_from_snapshot"
    assert closed["S-C"].correlation_id == snapshot.correlation_id
    assert closed["S-D"].payload.reason == "cancelled"
    assert of_type(events, "invoice.synced", "S-D")[-1].payload.erp_status == "cancelled"
    # The older snapshot (sequence 4, listing nothing) closed nothing more.
    assert len(of_type(events, "invoice.closed")) == 2

    held = await eventually(
        lambda: provider_invoices(provider_url),
        lambda h: (
            h[("ACC-S", "S-C")]["status"] == "withdrawn" and h[("ACC-S", "S-D")]["status"] == "withdrawn"
        ),
        timeout=30,
        what="withdrawals",
    )
    assert held[("ACC-S", "S-A")]["status"] == "registered"
    assert held[("ACC-S", "S-A")]["registration_calls"] == 1
    assert held[("ACC-S", "S-B")]["amount_minor"] == 1500


async def test_provider_down_then_up_registers_each_invoice_once(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry, provider_url: str
) -> None:
    await sandbox(provider_url, "POST", "/sandbox/faults", {"target": "registration", "mode": "error"})
    docs = [upserted(f"ACC-{i % 5}", f"DOWN-{i:03d}", total="12.34") for i in range(60)]
    await produce(kafka_bootstrap, topics.erp_invoices.name, docs)
    assert service.pool is not None

    async def retrying_rows() -> int:
        return int(
            await service.pool.fetchval(  # type: ignore[union-attr]
                "SELECT count(*) FROM registrations WHERE attempts > 0 AND last_error IS NOT NULL"
            )
        )

    await eventually(retrying_rows, lambda n: n == 60, timeout=30, what="calls rescheduled")
    events = await invoice_events(kafka_bootstrap, topics)
    assert len(of_type(events, "invoice.synced")) == 60
    assert of_type(events, "invoice.registered") == []

    await sandbox(provider_url, "DELETE", "/sandbox/faults")
    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: len(of_type(evs, "invoice.registered")) >= 60,
        timeout=60,
        what="every invoice registered after the outage",
    )
    registered = of_type(events, "invoice.registered")
    assert sorted(e.payload.invoice_number for e in registered) == sorted(
        d.payload.invoice_number for d in docs
    )
    held = await provider_invoices(provider_url)
    assert len(held) == 60
    assert {h["registration_calls"] for h in held.values()} == {1}


async def test_permanent_refusal_is_published_and_does_not_block_others(
    service: InvoiceSyncParts, kafka_bootstrap: str, topics: TopicRegistry, provider_url: str
) -> None:
    await sandbox(
        provider_url,
        "POST",
        "/sandbox/refusals",
        {"account_id": "ACC-R", "invoice_number": "R-1", "code": "merchant_blocked"},
    )
    await produce(
        kafka_bootstrap,
        topics.erp_invoices.name,
        [upserted("ACC-R", "R-1"), upserted("ACC-R", "R-2"), upserted("ACC-Q", "Q-1")],
    )
    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: (
            len(of_type(evs, "invoice.registered")) == 2
            and len(of_type(evs, "invoice.registration_failed")) == 1
        ),
        timeout=30,
        what="one refusal, two registrations",
    )
    failed = of_type(events, "invoice.registration_failed")[0]
    assert failed.payload.invoice_number == "R-1"
    assert failed.payload.reason_code == "merchant_blocked"
    assert failed.payload.erp_version == 1

    # A new ERP version is tried again; the provider accepts it now.
    await sandbox(provider_url, "DELETE", "/sandbox/refusals")
    await produce(kafka_bootstrap, topics.erp_invoices.name, [upserted("ACC-R", "R-1", 2)])
    events = await eventually(
        lambda: invoice_events(kafka_bootstrap, topics),
        lambda evs: bool(of_type(evs, "invoice.registered", "R-1")),
        timeout=30,
        what="R-1 registered after its new version",
    )
    assert of_type(events, "invoice.registered", "R-1")[0].payload.erp_version == 2


async def test_crash_between_consuming_and_publishing_duplicates_nothing(
    database_url: str, kafka_bootstrap: str, topics: TopicRegistry, provider_url: str
) -> None:
    docs = [upserted(f"ACC-{i % 4}", f"CR-{i:03d}", total="5.00") for i in range(120)]
    await produce(kafka_bootstrap, topics.erp_invoices.name, docs)
    # First run: everything consumed and committed (outbox filled), nothing published yet.
    first = await InvoiceSyncParts(
        database_url, kafka_bootstrap, topics, provider_url, relay_enabled=False
    ).start()
    assert first.pool is not None
    await eventually(
        lambda: first.pool.fetchval("SELECT count(*) FROM invoices"),  # type: ignore[union-attr]
        lambda n: n == 120,
        timeout=30,
        what="documents consumed",
    )
    # And registered (not crashed in the middle of a provider call, whose lease would
    # keep those invoices from the next worker for a minute): the outbox then holds
    # every event, none of them published.
    await eventually(
        lambda: first.pool.fetchval("SELECT count(*) FROM registrations"),  # type: ignore[union-attr]
        lambda n: n == 0,
        timeout=30,
        what="provider answers recorded",
    )
    await first.crash()
    assert await invoice_events(kafka_bootstrap, topics) == []

    second = await InvoiceSyncParts(database_url, kafka_bootstrap, topics, provider_url).start()
    try:
        events = await eventually(
            lambda: invoice_events(kafka_bootstrap, topics),
            lambda evs: len(of_type(evs, "invoice.registered")) >= 120,
            timeout=45,
            what="all registered after the restart",
        )
    finally:
        await second.stop()
    synced = of_type(events, "invoice.synced")
    assert len(synced) == 120
    assert len({e.payload.invoice_number for e in synced}) == 120
    assert len({e.event_id for e in events}) == len(events)
    assert len(of_type(events, "invoice.registered")) == 120
    held = await provider_invoices(provider_url)
    assert {h["registration_calls"] for h in held.values()} == {1}
