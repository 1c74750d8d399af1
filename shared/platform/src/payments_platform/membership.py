"""How a service's consumers sit in their groups: static membership, the range
assignor, session and heartbeat times (argued in docs/decisions/0014-static-membership-session-heartbeat.md
and docs/decisions/0042-range-assignor.md)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MembershipSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Stable per replica (the pod name under Kubernetes, set by the launcher locally).
    # Unset means dynamic membership: two processes must never share one id.
    instance_id: str | None = Field(None, validation_alias=AliasChoices("PAYMENTS_INSTANCE_ID"))
    session_timeout_ms: int = Field(
        6000, validation_alias=AliasChoices("PAYMENTS_CONSUMER_SESSION_TIMEOUT_MS")
    )
    heartbeat_interval_ms: int = Field(
        500, validation_alias=AliasChoices("PAYMENTS_CONSUMER_HEARTBEAT_INTERVAL_MS")
    )
    rebalance_timeout_ms: int = Field(
        10000, validation_alias=AliasChoices("PAYMENTS_CONSUMER_REBALANCE_TIMEOUT_MS")
    )


def consumer_options(settings: MembershipSettings | None = None) -> dict[str, Any]:
    """AIOKafkaConsumer arguments for a member of a service's consumer group."""
    settings = settings or MembershipSettings()
    return {
        "group_instance_id": settings.instance_id,
        # Range gives a member the same partition numbers of every topic it reads, and
        # every topic is keyed by account with one partition count, so an account's
        # invoices, commands and payment events meet in one instance. Sticky did not:
        # a member joining one already running got all of one topic and none of the
        # other (docs/decisions/0042-range-assignor.md).
        # Exactly one assignor: aiokafka 0.14 sends one JoinGroup per listed assignor,
        # each with different metadata, and the broker restarts the rebalance for every
        # one of them; after a broker restart two members could ping-pong like that for
        # minutes (aio-libs/aiokafka#1168).
        "partition_assignment_strategy": (RangePartitionAssignor,),
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "rebalance_timeout_ms": settings.rebalance_timeout_ms,
    }


def leave_group_on_stop(consumer: AIOKafkaConsumer) -> None:
    """Make a static member leave its group when it stops on purpose.

    aiokafka never sends LeaveGroup for a static member, so its partitions would wait a
    whole session timeout for a replica that may never come back (a rolling update
    gives pods new names). A crash still leaves nothing, so a replica restarted in
    place gets its partitions straight back without a rebalance.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None:
        coordinator._group_instance_id = None
