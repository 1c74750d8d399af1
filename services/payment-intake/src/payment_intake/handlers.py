"""One handler per message payment-intake consumes: invoice facts, pay commands, callbacks.

Every pay command is answered exactly once on `payments.events`: `payment.rejected`
or `payment.requested` (a cancel: `payment.cancelled` or `payment.rejected`). The
provider is never called from here; a requested payment is picked up by the
checkout worker once this transaction has committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeAlias
from uuid import UUID, uuid4

from payment_intake.adapters.postgres import NewPayment, Payment, StoredCommand
from payment_intake.domain import payment as machine
from payment_intake.domain.billing import GuestDetails
from payment_intake.domain.intake import (
    CARD_NUMBER_REJECTION,
    Accepted,
    AccountView,
    PayRequest,
    RequestedInvoice,
    card_number_fields,
    country_restriction,
    decide,
)
from payment_intake.domain.payment import Happening, PaymentStatus
from payment_intake.domain.policy import MerchantPolicies, PaymentPolicy
from payment_intake.domain.rejections import Reason, Rejection
from payment_intake.domain.remittance import (
    RemittanceAnswer,
    answer_remittance,
    details_for,
    remittance_instructions,
)
from payment_intake.outcomes import SERVICE, flagged, transition_outcome
from payment_intake.refunding import flag_money, settle_refund
from payment_intake.unit_of_work import UnitOfWork
from payments_shared.contracts import Envelope
from payments_shared.contracts.invoices import (
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)
from payments_shared.contracts.payments import (
    AccountBalancePaymentChanged,
    AccountBalancePaymentChangedPayload,
    Allocation,
    BillingAddress,
    CancelCheckout,
    CardOnline,
    GuestCheckout,
    InvoiceRestrictionChanged,
    InvoiceRestrictionChangedPayload,
    PayAccountBalance,
    PayInvoice,
    PaymentCancelled,
    PaymentEndedPayload,
    PaymentRejected,
    PaymentRejectedPayload,
    PaymentRequested,
    PaymentRequestedPayload,
    PaySelectedInvoices,
    ProviderCallbackReceived,
    RemittanceInstructions,
)
from payments_shared.domain.card_numbers import redact_card_numbers, redact_document
from payments_shared.domain.money import Money
from payments_shared.messaging import Transaction
from payments_shared.messaging.consumer import BatchHandler, Delivery
from payments_shared.observability import about

log = logging.getLogger(__name__)

PayCommand: TypeAlias = PayInvoice | PaySelectedInvoices | PayAccountBalance

# --- invoice facts ----------------------------------------------------------------------


async def on_invoice_synced(event: InvoiceSynced, uow: UnitOfWork) -> None:
    p = event.payload
    policy = uow.config.policies.for_account(event.account_id)
    restriction = country_restriction(policy, p.billing_country)
    was_restricted = await uow.invoices.synced(
        event.account_id,
        p.invoice_number,
        erp_version=p.erp_version,
        currency=p.open_amount.currency,
        total_minor=p.total.amount_minor,
        open_amount_minor=p.open_amount.amount_minor,
        erp_status=p.erp_status,
        billing_country=p.billing_country,
        posted_refs=[posted.reference for posted in p.posted_payments],
        restricted=restriction is not None,
    )
    await _announce_account_balance_payment(event, uow, policy)
    if was_restricted is None or was_restricted == (restriction is not None):
        return  # a stale version, or nothing changed for the read model
    # The policy is ours, so the read model learns from us that the invoice cannot be paid
    # online (or can again), with the same code and message a pay command would get.
    uow.publish(
        InvoiceRestrictionChanged.following(
            event,
            producer=SERVICE,
            payload=InvoiceRestrictionChangedPayload(
                invoice_number=p.invoice_number,
                restricted=restriction is not None,
                reason_code=None if restriction is None else restriction.reason.value,
                message=None if restriction is None else restriction.message,
            ),
        )
    )


ACCOUNT_WITHOUT_MERCHANT = Rejection(
    Reason.ACCOUNT_WITHOUT_MERCHANT,
    "This account is not set up for online payment. Please contact us.",
)
ACCOUNT_BALANCE_NOT_ALLOWED = Rejection(
    Reason.ACCOUNT_BALANCE_NOT_ALLOWED,
    "Paying the whole account balance is not available: select the invoices to pay.",
)


async def _announce_account_balance_payment(
    event: InvoiceSynced, uow: UnitOfWork, policy: PaymentPolicy
) -> None:
    """The read model learns from the policy owner whether the account-level PAY button
    may show: when an account is first seen and whenever its policy's answer changes."""
    allowed = policy.account_balance
    if not await uow.invoices.account_balance_payment(event.account_id, allowed):
        return
    why = None if allowed else ACCOUNT_BALANCE_NOT_ALLOWED
    uow.publish(
        AccountBalancePaymentChanged.following(
            event,
            producer=SERVICE,
            payload=AccountBalancePaymentChangedPayload(
                allowed=allowed,
                reason_code=None if why is None else why.reason.value,
                message=None if why is None else why.message,
            ),
        )
    )


