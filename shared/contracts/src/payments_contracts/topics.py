"""The topic registry: every topic's name, shape, retention and dead-letter topic.

All topics are keyed by the ERP customer account id, so one account's invoices,
commands, callbacks and outcomes stay ordered and co-partitioned. That is also why no
topic is compacted: compaction keeps the last message per key, which would leave one
message per account; and the messages are changes, not snapshots, so an older one is
not made redundant by a newer one. Each topic states its retention and the reason.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter

from . import (
    Envelope,
    ErpInvoiceMessage,
    InvoiceEvent,
    PaymentCommand,
    PaymentEvent,
    ProviderCallback,
)

DAY_MS = 24 * 3600 * 1000
MIB = 1024 * 1024
FOREVER = -1
# Kafka's default message.max.bytes: 1 MiB of record batch plus its 12 bytes of log
# overhead. Stated on every topic, so a producer can check a message against the limit
# the broker will apply (invoice-sync refuses an ERP document whose event would not fit).
MAX_MESSAGE_BYTES = MIB + 12


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    messages: Any = field(repr=False)
    partitions: int = 6
    retention_ms: int = FOREVER
    cleanup_policy: str = "delete"
    retention_reason: str = ""
    max_message_bytes: int = MAX_MESSAGE_BYTES

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.dlq"

    @cached_property
    def decoder(self) -> TypeAdapter[Envelope]:
        return TypeAdapter(self.messages)

    def configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
        }

    def message_types(self) -> list[type[Envelope]]:
        union = typing.get_args(self.messages)[0]
        return list(typing.get_args(union) or (union,))

    def prefixed(self, prefix: str) -> Topic:
        return replace(self, name=prefix + self.name) if prefix else self


ERP_INVOICES = Topic(
    "erp.invoices",
    "Invoice documents from the ERP: created or changed, cancelled, account snapshots.",
    ErpInvoiceMessage,
    retention_ms=30 * DAY_MS,
    retention_reason=(
        "30 days: an input. invoice-sync applies each document within seconds and publishes "
        "what it means on `invoices`, which is kept; 30 days leave time to re-read documents "
        "after an incident (a bug fixed, a dead letter re-driven next to its neighbours)."
    ),
)
INVOICES = Topic(
    "invoices",
    "Canonical invoice events: synced, balance changed, registered with the provider, "
    "registration failed, closed.",
    InvoiceEvent,
    retention_reason=(
        "Kept forever: the invoice history that payment-intake's invoice facts and the read "
        "model are rebuilt from (a rebuild starts at the first offset). Deleting old events "
        "would make a rebuild silently miss invoices; it grows with the business, under 1 KB "
        "per invoice change."
    ),
)
PAYMENTS_COMMANDS = Topic(
    "payments.commands",
    "Pay commands from portal backends.",
    PaymentCommand,
    retention_ms=30 * DAY_MS,
    retention_reason=(
        "30 days: an input, answered within seconds on `payments.events`, which is kept. "
        "payment-intake keeps each idempotency key's first answer as long (30 days by "
        "default), so any command still on the topic is answered the same way if read again."
    ),
)
PAYMENTS_CALLBACKS = Topic(
    "payments.callbacks",
    "Verified provider webhooks, deduplicated by webhook id.",
    ProviderCallback,
    retention_ms=30 * DAY_MS,
    retention_reason=(
        "30 days: an input, applied within seconds; what each callback did to a payment is "
        "on `payments.events`, which is kept. 30 days leave time to re-read callbacks after "
        "an incident; a re-read callback changes nothing, as a payment's end state is final."
    ),
)
PAYMENTS_EVENTS = Topic(
    "payments.events",
    "Payment outcomes and facts from payment-intake: the answer to each pay command "
    "(requested, rejected, remittance instructions), then checkout opened, processing, "
    "succeeded, failed, cancelled, expired; flagged for an operator; refund requested, "
    "refunded, refund failed; invoice restriction changed and account balance payment "
    "changed (what the merchant's policy lets the read model show).",
    PaymentEvent,
    retention_reason=(
        "Kept forever: the record of every payment (the outbox rows are deleted once "
        "published, so the topic is the audit trail) and the history the read model is "
        "rebuilt from."
    ),
)

TOPICS: tuple[Topic, ...] = (
    ERP_INVOICES,
    INVOICES,
    PAYMENTS_COMMANDS,
    PAYMENTS_CALLBACKS,
    PAYMENTS_EVENTS,
)
DEAD_LETTER_RETENTION_MS = 30 * DAY_MS
# Per partition (a dead-letter topic has one). Each dead letter's body is at most 256 KiB
# (messaging.dead_letter), so this keeps at least 4,000 of the largest; small segments let
# the bound act in 64 MiB steps rather than whole 1 GiB segments.
DEAD_LETTER_RETENTION_BYTES = 1024 * MIB
DEAD_LETTER_SEGMENT_BYTES = 64 * MIB
DEAD_LETTER_POLICY = (
    "Dead letters are kept 30 days and at most 1 GiB per topic, whichever ends first: "
    "time to inspect and re-drive them, while a flood of bad input cannot fill the disk "
    "(the oldest go first)."
)


class TopicRegistry:
    """The topics as one deployment names them: an optional prefix isolates
    environments (and test runs) sharing one cluster."""

    def __init__(self, prefix: str = "", partitions: int | None = None) -> None:
        self.prefix = prefix

        def named(topic: Topic) -> Topic:
            topic = topic.prefixed(prefix)
            return replace(topic, partitions=partitions) if partitions else topic

        self.erp_invoices = named(ERP_INVOICES)
        self.invoices = named(INVOICES)
        self.payments_commands = named(PAYMENTS_COMMANDS)
        self.payments_callbacks = named(PAYMENTS_CALLBACKS)
        self.payments_events = named(PAYMENTS_EVENTS)
        self.all: tuple[Topic, ...] = (
            self.erp_invoices,
            self.invoices,
            self.payments_commands,
            self.payments_callbacks,
            self.payments_events,
        )
        self._by_name = {t.name: t for t in self.all}
        self._by_type = {m.model_fields["type"].default: t for t in self.all for m in t.message_types()}

    def named(self, name: str) -> Topic:
        return self._by_name[name]

    def for_message(self, message: Envelope) -> Topic:
        """Every message type travels on exactly one topic."""
        return self._by_type[message.type]

    def desired(self) -> dict[str, tuple[int, dict[str, str]]]:
        """Every topic and dead-letter topic with its partition count and configs."""
        wanted: dict[str, tuple[int, dict[str, str]]] = {}
        for topic in self.all:
            wanted[topic.name] = (topic.partitions, topic.configs())
            wanted[topic.dead_letter] = (1, dead_letter_configs())
        return wanted


def dead_letter_configs() -> dict[str, str]:
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(DEAD_LETTER_RETENTION_MS),
        "retention.bytes": str(DEAD_LETTER_RETENTION_BYTES),
        "segment.bytes": str(DEAD_LETTER_SEGMENT_BYTES),
    }


# Who reads and writes what: the system's topology, used for the AsyncAPI documents.
SERVICE_CHANNELS: dict[str, dict[str, tuple[Topic, ...]]] = {
    "invoice-sync": {"receives": (ERP_INVOICES,), "sends": (INVOICES,)},
    "payment-intake": {
        "receives": (PAYMENTS_COMMANDS, PAYMENTS_CALLBACKS, INVOICES),
        "sends": (PAYMENTS_EVENTS, PAYMENTS_CALLBACKS),
    },
    "status-projector": {"receives": (INVOICES, PAYMENTS_EVENTS), "sends": ()},
}
