"""Version ordering of the mirror and what the provider must be told."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from invoice_sync.domain import mirror
from invoice_sync.domain.mirror import BalanceChanged, Closed, Source, Synced
from invoice_sync.domain.model import Invoice, InvoiceDetails, ProviderState
from invoice_sync.domain.registration import (
    Accepted,
    Intent,
    Refused,
    Registered,
    RegistrationFailed,
    intent_for,
    record_outcome,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def details(open_minor: int = 10000, total_minor: int = 10000, currency: str = "USD") -> InvoiceDetails:
    return InvoiceDetails(
        invoice_number="INV-1",
        order_number=None,
        po_number=None,
        invoice_date=date(2026, 11, 1),
        due_date=date(2026, 12, 1),
        currency=currency,
        total_minor=total_minor,
        open_minor=open_minor,
        billing_country="US",
    )


def source(n: int = 0) -> Source:
    return Source(f"e{n}", f"c{n}", T0 + timedelta(minutes=n))


def apply(current: Invoice | None, version: int, open_minor: int = 10000, status: str = "open"):
    return mirror.upsert(
        current,
        account_id="ACC",
        version=version,
        status=status,  # type: ignore[arg-type]
        details=details(open_minor),
        source=source(version),
    )


def test_first_sight_is_synced() -> None:
    invoice, happened = apply(None, 1)
    assert invoice is not None
    assert invoice.erp_version == 1
    assert [type(h) for h in happened] == [Synced]


def test_an_older_version_and_a_repeat_have_no_effect() -> None:
    v2, _ = apply(None, 2)
    assert apply(v2, 1) == (v2, [])
    assert apply(v2, 2, open_minor=1) == (v2, [])


def test_a_changed_open_amount_is_a_balance_change() -> None:
    v1, _ = apply(None, 1, open_minor=10000)
    _v2, happened = apply(v1, 2, open_minor=4000)
    assert [type(h) for h in happened] == [Synced, BalanceChanged]
    change = happened[1]
    assert isinstance(change, BalanceChanged)
    assert change.previous_open_minor == 10000


def test_a_closed_status_closes_once() -> None:
    v1, _ = apply(None, 1)
    v2, happened = apply(v1, 2, open_minor=0, status="closed")
    assert [type(h) for h in happened] == [Synced, BalanceChanged, Closed]
    _, again = apply(v2, 3, open_minor=0, status="closed")
    assert [type(h) for h in again] == [Synced]


def test_cancelling_an_unknown_invoice_leaves_a_tombstone_older_documents_cannot_pass() -> None:
    tomb, happened = mirror.cancel(None, account_id="ACC", invoice_number="INV-1", version=5, source=source())
    assert happened == []
    assert tomb is not None
    assert tomb.details is None
    assert apply(tomb, 4) == (tomb, [])


@given(st.permutations(list(range(1, 9))), st.integers(min_value=0, max_value=3))
def test_any_delivery_order_ends_at_the_newest_version(order: list[int], repeats: int) -> None:
    """Whatever order and repeats, the stored invoice is the newest version, and each
    synced event is for a version newer than every one before it."""
    feed = order + order[:repeats]
    current: Invoice | None = None
    synced: list[int] = []
    for version in feed:
        current, happened = apply(current, version, open_minor=version * 100)
        synced += [h.invoice.erp_version for h in happened if isinstance(h, Synced)]
    assert current is not None
    assert current.erp_version == 8
    assert current.details is not None
    assert current.details.open_minor == 800
    assert synced == sorted(set(synced))
    assert synced[-1] == 8


def test_snapshot_closes_an_open_invoice_it_does_not_list_unless_changed_after_it() -> None:
    v1, _ = apply(None, 1)
    assert v1 is not None
    closed, happened = mirror.close_missing(v1, as_of=T0 + timedelta(hours=1), source=source(9))
    assert closed.erp_status == "closed"
    assert closed.closed_by_snapshot
    assert [h.reason for h in happened if isinstance(h, Closed)] == ["missing_from_snapshot"]
    newer = replace(v1, erp_occurred_at=T0 + timedelta(hours=2))
    assert mirror.close_missing(newer, as_of=T0 + timedelta(hours=1), source=source(9)) == (
        newer,
        [],
    )


def test_a_later_snapshot_listing_the_same_version_reopens() -> None:
    v1, _ = apply(None, 1)
    assert v1 is not None
    closed, _ = mirror.close_missing(v1, as_of=T0 + timedelta(hours=1), source=source(9))
    reopened, happened = mirror.upsert(
        closed,
        account_id="ACC",
        version=1,
        status="open",
        details=details(),
        source=source(10),
        from_snapshot=True,
    )
    assert reopened is not None
    assert reopened.erp_status == "open"
    assert [type(h) for h in happened] == [Synced]


def test_snapshots_apply_in_sequence_order() -> None:
    assert mirror.is_newer_snapshot(None, 0)
    assert mirror.is_newer_snapshot(3, 4)
    assert not mirror.is_newer_snapshot(4, 4)
    assert not mirror.is_newer_snapshot(4, 3)


def registered(invoice: Invoice, amount: int) -> Invoice:
    return replace(invoice, provider=ProviderState(amount, "USD", "inv_1"))


def test_an_open_invoice_with_a_balance_is_registered_at_its_open_amount() -> None:
    v1, _ = apply(None, 1, open_minor=700)
    assert v1 is not None
    assert intent_for(v1) == Intent("register", 1, 700, "USD")
    assert intent_for(registered(v1, 700)) is None
    assert intent_for(registered(v1, 900)) == Intent("register", 1, 700, "USD")


def test_zero_balance_or_closed_invoices_are_withdrawn_only_if_registered() -> None:
    zero, _ = apply(None, 1, open_minor=0)
    assert zero is not None
    assert intent_for(zero) is None
    assert intent_for(registered(zero, 500)) == Intent("withdraw", 1)


def test_a_refused_version_is_not_tried_again_but_a_new_version_is() -> None:
    v1, _ = apply(None, 1, open_minor=700)
    assert v1 is not None
    refused, results = record_outcome(v1.payable, Intent("register", 1, 700, "USD"), Refused("blocked", "no"))
    assert [type(r) for r in results] == [RegistrationFailed]
    assert intent_for(refused) is None
    v2, _ = apply(replace(v1, provider=refused.provider), 2, open_minor=700)
    assert v2 is not None
    assert intent_for(v2) == Intent("register", 2, 700, "USD")


def test_registered_is_announced_only_for_the_current_amount() -> None:
    v1, _ = apply(None, 1, open_minor=700)
    assert v1 is not None
    updated, results = record_outcome(v1.payable, Intent("register", 1, 700, "USD"), Accepted("inv_9"))
    assert [type(r) for r in results] == [Registered]
    assert updated.provider.registered_amount_minor == 700
    v2, _ = apply(v1, 2, open_minor=300)  # moved on while the provider was being asked
    assert v2 is not None
    stale, results = record_outcome(v2.payable, Intent("register", 1, 700, "USD"), Accepted("inv_9"))
    assert results == []
    assert intent_for(stale) == Intent("register", 2, 300, "USD")


def test_an_answer_heard_twice_is_announced_once() -> None:
    v1, _ = apply(None, 1, open_minor=700)
    assert v1 is not None
    first, announced = record_outcome(v1.payable, Intent("register", 1, 700, "USD"), Accepted("inv_9"))
    again, repeated = record_outcome(first, Intent("register", 1, 700, "USD"), Accepted("inv_9"))
    assert [type(r) for r in announced] == [Registered] and repeated == []
    assert again == first
    refused, announced = record_outcome(
        v1.payable, Intent("register", 1, 700, "USD"), Refused("blocked", "no")
    )
    again, repeated = record_outcome(refused, Intent("register", 1, 700, "USD"), Refused("blocked", "no"))
    assert [type(r) for r in announced] == [RegistrationFailed] and repeated == []
    assert again == refused