async def on_invoice_registered(event: InvoiceRegistered, uow: UnitOfWork) -> None:
    p = event.payload
    await uow.invoices.registration(
        event.account_id, p.invoice_number, erp_version=p.erp_version, registered=True
    )


async def on_invoice_registration_failed(event: InvoiceRegistrationFailed, uow: UnitOfWork) -> None:
    p = event.payload
    await uow.invoices.registration(
        event.account_id, p.invoice_number, erp_version=p.erp_version, registered=False
    )


async def on_invoice_closed(event: InvoiceClosed, uow: UnitOfWork) -> None:
    p = event.payload
    await uow.invoices.closed(event.account_id, p.invoice_number, erp_version=p.erp_version)


# --- pay commands -------------------------------------------------------------------------


def _fingerprint(command: Envelope, content: Mapping[str, Any]) -> str:
    canonical = json.dumps({"type": command.type, "payload": content}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _guest(address: BillingAddress | None, name_on_card: str | None) -> GuestDetails | None:
    if address is None:
        return None
    return GuestDetails(
        email=address.email,
        street=address.street,
        address_line2=address.address_line2,
        country=address.country,
        postal_code=address.postal_code,
        phone_country_code=address.phone_country_code,
        phone_number=address.phone_number,
        name_on_card=name_on_card,
    )


def _request(command: PayCommand) -> PayRequest:
    method = command.payload.method
    guest = None
    if isinstance(method, GuestCheckout | CardOnline):
        guest = _guest(method.billing_address, method.name_on_card)
    if isinstance(command, PayInvoice):
        amount = command.payload.amount
        items: tuple[RequestedInvoice, ...] = (
            RequestedInvoice(
                command.payload.invoice_number,
                None if amount is None else amount.amount_minor,
                None if amount is None else amount.currency,
            ),
        )
        return PayRequest("invoice", method.kind, items, guest=guest)
    if isinstance(command, PaySelectedInvoices):
        items = tuple(
            RequestedInvoice(
                i.invoice_number,
                None if i.amount is None else i.amount.amount_minor,
                None if i.amount is None else i.amount.currency,
            )
            for i in command.payload.invoices
        )
        return PayRequest("selected_invoices", method.kind, items, guest=guest)
    return PayRequest("account_balance", method.kind, currency=command.payload.currency, guest=guest)


def _rejected(command: Envelope, key: str, rejection: Rejection) -> PaymentRejected:
    return PaymentRejected.following(
        command,
        producer=SERVICE,
        payload=PaymentRejectedPayload(
            idempotency_key=key,
            command_type=command.type,
            reason_code=rejection.reason.value,
            message=rejection.message,
            invoice_numbers=list(rejection.invoice_numbers),
        ),
    )


def _stored(answer: Envelope) -> str:  # see _PayBatch.answer, the same for a batch
    """What is kept under the idempotency key: the first answer's event id and payload."""
    return json.dumps({"event_id": str(answer.event_id), "payload": answer.payload.model_dump(mode="json")})


async def _answer(uow: UnitOfWork, command: Envelope, key: str, fingerprint: str, answer: Envelope) -> None:
    """Publish the command's one answer and remember it under the idempotency key."""
    uow.publish(answer)
    await uow.commands.answered(command.account_id, key, fingerprint, answer.type, _stored(answer))


_REPEATABLE: dict[str, type[Envelope]] = {
    PaymentRequested.model_fields["type"].default: PaymentRequested,
    PaymentRejected.model_fields["type"].default: PaymentRejected,
    PaymentCancelled.model_fields["type"].default: PaymentCancelled,
    RemittanceInstructions.model_fields["type"].default: RemittanceInstructions,
}


def _repeat(command: Envelope, key: str, fingerprint: str, first: StoredCommand) -> Envelope:
    """The answer to a key used before: the first answer again, or a refusal if the
    content differs."""
    if first.fingerprint != fingerprint:
        return _rejected(
            command,
            key,
            Rejection(
                Reason.IDEMPOTENCY_KEY_REUSED,
                "This request was already submitted with different details. Start a new payment instead.",
            ),
        )
    cls = _REPEATABLE[first.outcome_type]
    payload = dict(first.outcome["payload"])
    if cls is not PaymentCancelled:
        payload["repeat_of"] = first.outcome["event_id"]
    return cls.following(command, producer=SERVICE, payload=payload)


async def _repeat_or_refuse(uow: UnitOfWork, command: Envelope, key: str, fingerprint: str) -> bool:
    """True when `key` was used before: the command is answered here (repeat or misuse)."""
    first = await uow.commands.get(command.account_id, key)
    if first is None:
        return False
    uow.publish(_repeat(command, key, fingerprint, first))
    return True


@dataclass(frozen=True)
class _Pay:
    """A pay command read: its idempotency key and content digest, and what it asks for
    (None when it carried a card number: then nothing of it is kept but a redacted key
    and a digest of the redacted content, so a repeat still gets the same answer)."""

    command: PayCommand
    key: str
    fingerprint: str
    request: PayRequest | None

    @property
    def numbers(self) -> list[str] | None:
        """The invoices it names (None: the whole account)."""
        if self.request is None or self.request.scope == "account_balance":
            return None
        return [i.invoice_number for i in self.request.invoices]


def _card_key(key: str, fingerprint: str) -> str:
    """The key a card-carrying command is remembered under: redacted, and told apart from
    other such commands by its redacted content (two keys that differ only in the card
    number would otherwise collide as one reused key)."""
    return f"{redact_card_numbers(key)[:100]}#{fingerprint[:12]}"


def _read(command: PayCommand) -> _Pay:
    content = command.payload.model_dump(mode="json")
    if card_number_fields(content):
        with about(command):
            log.warning("pay command carried a card number; rejected", extra={"command": command.type})
        fingerprint = _fingerprint(command, redact_document(content))
        return _Pay(command, _card_key(command.payload.idempotency_key, fingerprint), fingerprint, None)
    return _Pay(command, command.payload.idempotency_key, _fingerprint(command, content), _request(command))


def _judge(
    pay: _Pay, view: AccountView, policies: MerchantPolicies
) -> Rejection | Accepted | RemittanceAnswer:
    """The policy's decision; remittance is answered with its details, never opened."""
    if pay.request is None:
        return CARD_NUMBER_REJECTION
    account = pay.command.account_id
    if not policies.accepts(account):
        return ACCOUNT_WITHOUT_MERCHANT
    policy = policies.for_account(account)
    decision = decide(pay.request, view, policy)
    if isinstance(decision, Accepted) and decision.method == "remittance":
        total = Money(amount_minor=decision.total_minor, currency=decision.currency)
        configured = policies.remittance_for(account)
        channel = getattr(pay.command.payload.method, "channel", "check")
        details = details_for(policy, configured)
        return answer_remittance(
            decision, channel, account, details, str(total), configured=configured is not None
        )
    return decision


def _closing(command: Envelope, key: str, decision: Rejection | RemittanceAnswer) -> Envelope:
    """An answer that opens no payment: a refusal, or remittance details."""
    if isinstance(decision, Rejection):
        return _rejected(command, key, decision)
    return remittance_instructions(command, key, decision, producer=SERVICE)


def _requested(pay: _Pay, payment_id: UUID, accepted: Accepted) -> PaymentRequested:
    money = partial(Money, currency=accepted.currency)
    return PaymentRequested.following(
        pay.command,
        producer=SERVICE,
        payload=PaymentRequestedPayload(
            payment_id=payment_id,
            idempotency_key=pay.key,
            scope=accepted.scope,
            method=accepted.method,  # type: ignore[arg-type]
            allocations=[
                Allocation(invoice_number=n, amount=money(amount_minor=a)) for n, a in accepted.allocations
            ],
            total=money(amount_minor=accepted.total_minor),
        ),
    )


async def on_pay(command: PayCommand, uow: UnitOfWork) -> None:
    """One pay command on its own: the reference path (and the fallback of the batch path)."""
    pay = _read(command)
    if await _repeat_or_refuse(uow, command, pay.key, pay.fingerprint):
        return
    view = (
        AccountView(known=True, invoices={})
        if pay.request is None
        else await uow.invoices.account_view(command.account_id, pay.numbers)
    )
    decision = _judge(pay, view, uow.config.policies)
    if not isinstance(decision, Accepted):
        await _answer(uow, command, pay.key, pay.fingerprint, _closing(command, pay.key, decision))
        return
    payment_id = uuid4()
    opened = await uow.payments.open_new(
        payment_id=payment_id,
        account_id=command.account_id,
        idempotency_key=pay.key,
        scope=decision.scope,
        method=decision.method,
        currency=decision.currency,
        allocations=decision.allocations,
        command_event_id=command.event_id,
        correlation_id=command.correlation_id,
        ttl_s=uow.config.checkout_ttl_s,
    )
    if not opened:  # another command won the invoice first (the database said so)
        numbers_taken = tuple(n for n, _ in decision.allocations)
        rejection = Rejection(
            Reason.PAYMENT_PENDING,
            "A payment against this invoice is already pending.",
            numbers_taken,
        )
        await _answer(uow, command, pay.key, pay.fingerprint, _rejected(command, pay.key, rejection))
        return
    await _answer(uow, command, pay.key, pay.fingerprint, _requested(pay, payment_id, decision))


@dataclass
class _PayBatch:
    """What the commands of one batch decided so far, and the rows to write for it."""

    answered: dict[tuple[str, str], StoredCommand] = field(default_factory=dict)
    taken: set[tuple[str, str]] = field(default_factory=set)
    payments: list[NewPayment] = field(default_factory=list)
    allocations: list[tuple[UUID, str, str, int]] = field(default_factory=list)
    records: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def as_seen(self, account: str, view: AccountView) -> AccountView:
        """The view as the database will show it once the earlier commands are written:
        an invoice an earlier command opened a payment on is pending."""
        if not self.taken:
            return view
        invoices = {
            n: replace(f, pending=True) if (account, n) in self.taken else f for n, f in view.invoices.items()
        }
        return replace(view, invoices=invoices)

    def open(self, pay: _Pay, payment_id: UUID, accepted: Accepted) -> PaymentRequested:
        command = pay.command
        self.payments.append(
            NewPayment(
                payment_id,
                command.account_id,
                pay.key,
                accepted.scope,
                accepted.method,
                accepted.currency,
                accepted.total_minor,
                command.event_id,
                command.correlation_id,
            )
        )
        for number, amount in accepted.allocations:
            self.allocations.append((payment_id, command.account_id, number, amount))
            self.taken.add((command.account_id, number))
        return _requested(pay, payment_id, accepted)

    def answer(self, pay: _Pay, answer: Envelope) -> None:
        outcome = {"event_id": str(answer.event_id), "payload": answer.payload.model_dump(mode="json")}
        account = pay.command.account_id
        self.answered[(account, pay.key)] = StoredCommand(pay.fingerprint, answer.type, outcome)
        self.records.append((account, pay.key, pay.fingerprint, answer.type, json.dumps(outcome)))


async def on_pay_batch(commands: Sequence[PayCommand], uow: UnitOfWork) -> None:
    """Consecutive pay commands of one consumed batch, with the same answers as `on_pay`
    applied one after the other, in a few round trips: the idempotency records of all
    keys and the facts of all named invoices are read in one query each, every command
    is decided in memory in order (a command sees what the earlier ones of the batch
    did: keys answered, invoices taken), and the payments and answers are written with
    bulk statements. The unique index stays the backstop: if another consumer won an
    invoice or a key meanwhile, the batch's writes are undone and its commands go
    through `on_pay` one by one."""
    pays = [_read(c) for c in commands]
    firsts = await uow.commands.get_many([(p.command.account_id, p.key) for p in pays])
    views = await uow.invoices.account_views(
        [(p.command.account_id, p.numbers) for p in pays if p.request is not None]
    )
    batch = _PayBatch()
    answers: list[Envelope] = []
    for pay in pays:
        account, key = pay.command.account_id, pay.key
        first = batch.answered.get((account, key)) or firsts.get((account, key))
        if first is not None:
            answers.append(_repeat(pay.command, key, pay.fingerprint, first))
            continue
        view = batch.as_seen(account, views.get(account, AccountView(known=True, invoices={})))
        decision = _judge(pay, view, uow.config.policies)
        if not isinstance(decision, Accepted):
            answer: Envelope = _closing(pay.command, key, decision)
        else:
            answer = batch.open(pay, uuid4(), decision)
        batch.answer(pay, answer)
        answers.append(answer)
    if not await uow.payments.write_batch(
        batch.payments, batch.allocations, batch.records, ttl_s=uow.config.checkout_ttl_s
    ):
        log.info("pay batch lost a race; answering its commands one by one", extra={"size": len(pays)})
        for command in commands:
            await on_pay(command, uow)
        return
    for answer in answers:
        uow.publish(answer)


async def on_cancel_checkout(command: CancelCheckout, uow: UnitOfWork) -> None:
    content = command.payload.model_dump(mode="json")
    if card_number_fields(content):
        fingerprint = _fingerprint(command, redact_document(content))
        key = _card_key(command.payload.idempotency_key, fingerprint)
        if not await _repeat_or_refuse(uow, command, key, fingerprint):
            await _answer(uow, command, key, fingerprint, _rejected(command, key, CARD_NUMBER_REJECTION))
        return
    key = command.payload.idempotency_key
    fingerprint = _fingerprint(command, content)
    if await _repeat_or_refuse(uow, command, key, fingerprint):
        return
    payment = await uow.payments.get_for_update(command.payload.payment_id)
    if payment is None or payment.account_id != command.account_id:
        rejection = Rejection(Reason.UNKNOWN_PAYMENT, "We could not find this payment.")
        await _answer(uow, command, key, fingerprint, _rejected(command, key, rejection))
        return
    decision = machine.apply(payment.status, Happening.CANCELLED)
    if decision.to is None or payment.status is PaymentStatus.PROCESSING:
        rejection = Rejection(
            Reason.CANNOT_CANCEL,
            f"This payment can no longer be cancelled: it is {payment.status.value.replace('_', ' ')}.",
            tuple(n for n, _ in payment.allocations),
        )
        await _answer(uow, command, key, fingerprint, _rejected(command, key, rejection))
        return
    await uow.payments.move(payment.payment_id, PaymentStatus.CANCELLED, reason="customer_cancelled")
    await uow.payments.cancel_at_provider(payment.payment_id)
    cancelled = PaymentCancelled.following(
        command,
        producer=SERVICE,
        payload=PaymentEndedPayload(
            payment_id=payment.payment_id,
            reason_code="customer_cancelled",
            message="The checkout was cancelled. The invoice can be paid again.",
        ),
    )
    await _answer(uow, command, key, fingerprint, cancelled)


# --- provider callbacks ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderWord:
    """What the provider says happened to a payment: from a webhook or a status query."""

    happening: Happening
    checkout_id: str | None = None
    amount: Money | None = None
    provider_payment_ref: str | None = None
    reason: str | None = None
    end_code: str | None = None  # overrides the outcome's reason code (e.g. unknown_at_provider)


async def on_provider_callback(event: ProviderCallbackReceived, uow: UnitOfWork) -> None:
    p = event.payload
    if p.provider_event in REFUND_EVENTS:
        await on_refund_callback(event, uow)
        return
    payment = await uow.payments.get_for_update(p.payment_id)
    if payment is None or payment.account_id != event.account_id:
        why = "unknown_payment" if payment is None else "account_mismatch"
        await uow.payments.log_callback(p.payment_id, p.webhook_id, p.provider_event, why, "ignored")
        uow.publish(
            flagged(
                payment_id=p.payment_id,
                account_id=event.account_id,
                correlation_id=event.correlation_id,
                cause=event.event_id,
                reason_code=f"callback_{why}",
                message=f"A provider callback ({p.provider_event}) names a payment we do not"
                " know for this account; nothing was changed.",
            )
        )
        return
    word = ProviderWord(
        Happening(p.provider_event),
        checkout_id=p.checkout_id,
        amount=p.amount,
        provider_payment_ref=p.provider_payment_ref,
        reason=p.reason,
    )
    await provider_said(uow, payment, word, cause=event.event_id, source=p.webhook_id)


async def provider_said(
    uow: UnitOfWork, payment: Payment, word: ProviderWord, *, cause: UUID | None, source: str
) -> None:
    """Apply the provider's word to a locked payment: the same moves, events and flags
    whether it came as a webhook or as the answer to a status query (`source` says which)."""
    happening, amount = word.happening, word.amount
    decision = machine.apply(
        payment.status,
        happening,
        asked_minor=payment.total_minor if happening is Happening.SUCCEEDED else None,
        asked_currency=payment.currency,
        confirmed_minor=None if amount is None else amount.amount_minor,
        confirmed_currency=None if amount is None else amount.currency,
    )
    verdict = "applied" if decision.to is not None and decision.flag is None else "ignored"
    if decision.flag is not None:
        verdict = "flagged"
    await uow.payments.log_callback(payment.payment_id, source, happening.value, verdict, decision.note)
    if happening is Happening.SUCCEEDED and decision.flag is not None:
        await uow.payments.note_confirmation(
            payment.payment_id,
            confirmed_minor=None if amount is None else amount.amount_minor,
            confirmed_currency=None if amount is None else amount.currency,
            provider_payment_ref=word.provider_payment_ref,
        )
    if decision.to is not None:
        await uow.payments.move(
            payment.payment_id,
            decision.to,
            reason=word.end_code or word.reason or (None if decision.to.is_open else happening.value),
            checkout_id=word.checkout_id,
            confirmed_minor=None if amount is None else amount.amount_minor,
            confirmed_currency=None if amount is None else amount.currency,
            provider_payment_ref=word.provider_payment_ref,
        )
        uow.publish(
            transition_outcome(
                payment,
                decision.to,
                cause=cause,
                reason_code=word.end_code or _end_code(happening, word.reason),
                detail=word.reason,
                provider_payment_ref=word.provider_payment_ref,
            )
        )
    else:
        log.info(
            "provider's word did not change the payment",
            extra={"payment_id": str(payment.payment_id), "note": decision.note, "source": source},
        )
    if decision.flag is not None and payment.flag_reason is None:
        uow.publish(
            flagged(
                payment_id=payment.payment_id,
                account_id=payment.account_id,
                correlation_id=payment.correlation_id,
                cause=cause,
                reason_code=decision.flag.reason_code,
                message=decision.flag.message,
            )
        )
        await flag_money(uow, payment, decision.flag.reason_code, cause=cause)


async def on_refund_callback(event: ProviderCallbackReceived, uow: UnitOfWork) -> None:
    p = event.payload
    refund = None if p.refund_id is None else await uow.refunds.get_for_update(p.refund_id)
    if refund is None or refund.payment_id != p.payment_id:
        await uow.payments.log_callback(
            p.payment_id, p.webhook_id, p.provider_event, "unknown_refund", "ignored"
        )
        uow.publish(
            flagged(
                payment_id=p.payment_id,
                account_id=event.account_id,
                correlation_id=event.correlation_id,
                cause=event.event_id,
                reason_code="callback_unknown_refund",
                message=f"A provider callback ({p.provider_event}) names a refund we did not ask for.",
            )
        )
        return
    applied = await settle_refund(
        uow,
        refund,
        succeeded=p.provider_event == "refund.succeeded",
        provider_refund_id=p.provider_payment_ref,
        reason=p.reason,
        cause=event.event_id,
    )
    await uow.payments.log_callback(
        p.payment_id, p.webhook_id, p.provider_event, "applied" if applied else "ignored", "refund"
    )


REFUND_EVENTS = frozenset({"refund.succeeded", "refund.failed"})


def _end_code(happening: Happening, reason: str | None) -> str:
    base = {
        Happening.FAILED: "payment_failed",
        Happening.CANCELLED: "checkout_cancelled",
        Happening.EXPIRED: "checkout_expired",
    }.get(happening, happening.value)
    return base


HANDLERS: dict[type[Envelope], Callable[[Any, UnitOfWork], Awaitable[None]]] = {
    InvoiceSynced: on_invoice_synced,
    InvoiceRegistered: on_invoice_registered,
    InvoiceRegistrationFailed: on_invoice_registration_failed,
    InvoiceClosed: on_invoice_closed,
    PayInvoice: on_pay,
    PaySelectedInvoices: on_pay,
    PayAccountBalance: on_pay,
    CancelCheckout: on_cancel_checkout,
    ProviderCallbackReceived: on_provider_callback,
}

PAY_COMMANDS = (PayInvoice, PaySelectedInvoices, PayAccountBalance)
COMMANDS = (*PAY_COMMANDS, CancelCheckout)


class CardNumberInEnvelope(ValueError):
    """A card number where no answer can be sent without repeating it (the account id
    is every answer's key): the message is dead-lettered, masked, instead."""


def refuse_card_numbers_in_envelope(message: Envelope) -> None:
    where = card_number_fields(message.model_dump(exclude={"payload"}))  # ids and times stay typed
    if where:
        raise CardNumberInEnvelope(f"something that looks like a card number in {', '.join(where)}")


def consuming(unit_of_work: Callable[[Transaction], UnitOfWork]) -> BatchHandler:
    """The consumer's batch handler: each message to its handler, in order, except that
    consecutive pay commands go to `on_pay_batch` together."""

    async def handle(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        uow = unit_of_work(tx)
        pays: list[PayCommand] = []
        for delivery in deliveries:
            message = delivery.message
            if isinstance(message, COMMANDS):
                refuse_card_numbers_in_envelope(message)
            if isinstance(message, PAY_COMMANDS):
                pays.append(message)
                continue
            if pays:
                await on_pay_batch(pays, uow)
                pays = []
            handler = HANDLERS.get(type(message))
            if handler is not None:
                with about(message):
                    await handler(message, uow)
        if pays:
            await on_pay_batch(pays, uow)

    return handle
