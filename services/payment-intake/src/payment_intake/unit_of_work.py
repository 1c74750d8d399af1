"""What a handler works with: repositories on the batch's transaction, and publish()."""

from __future__ import annotations

from dataclasses import dataclass

from payment_intake.adapters.postgres import (
    CommandRepository,
    InvoiceFactsRepository,
    PaymentRepository,
)
from payment_intake.adapters.refunds import RefundRepository
from payment_intake.domain.policy import MerchantPolicies
from payments_shared.contracts import Envelope
from payments_shared.messaging import Transaction


@dataclass(frozen=True)
class IntakeConfig:
    policies: MerchantPolicies
    checkout_ttl_s: int = 900


class UnitOfWork:
    def __init__(self, tx: Transaction, config: IntakeConfig) -> None:
        self.connection = tx.connection
        self._outbox = tx.outbox
        self.config = config
        self.invoices = InvoiceFactsRepository(tx.connection)
        self.commands = CommandRepository(tx.connection)
        self.payments = PaymentRepository(tx.connection)
        self.refunds = RefundRepository(tx.connection)

    def publish(self, message: Envelope) -> None:
        self._outbox.publish(message)


def unit_of_work_factory(config: IntakeConfig):  # type: ignore[no-untyped-def]
    def make(tx: Transaction) -> UnitOfWork:
        return UnitOfWork(tx, config)

    return make
