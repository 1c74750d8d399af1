"""A refund shown on an invoice: the newest word wins, a settled refund beats its request
whatever order a replay delivers them in, and the balance does not move (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from status_projector.domain.model import Invoice, Refund

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def invoice() -> Invoice:
    inv = Invoice(
        account_id="A",
        invoice_number="INV-1",
        currency="USD",
        order_number=None,
        po_number=None,
        invoice_date=date(2026, 1, 1),
        due_date=date(2026, 2, 1),
        total_minor=10_000,
        open_amount_minor=10_000,
        erp_status="open",
        erp_version=1,
        billing_country="US",
        registration="registered",
    )
    inv.refresh()
    return inv


def test_a_settled_refund_keeps_its_reason_and_beats_its_request_in_any_order() -> None:
    asked = Refund("P1", "requested", 10_000, "late_payment", T0)
    done = Refund("P1", "refunded", 10_000, None, T0 + timedelta(seconds=1))
    forward, backward = invoice(), invoice()
    forward.note_refund(asked)
    forward.note_refund(done)
    backward.note_refund(done)
    backward.note_refund(asked)
    assert forward.refund is not None and forward.refund.state == "refunded"
    assert forward.refund.reason_code == "late_payment"
    assert backward.refund is not None and backward.refund.state == "refunded"


def test_a_newer_refund_of_another_payment_replaces_the_shown_one() -> None:
    inv = invoice()
    inv.note_refund(Refund("P1", "refunded", 10_000, "late_payment", T0))
    inv.note_refund(Refund("P2", "requested", 5_000, "double_payment", T0 + timedelta(minutes=1)))
    assert inv.refund is not None and inv.refund.payment_id == "P2"
    inv.note_refund(Refund("P1", "refunded", 10_000, "late_payment", T0))  # replayed: older
    assert inv.refund.payment_id == "P2"


def test_a_refund_does_not_change_the_balance_or_the_pay_status() -> None:
    inv = invoice()
    before = (inv.balance_minor, inv.pay_status)
    inv.note_refund(Refund("P1", "refunded", 10_000, "double_payment", T0))
    inv.refresh()
    assert (inv.balance_minor, inv.pay_status) == before == (10_000, "payable")
