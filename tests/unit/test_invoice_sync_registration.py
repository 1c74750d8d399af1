"""Recording a whole batch of provider answers (`record_answers`): the same decisions as
recording each answer on its own, and what the provider is asked next."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from invoice_sync.domain.model import Payable, ProviderState
from invoice_sync.domain.registration import (
    Accepted,
    Answer,
    Intent,
    Outcome,
    PendingRegistration,
    Refused,
    Registered,
    RegistrationFailed,
    after_answer,
    intent_for,
    record_answers,
    record_outcome,
)

AMOUNTS = st.sampled_from([0, 500, 700])
CURRENCIES = st.sampled_from(["USD", "EUR"])


@st.composite
def provider_states(draw: Any) -> ProviderState:
    if draw(st.booleans()):
        return ProviderState(draw(AMOUNTS), draw(CURRENCIES), "pi_0")
    refused = draw(st.sampled_from([None, 1, 2]))
    return ProviderState(refusal=None if refused is None else "blocked", refused_version=refused)


@st.composite
def answered_invoice(draw: Any, number: int) -> tuple[Payable, Answer, int | None]:
    """An invoice as it is now, an answer about it, and the revision of its queued call."""
    tombstone = draw(st.booleans()) and draw(st.booleans())
    invoice = Payable(
        account_id=f"ACC-{number % 3}",
        invoice_number=f"INV-{number}",
        erp_version=draw(st.integers(1, 3)),
        erp_status=draw(st.sampled_from(["open", "open", "closed", "cancelled"])),
        open_minor=None if tombstone else draw(AMOUNTS),
        currency=None if tombstone else draw(CURRENCIES),
        source_event_id=None,
        correlation_id=None,
        provider=draw(provider_states()),
    )
    if draw(st.booleans()):
        intent = Intent("register", draw(st.integers(1, 3)), draw(AMOUNTS.filter(bool)), draw(CURRENCIES))
    else:
        intent = Intent("withdraw", draw(st.integers(1, 3)))
    asked_revision = draw(st.integers(1, 5))
    pending = PendingRegistration(
        invoice.account_id, invoice.invoice_number, intent, asked_revision, None, None, 1
    )
    outcome: Outcome = draw(st.sampled_from([Accepted("pi_1"), Refused("blocked", "no")]))
    queued = draw(st.sampled_from([None, asked_revision, asked_revision + 1]))
    return invoice, (pending, outcome), queued


@st.composite
def batches(draw: Any) -> tuple[dict[tuple[str, str], Payable], list[Answer], dict[tuple[str, str], int]]:
    size = draw(st.integers(0, 12))
    drawn = [draw(answered_invoice(n)) for n in range(size)]
    invoices = {i.key: i for i, _, _ in drawn}
    queued = {i.key: q for i, _, q in drawn if q is not None}
    return invoices, [a for _, a, _ in drawn], queued


@given(batches())
def test_a_batch_is_recorded_as_each_answer_would_be_on_its_own(batch: Any) -> None:
    invoices, answers, queued = batch
    recorded = record_answers(answers, invoices, queued)
    for pending, outcome in answers:
        alone, results = record_outcome(invoices[pending.key], pending.intent, outcome)
        assert recorded.answered.get(pending.key, invoices[pending.key]) == alone
        assert [r for r in recorded.results if r.invoice.key == pending.key] == results
        change = after_answer(alone, pending, queued.get(pending.key))
        if change == "keep":
            assert pending.key not in recorded.queue
        elif change == "drop":
            assert recorded.queue[pending.key] is None
        else:
            assert recorded.queue[pending.key] == (alone, change)


@given(batches())
def test_the_provider_is_asked_what_each_invoice_still_needs_unless_a_newer_call_replaced_it(
    batch: Any,
) -> None:
    invoices, answers, queued = batch
    recorded = record_answers(answers, invoices, queued)
    for pending, _ in answers:
        now = recorded.answered.get(pending.key, invoices[pending.key])
        wanted = intent_for(now)
        replaced = queued.get(pending.key) not in (None, pending.revision)
        call = recorded.queue.get(pending.key, "unchanged")
        if wanted is None:
            assert call == (None if pending.key in queued else "unchanged")
        elif replaced:
            assert call == "unchanged"  # the newer call is asked next
        else:
            assert call == (now, wanted)


@given(batches())
def test_registered_is_announced_only_for_what_the_invoice_now_asks_collected(batch: Any) -> None:
    invoices, answers, queued = batch
    recorded = record_answers(answers, invoices, queued)
    for result in recorded.results:
        invoice = recorded.answered[result.invoice.key]
        if isinstance(result, Registered):
            assert result.amount_minor == invoice.payable_balance_minor > 0
            assert invoice.provider.registered_amount_minor == result.amount_minor
            assert intent_for(invoice) is None
        else:
            assert isinstance(result, RegistrationFailed)
            assert result.erp_version == invoice.erp_version == invoice.provider.refused_version


@given(batches())
def test_the_same_answers_heard_again_change_and_announce_nothing(batch: Any) -> None:
    invoices, answers, queued = batch
    first = record_answers(answers, invoices, queued)
    again = record_answers(answers, {**invoices, **first.answered}, queued)
    assert again.results == []
    assert all(again.answered[k] == first.answered[k] for k in again.answered)


def test_an_answer_about_an_invoice_no_longer_stored_drops_its_call() -> None:
    pending = PendingRegistration("ACC-1", "INV-9", Intent("withdraw", 1), 4, None, None, 1)
    recorded = record_answers([(pending, Accepted("pi_1"))], {}, {pending.key: 4})
    assert recorded.queue == {pending.key: None}
    assert (recorded.answered, recorded.results) == ({}, [])
