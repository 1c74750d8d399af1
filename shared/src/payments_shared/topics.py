"""The topic registry: every topic's name, shape, retention and dead-letter topic.

All topics are keyed by the ERP customer account id, so one account's invoices,
commands, callbacks and outcomes stay ordered and co-partitioned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import typing
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter

from .contracts import (
    Envelope,
    ErpInvoiceMessage,
    InvoiceEvent,
    PaymentCommand,
    PaymentEvent,
    ProviderCallback,
)

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
FOREVER = -1


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    messages: Any = field(repr=False)
    partitions: int = 6
    retention_ms: int = FOREVER
    cleanup_policy: str = "delete"

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.dlq"

    @cached_property
    def decoder(self) -> TypeAdapter[Envelope]:
        return TypeAdapter(self.messages)

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}

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
)
INVOICES = Topic(
    "invoices",
    "Canonical invoice events: synced, balance changed, registered with the provider, "
    "registration failed, closed.",
    InvoiceEvent,
)
PAYMENTS_COMMANDS = Topic(
    "payments.commands",
    "Pay commands from portal backends.",
    PaymentCommand,
    retention_ms=30 * DAY_MS,
)
PAYMENTS_CALLBACKS = Topic(
    "payments.callbacks",
    "Verified provider webhooks, deduplicated by webhook id.",
    ProviderCallback,
    retention_ms=30 * DAY_MS,
)
PAYMENTS_EVENTS = Topic(
    "payments.events",
    "Payment outcomes: requested, rejected, checkout opened, processing, succeeded, failed, ...",
    PaymentEvent,
)

TOPICS: tuple[Topic, ...] = (
    ERP_INVOICES,
    INVOICES,
    PAYMENTS_COMMANDS,
    PAYMENTS_CALLBACKS,
    PAYMENTS_EVENTS,
)
DEAD_LETTER_RETENTION_MS = 30 * DAY_MS


class TopicRegistry:
    """The topics as one deployment names them: an optional prefix isolates
    environments (and test runs) sharing one cluster."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.erp_invoices = ERP_INVOICES.prefixed(prefix)
        self.invoices = INVOICES.prefixed(prefix)
        self.payments_commands = PAYMENTS_COMMANDS.prefixed(prefix)
        self.payments_callbacks = PAYMENTS_CALLBACKS.prefixed(prefix)
        self.payments_events = PAYMENTS_EVENTS.prefixed(prefix)
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
            wanted[topic.dead_letter] = (
                1,
                {"cleanup.policy": "delete", "retention.ms": str(DEAD_LETTER_RETENTION_MS)},
            )
        return wanted


async def ensure_topics(bootstrap: str, registry: TopicRegistry) -> list[str]:
    """Create missing topics and align configs and partition counts. Safe to repeat."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import TopicAlreadyExistsError

    from .kafka import client_options

    admin = AIOKafkaAdminClient(**client_options(bootstrap), client_id="topic-registry")
    await admin.start()
    changed: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = registry.desired()
        missing = [
            NewTopic(name, partitions, 1, topic_configs=configs)
            for name, (partitions, configs) in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another service may create them first; configs are aligned below either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            changed += [t.name for t in missing]
        present = [name for name in wanted if name in existing]
        if present:
            described = await admin.describe_topics(present)
            grow = {
                d["topic"]: NewPartitions(wanted[d["topic"]][0])
                for d in described
                if len(d["partitions"]) < wanted[d["topic"]][0]
            }
            if grow:
                await admin.create_partitions(grow)
                changed += list(grow)
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted[name][1]) for name in present]
            )
        if changed:
            await _until_leaders_elected(admin, list(wanted))
    finally:
        await admin.close()
    return changed


# Who reads and writes what: the system's topology, used for the AsyncAPI documents.
SERVICE_CHANNELS: dict[str, dict[str, tuple[Topic, ...]]] = {
    "invoice-sync": {"receives": (ERP_INVOICES,), "sends": (INVOICES,)},
    "payment-intake": {
        "receives": (PAYMENTS_COMMANDS, PAYMENTS_CALLBACKS, INVOICES),
        "sends": (PAYMENTS_EVENTS, PAYMENTS_CALLBACKS),
    },
    "status-projector": {"receives": (INVOICES, PAYMENTS_EVENTS), "sends": ()},
}


async def _until_leaders_elected(admin: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """New partitions refuse writes until they have a leader; wait for that, not a sleep."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        if all(
            d["error_code"] == 0 and d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
            for d in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic partitions without a leader after {timeout_s}s")
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply the topic registry to a Kafka cluster")
    parser.add_argument("--bootstrap", default=None, help="defaults to PAYMENTS_KAFKA_BOOTSTRAP")
    args = parser.parse_args()
    from .settings import CommonSettings

    settings = CommonSettings()
    registry = TopicRegistry(settings.topic_prefix)
    changed = asyncio.run(ensure_topics(args.bootstrap or settings.kafka_bootstrap, registry))
    for name, (partitions, configs) in registry.desired().items():
        mark = "created/updated" if name in changed else "ok"
        print(f"{name:28} partitions={partitions} {configs} [{mark}]")
