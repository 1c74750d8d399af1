"""Provider answers: what the registration worker hands over after asking the provider."""

from __future__ import annotations

from collections.abc import Sequence

from invoice_sync.domain.registration import Outcome, PendingRegistration, after_answer, record_outcome
from invoice_sync.messages import registration_result
from invoice_sync.unit_of_work import UnitOfWork

Answer = tuple[PendingRegistration, Outcome]


async def on_provider_answers(answers: Sequence[Answer], uow: UnitOfWork) -> None:
    """Record each answer on its invoice (as the invoice is now: the ERP may have changed
    it while the provider was being asked), announce what is still current, and queue
    what the provider must be asked next."""
    keys = [pending.key for pending, _ in answers]
    # Invoices first, then their queued calls, in key order, as the consumer locks them:
    # neither can then wait on the other in a cycle.
    await uow.invoices.preload(keys)
    queued = await uow.registrations.revisions(keys)
    for pending, outcome in answers:
        invoice = await uow.invoices.get(*pending.key)
        if invoice is None:  # cannot happen: calls are only queued for stored invoices
            uow.registrations.drop(pending.key)
            continue
        updated, results = record_outcome(invoice, pending.intent, outcome)
        if updated is not invoice:
            uow.invoices.put_provider_state(updated)
        for result in results:
            uow.emit(registration_result(result, uow.now))
        change = after_answer(updated, pending, queued.get(pending.key))
        if change == "drop":
            uow.registrations.drop(pending.key)
        elif change != "keep":
            uow.registrations.schedule(updated, change)
