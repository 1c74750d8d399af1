"""The one pay algorithm: pay commands answered in order, a single command being a run
of one.

Each command is answered exactly once under its idempotency key: a key used before
gets its first answer again (or a refusal if the content differs); otherwise the
policy decides, and an accepted command opens a payment. A later command of the same
run sees what the earlier ones did: the keys they answered and the invoices they
opened payments on (pending from then on), exactly as it would had they been stored
one by one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payments_contracts.card_numbers import redact_card_numbers
from payments_contracts.money import Money
from payments_contracts.remittance import RemittanceChannel

from .intake import CARD_NUMBER_REJECTION, Accepted, AccountView, PayRequest, decide
from .payment import NewPayment
from .policy import MerchantPolicies
from .rejections import Reason, Rejection
from .remittance import RemittanceAnswer, answer_remittance, details_for

ACCOUNT_WITHOUT_MERCHANT = Rejection(
    Reason.ACCOUNT_WITHOUT_MERCHANT,
    "This account is not set up for online payment. Please contact us.",
)
KEY_REUSED = Rejection(
    Reason.IDEMPOTENCY_KEY_REUSED,
    "This request was already submitted with different details. Start a new payment instead.",
)


@dataclass(frozen=True)
class StoredCommand:
    """A command's first answer, kept under its idempotency key."""

    fingerprint: str
    outcome_type: str
    outcome: Mapping[str, Any]  # {"event_id": ..., "payload": ...} of the answer


@dataclass(frozen=True)
class Answered:
    account_id: str
    key: str
    stored: StoredCommand


def fingerprint(command_type: str, content: Mapping[str, Any]) -> str:
    canonical = json.dumps({"type": command_type, "payload": content}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def card_key(key: str, fingerprint: str) -> str:
    """The key a card-carrying command is remembered under: redacted, and told apart from
    other such commands by its redacted content (two keys that differ only in the card
    number would otherwise collide as one reused key)."""
    return f"{redact_card_numbers(key)[:100]}#{fingerprint[:12]}"


def invoice_taken(payment: NewPayment) -> Rejection:
    """The answer when another payment won the invoice first (the database said so)."""
    return Rejection(
        Reason.PAYMENT_PENDING,
        "A payment against this invoice is already pending.",
        tuple(n for n, _ in payment.allocations),
    )


class PayRun:
    """Consecutive pay commands decided in order against the answers and invoice facts
    loaded for them; collects what to store (payments opened, answers given)."""

    def __init__(
        self, answers: Mapping[tuple[str, str], StoredCommand], views: Mapping[str, AccountView]
    ) -> None:
        self._answers = dict(answers)
        self._views = dict(views)
        self.opened: list[NewPayment] = []
        self.answered: list[Answered] = []

    def first_answer(self, account_id: str, key: str) -> StoredCommand | None:
        return self._answers.get((account_id, key))

    def decide(
        self,
        account_id: str,
        request: PayRequest | None,
        policies: MerchantPolicies,
        channel: RemittanceChannel = "check",
    ) -> Rejection | Accepted | RemittanceAnswer:
        """The merchant policy's decision (request None: the command carried a card
        number). An account no merchant lists is refused; remittance is answered with the
        merchant's details for the chosen channel, never opened."""
        if request is None:
            return CARD_NUMBER_REJECTION
        if not policies.accepts(account_id):
            return ACCOUNT_WITHOUT_MERCHANT
        policy = policies.for_account(account_id)
        view = self._views.get(account_id, AccountView(known=True, invoices={}))
        decision = decide(request, view, policy)
        if isinstance(decision, Accepted) and decision.method == "remittance":
            total = Money(amount_minor=decision.total_minor, currency=decision.currency)
            configured = policies.remittance_for(account_id)
            return answer_remittance(
                decision,
                channel,
                account_id,
                details_for(policy, configured),
                str(total),
                configured=configured is not None,
            )
        return decision

    def open(self, payment: NewPayment) -> None:
        self.opened.append(payment)
        view = self._views.get(payment.account_id)
        if view is not None:
            self._views[payment.account_id] = view.after_opening(n for n, _ in payment.allocations)

    def answer(self, account_id: str, key: str, stored: StoredCommand) -> None:
        self._answers[(account_id, key)] = stored
        self.answered.append(Answered(account_id, key, stored))
