"""Every command is answered exactly once under its idempotency key: the first answer is
kept, and a key used again gets that answer again (or a refusal if the content differs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payment_intake.domain.commands import KEY_REUSED, Answered, StoredCommand, card_key, fingerprint
from payment_intake.domain.intake import card_number_fields
from payment_intake.messages import rejected, repeated, stored
from payment_intake.unit_of_work import UnitOfWork
from payments_contracts import Envelope
from payments_contracts.card_numbers import redact_document


@dataclass(frozen=True)
class Keyed:
    """A command's idempotency key and content digest; `carded` when it carried a card
    number (then nothing of it is kept but a redacted key and a digest of the redacted
    content, so a repeat still gets the same answer)."""

    command: Envelope
    key: str
    fingerprint: str
    carded: bool


def keyed(command: Envelope, key: str) -> Keyed:
    content: Mapping[str, Any] = command.payload.model_dump(mode="json")
    if card_number_fields(content):
        digest = fingerprint(command.type, redact_document(content))
        return Keyed(command, card_key(key, digest), digest, carded=True)
    return Keyed(command, key, fingerprint(command.type, content), carded=False)


def again(command: Keyed, first: StoredCommand) -> Envelope:
    """The answer to a key used before."""
    if first.fingerprint != command.fingerprint:
        return rejected(command.command, command.key, KEY_REUSED)
    return repeated(command.command, first)


def record(command: Keyed, answer: Envelope) -> Answered:
    return Answered(command.command.account_id, command.key, stored(command.fingerprint, answer))


async def answer_once(uow: UnitOfWork, command: Keyed, answer: Envelope) -> None:
    """Publish the command's one answer and remember it under its key."""
    uow.publish(answer)
    await uow.commands.answered(record(command, answer))


async def answered_before(uow: UnitOfWork, command: Keyed) -> bool:
    """True when the key was used before: the command is answered here (repeat or misuse)."""
    account_key = (command.command.account_id, command.key)
    first = (await uow.commands.get_many([account_key])).get(account_key)
    if first is None:
        return False
    uow.publish(again(command, first))
    return True
