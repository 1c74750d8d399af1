"""Provider answers: what the registration worker hands over after asking the provider."""

from __future__ import annotations

from collections.abc import Sequence

from invoice_sync.domain.registration import Answer, record_answers
from invoice_sync.messages import registration_result
from invoice_sync.unit_of_work import UnitOfWork


async def on_provider_answers(answers: Sequence[Answer], uow: UnitOfWork) -> None:
    """Record the answers on the invoices (as they are now: the ERP may have changed them
    while the provider was being asked), announce what is still current, and queue what
    the provider must be asked next."""
    keys = [pending.key for pending, _ in answers]
    # Invoices first, then their queued calls, in key order, as the consumer locks them:
    # neither can then wait on the other in a cycle.
    invoices = await uow.invoices.payables(keys)
    queued = await uow.registrations.revisions(keys)
    recorded = record_answers(answers, invoices, queued)
    uow.invoices.put_provider_states(recorded.answered.values())
    uow.registrations.update(recorded.queue)
    for result in recorded.results:
        uow.publish(registration_result(result, uow.now))
