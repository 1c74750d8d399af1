"""The transactional consume/outbox building block (docs/product.md, "No lost and no doubled effects").

A consumer takes a batch from Kafka and, in one PostgreSQL transaction, records the
offsets it consumed and the event ids it applied, applies the domain change and
writes what it will publish into the outbox. A relay publishes the outbox with an
idempotent producer. Offsets live in the database, so a restarted consumer resumes
exactly where its last committed transaction ended.
"""

from . import offsets
from .consumer import BatchHandler, Delivery, Transaction, TransactionalConsumer
from .dead_letter import Position, dead_letter
from .outbox import Outbox, OutboxRelay
from .partitioner import partition_for
from .schema import install_messaging_tables
from .transient import TransientError, is_transient, tried_a_few_times

__all__ = [
    "BatchHandler",
    "Delivery",
    "Outbox",
    "OutboxRelay",
    "Position",
    "Transaction",
    "TransactionalConsumer",
    "TransientError",
    "dead_letter",
    "install_messaging_tables",
    "is_transient",
    "offsets",
    "partition_for",
    "tried_a_few_times",
]
