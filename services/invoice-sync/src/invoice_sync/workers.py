"""The registration worker: makes the provider hold what each invoice says.

It claims due rows of `registrations` (FOR UPDATE SKIP LOCKED, with a lease so a
crashed worker's claims come back), calls the provider outside any transaction, then
in one unit of work hands the answers to the handler that records them on the
invoices, publishes `invoice.registered` / `invoice.registration_failed` and settles
the calls. A provider that stays away gets the calls rescheduled with exponential
backoff (`next_attempt_at`), behind work that is due, so nothing waits on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import Span
from prometheus_client import Counter

from invoice_sync.domain.model import InvoiceKey
from invoice_sync.domain.registration import (
    Accepted,
    Outcome,
    PendingRegistration,
    ProviderPort,
    RegistrationRequest,
    WithdrawalRequest,
    retry_delay,
)
from invoice_sync.handlers import on_provider_answers
from invoice_sync.unit_of_work import UnitOfWork
from payments_platform import tracing
from payments_platform.messaging import is_transient
from payments_platform.workers import Worker

log = logging.getLogger(__name__)

CALLS = Counter("invoice_sync_provider_calls_total", "Provider answers per invoice", ["action", "outcome"])

UnitsOfWork = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


class RegistrationWorker(Worker):
    name = "registration worker"

    def __init__(
        self,
        units: UnitsOfWork,
        provider: ProviderPort,
        *,
        on_commit: Callable[[], None] = lambda: None,
        batch_size: int = 500,
        concurrency: int = 2,
        lease_s: float = 60.0,
        idle_poll_s: float = 0.5,
    ) -> None:
        super().__init__(idle_s=idle_poll_s, loops=concurrency)
        self._units = units
        self._provider = provider
        self._on_commit = on_commit
        self._batch_size = batch_size
        self._lease_s = lease_s

    async def run_once(self) -> int:
        """Claim, call, record one batch; the number of calls claimed (0: nothing due)."""
        async with self._units() as uow:
            claimed = await uow.registrations.claim(self._batch_size, self._lease_s)
            await uow.commit()
        if not claimed:
            return 0
        spans: dict[UUID, Span] = {}
        if tracing.ENABLED:
            async with self._units() as uow:
                traces = await uow.registrations.traces_of([p.key for p in claimed])
            spans = _registration_spans(claimed, traces)
        try:
            with tracing.causing(spans):
                return await self._register(claimed, spans)
        finally:
            for span in spans.values():
                span.end()

    async def _register(self, claimed: list[PendingRegistration], spans: dict[UUID, Span]) -> int:
        answered: list[tuple[PendingRegistration, Outcome]] = []
        unanswered: list[tuple[PendingRegistration, float]] = []
        error = ""
        for action in ("register", "withdraw"):
            pending = [p for p in claimed if p.intent.action == action]
            if not pending:
                continue
            try:
                with _under_first(pending, spans):
                    outcomes = await self._call(action, pending)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                error = repr(exc)
                unanswered += [(p, retry_delay(p.attempts)) for p in pending]
                log.warning(
                    "provider unavailable; calls rescheduled",
                    extra={"action": action, "calls": len(pending), "error": error},
                )
                continue
            answered += zip(pending, outcomes, strict=True)
        async with self._units() as uow:
            await uow.registrations.reschedule(unanswered, error)
            if answered:
                await on_provider_answers(answered, uow)
            await uow.commit()
        self._on_commit()
        return len(claimed)

    async def _call(self, action: str, pending: Sequence[PendingRegistration]) -> list[Outcome]:
        started = time.perf_counter()
        if action == "register":
            outcomes = await self._provider.register(
                [
                    RegistrationRequest(
                        p.account_id,
                        p.invoice_number,
                        p.intent.amount_minor or 0,
                        p.intent.currency or "",
                    )
                    for p in pending
                ]
            )
        else:
            outcomes = await self._provider.withdraw(
                [WithdrawalRequest(p.account_id, p.invoice_number) for p in pending]
            )
        accepted = sum(isinstance(o, Accepted) for o in outcomes)
        CALLS.labels(action, "accepted").inc(accepted)
        CALLS.labels(action, "refused").inc(len(outcomes) - accepted)
        log.debug(
            "provider answered",
            extra={
                "action": action,
                "calls": len(pending),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )
        return outcomes


def _cause(pending: PendingRegistration) -> UUID | None:
    try:
        return UUID(pending.cause_event_id) if pending.cause_event_id else None
    except ValueError:
        return None


def _registration_spans(
    claimed: Sequence[PendingRegistration], traces: dict[InvoiceKey, str]
) -> dict[UUID, Span]:
    """A span per claimed call in the trace of the document that queued it, by the
    document's event id (what the events the answer publishes name as their cause)."""
    spans: dict[UUID, Span] = {}
    for pending in claimed:
        cause = _cause(pending)
        if cause is None or cause in spans:
            continue
        spans[cause] = tracing.start(
            f"{pending.intent.action} invoice",
            parent=tracing.parse(traces.get(pending.key)),
            attributes={
                "payments.account_id": pending.account_id,
                "payments.invoice_number": pending.invoice_number,
                "payments.registration.attempt": pending.attempts,
            },
        )
    return spans


@contextmanager
def _under_first(pending: Sequence[PendingRegistration], spans: dict[UUID, Span]) -> Iterator[None]:
    """The provider call of a batch is one request for many invoices, so one of their
    traces can hold it: the first invoice's. The other invoices' spans link to that one."""
    traced = [spans[c] for c in map(_cause, pending) if c is not None and c in spans]
    if not traced:
        yield
        return
    first = traced[0]
    for other in traced[1:]:
        other.add_link(first.get_span_context(), {"payments.batched_with": True})
    with trace.use_span(first, end_on_exit=False):
        yield
