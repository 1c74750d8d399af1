"""A payment judges the provider's word (pure): the move, the callback log's verdict, the
reason codes and whether an operator must be told."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from payment_intake.domain.payment import Happening, Payment, PaymentStatus, ProviderWord
from payments_contracts.money import Money


def payment(status: PaymentStatus, *, flag_reason: str | None = None) -> Payment:
    return Payment(
        payment_id=UUID(int=1),
        account_id="C1",
        idempotency_key="k",
        status=status,
        currency="USD",
        total_minor=10_000,
        method="guest_checkout",
        scope="invoice",
        command_event_id=UUID(int=2),
        correlation_id=UUID(int=3),
        checkout_id="cs_1",
        expires_at=datetime(2026, 5, 1, tzinfo=UTC),
        open_attempts=1,
        allocations=(("INV-1", 10_000),),
        flag_reason=flag_reason,
    )


def succeeded(minor: int, currency: str = "USD") -> ProviderWord:
    return ProviderWord(Happening.SUCCEEDED, amount=Money(amount_minor=minor, currency=currency))


def test_success_for_the_amount_asked_is_applied_with_no_end_reason() -> None:
    verdict = payment(PaymentStatus.CHECKOUT_OPEN).judge(succeeded(10_000))
    assert verdict.decision.to is PaymentStatus.SUCCEEDED
    assert (verdict.verdict, verdict.note_confirmation, verdict.new_flag) == ("applied", False, None)
    assert verdict.move_reason == "payment.succeeded"
    assert verdict.reason_code == "payment.succeeded"


def test_an_open_move_keeps_no_end_reason() -> None:
    verdict = payment(PaymentStatus.CHECKOUT_OPEN).judge(ProviderWord(Happening.PROCESSING))
    assert verdict.decision.to is PaymentStatus.PROCESSING and verdict.move_reason is None


def test_another_amount_holds_the_payment_and_keeps_what_the_provider_confirmed() -> None:
    verdict = payment(PaymentStatus.CHECKOUT_OPEN).judge(succeeded(9_000))
    assert verdict.decision.to is PaymentStatus.PROCESSING
    assert (verdict.verdict, verdict.note_confirmation) == ("flagged", True)
    assert verdict.new_flag is not None and verdict.new_flag.reason_code == "amount_mismatch"


def test_a_flag_the_payment_already_carries_is_not_announced_again() -> None:
    verdict = payment(PaymentStatus.PROCESSING, flag_reason="amount_mismatch").judge(succeeded(9_000))
    assert verdict.verdict == "flagged" and verdict.new_flag is None


def test_an_end_is_coded_by_what_happened_and_explained_by_the_providers_reason() -> None:
    verdict = payment(PaymentStatus.REQUESTED).judge(ProviderWord(Happening.FAILED, reason="card_declined"))
    assert verdict.decision.to is PaymentStatus.FAILED
    assert (verdict.reason_code, verdict.move_reason) == ("payment_failed", "card_declined")
    expired = payment(PaymentStatus.CHECKOUT_OPEN).judge(ProviderWord(Happening.EXPIRED))
    assert (expired.reason_code, expired.move_reason) == ("checkout_expired", "checkout.expired")


def test_an_end_code_from_status_sync_overrides_both() -> None:
    word = ProviderWord(Happening.FAILED, reason="unknown_at_provider", end_code="unknown_at_provider")
    verdict = payment(PaymentStatus.CHECKOUT_OPEN).judge(word)
    assert (verdict.reason_code, verdict.move_reason) == ("unknown_at_provider", "unknown_at_provider")


def test_a_late_word_is_ignored_and_success_after_the_end_is_flagged() -> None:
    late = payment(PaymentStatus.SUCCEEDED).judge(ProviderWord(Happening.FAILED))
    assert (late.decision.to, late.verdict, late.new_flag) == (None, "ignored", None)
    after_end = payment(PaymentStatus.CANCELLED).judge(succeeded(10_000))
    assert after_end.decision.to is None and after_end.verdict == "flagged"
    assert after_end.new_flag is not None and after_end.new_flag.reason_code == "succeeded_after_end"
