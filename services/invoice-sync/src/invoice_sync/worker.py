"""The registration worker: makes the provider hold what each invoice says.

It claims due rows of `registrations` (FOR UPDATE SKIP LOCKED, with a lease so a
crashed worker's claims come back), calls the provider outside any transaction, then
in one transaction records what the provider answered on the invoices, publishes
`invoice.registered` / `invoice.registration_failed` through the outbox and settles
the rows. A provider that stays away gets the calls rescheduled with exponential
backoff (`next_attempt_at`), behind work that is due, so nothing waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import asyncpg
from prometheus_client import Counter

from invoice_sync.adapters.postgres import (
    AcceptedRegistration,
    PendingRegistration,
    RegistrationQueue,
    lock_invoice_rows,
    lock_invoices,
    record_current_registrations,
    save_provider_states,
)
from invoice_sync.domain.model import Invoice, InvoiceKey
from invoice_sync.domain.registration import (
    Accepted,
    Intent,
    Outcome,
    ProviderPort,
    RegistrationRequest,
    WithdrawalRequest,
    intent_for,
    record_outcome,
    retry_delay,
)
from invoice_sync.events import Cause, registered, registration_result
from payments_shared.contracts import utc_now
from payments_shared.messaging import Outbox, is_transient
from payments_shared.rounds import run_rounds
from payments_shared.topics import TopicRegistry

log = logging.getLogger(__name__)

CALLS = Counter("invoice_sync_provider_calls_total", "Provider answers per invoice", ["action", "outcome"])


class RegistrationWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        provider: ProviderPort,
        registry: TopicRegistry,
        *,
        on_commit: Callable[[], None] = lambda: None,
        batch_size: int = 500,
        concurrency: int = 2,
        lease_s: float = 60.0,
        idle_poll_s: float = 0.5,
    ) -> None:
        self._pool = pool
        self._provider = provider
        self._registry = registry
        self._on_commit = on_commit
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self.ready = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        self.ready = True
        try:
            await asyncio.gather(*(self._loop(stopping) for _ in range(self._concurrency)))
        finally:
            self.ready = False

    async def _loop(self, stopping: asyncio.Event) -> None:
        await run_rounds(
            "registration worker", self.run_once, stopping, idle_s=self._idle_poll_s, wake=self._wake
        )

    async def run_once(self) -> int:
        """Claim, call, record one batch; the number of calls claimed (0: nothing due)."""
        async with self._pool.acquire() as conn:
            claimed = await RegistrationQueue(conn).claim(self._batch_size, self._lease_s)
        if not claimed:
            return 0
        answered: list[tuple[PendingRegistration, Outcome]] = []
        unanswered: list[tuple[PendingRegistration, float]] = []
        error = ""
        for action in ("register", "withdraw"):
            pending = [p for p in claimed if p.intent.action == action]
            if not pending:
                continue
            try:
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
        async with self._pool.acquire() as conn, conn.transaction():
            await RegistrationQueue(conn).reschedule(unanswered, error)
            if answered:
                await self._record(conn, answered)
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

    async def _record(
        self, conn: asyncpg.Connection, answered: Sequence[tuple[PendingRegistration, Outcome]]
    ) -> None:
        # Every invoice answered about is locked first, in key order, like the consumer
        # does: neither can then wait on the other in a cycle.
        await lock_invoice_rows(conn, [p.key for p, _ in answered])
        topic = self._registry.invoices.name
        outbox = Outbox(self._registry)
        now = utc_now()
        # The common answer (accepted, and still the invoice's open amount) in one statement.
        recorded = await record_current_registrations(
            conn,
            [
                AcceptedRegistration(
                    p.account_id,
                    p.invoice_number,
                    p.intent.amount_minor,
                    p.intent.currency,
                    o.provider_invoice_id,
                )
                for p, o in answered
                if isinstance(o, Accepted)
                and p.intent.action == "register"
                and p.intent.amount_minor is not None
                and p.intent.currency is not None
            ],
        )
        for r in recorded:
            event = registered(
                Cause.stored(r.account_id, r.correlation_id, r.source_event_id),
                invoice_number=r.invoice_number,
                erp_version=r.erp_version,
                provider_invoice_id=r.provider_invoice_id,
                amount_minor=r.amount_minor,
                currency=r.currency,
                occurred_at=now,
            )
            outbox.add(event.outgoing(topic))
        done = {(r.account_id, r.invoice_number) for r in recorded}
        rest = [(p, o) for p, o in answered if p.key not in done]
        if rest:
            await self._record_through_domain(conn, rest, outbox, topic)
        await outbox.write(conn)

    async def _record_through_domain(
        self,
        conn: asyncpg.Connection,
        answered: Sequence[tuple[PendingRegistration, Outcome]],
        outbox: Outbox,
        topic: str,
    ) -> None:
        """Every other answer: refusals, withdrawals, invoices that moved on meanwhile."""
        keys = [p.key for p, _ in answered]
        invoices = {i.key: i for i in await lock_invoices(conn, keys)}
        queue = RegistrationQueue(conn)
        revisions = await queue.revisions(keys)
        changed: list[Invoice] = []
        drop: list[InvoiceKey] = []
        schedule: list[tuple[Invoice, Intent]] = []
        for pending, outcome in answered:
            invoice = invoices.get(pending.key)
            if invoice is None:  # cannot happen: rows are only queued for stored invoices
                drop.append(pending.key)
                continue
            updated, results = record_outcome(invoice, pending.intent, outcome)
            invoices[pending.key] = updated
            changed.append(updated)
            for result in results:
                outbox.add(registration_result(result).outgoing(topic))
            next_intent = intent_for(updated)
            revision = revisions.get(pending.key)
            if next_intent is None:
                if revision is not None:
                    drop.append(pending.key)
            elif revision is None or revision == pending.revision:
                # The invoice moved on while the provider was being asked.
                schedule.append((updated, next_intent))
        await save_provider_states(conn, changed)
        await queue.drop(drop)
        await queue.schedule(schedule)
