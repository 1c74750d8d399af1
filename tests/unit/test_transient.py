"""Which failures the consume block, the relay and the workers retry instead of dead-lettering
or stopping on: the ones a database or broker that goes away and comes back produces."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from payments_platform.messaging import is_transient


@pytest.mark.parametrize(
    "exc",
    [
        # What asyncpg raises on a connection whose server ended the session mid-operation
        # (`pg_ctl stop -m fast`): seen stopping status-projector's projection and
        # payment-intake's command consumer before it counted as transient.
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        ),
        asyncpg.exceptions.ProtocolError("unexpected message"),
        # A multi-host DSN during a failover, before the standby is promoted.
        asyncpg.exceptions.TargetServerAttributeNotMatched("none of the hosts match the target attribute"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        ConnectionResetError(),
        TimeoutError(),
        KafkaConnectionError(),
        # A broker of a cluster lost: leadership moves, min.insync.replicas not met for a while.
        NotLeaderForPartitionError(),
        NotEnoughReplicasError(),
        RequestTimedOutError(),
    ],
)
def test_failures_of_a_server_that_comes_back_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad amount"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedTableError("no such table"),
        # A principal without a grant: retrying would hide a configuration error forever.
        TopicAuthorizationFailedError(),
    ],
)
def test_failures_of_the_message_or_the_setup_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)
