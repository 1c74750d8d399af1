"""Retention windows: parsing, validation and defaults; each topic's stated policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from payment_intake.retention import IntakeRetentionSettings, retained
from payments_contracts.topics import (
    DEAD_LETTER_RETENTION_MS,
    PAYMENTS_COMMANDS,
    SERVICE_CHANNELS,
    TopicRegistry,
)
from payments_platform.documents import asyncapi
from payments_platform.messaging.dead_letter import MAX_BODY_BYTES
from payments_platform.retention import Pruner, Retained, RetentionSettings, Window, messaging_tables

WINDOW = TypeAdapter(Window)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", 30 * DAY),
        ("36h", timedelta(hours=36)),
        ("1d12h", timedelta(hours=36)),
        ("1.5h", timedelta(minutes=90)),
        ("90m", timedelta(minutes=90)),
        ("2w", 14 * DAY),
        ("45s", timedelta(seconds=45)),
        (" 7D ", 7 * DAY),
        ("45", timedelta(seconds=45)),
        (45, timedelta(seconds=45)),
        (0.5, timedelta(milliseconds=500)),
        ("P7D", 7 * DAY),
        ("PT36H", timedelta(hours=36)),
    ],
)
def test_a_window_is_written_with_units_in_seconds_or_iso_8601(text: object, expected: timedelta) -> None:
    assert WINDOW.validate_python(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0s", "longer than zero"),
        ("0", "longer than zero"),
        ("P0D", "longer than zero"),
        ("-1d", "longer than zero"),
        (-5, "longer than zero"),
        ("11000d", "at most 3650 days"),
        ("forever", "valid timedelta"),
        ("7 fortnights", "valid timedelta"),
        ("", "valid timedelta"),
        (True, "not a flag"),
    ],
)
def test_a_window_that_would_prune_at_once_or_never_or_is_unreadable_is_refused(
    text: object, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        WINDOW.validate_python(text)


def test_the_defaults_are_the_stated_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAYMENTS_RETENTION_PROCESSED_EVENTS", "PAYMENTS_RETENTION_UNPUBLISHABLE"):
        monkeypatch.delenv(name, raising=False)
    shared = RetentionSettings()
    assert shared.processed_events == 7 * DAY
    assert shared.unpublishable == timedelta(milliseconds=DEAD_LETTER_RETENTION_MS)
    assert shared.interval_s == 60.0
    intake = IntakeRetentionSettings()
    assert intake.commands == 30 * DAY
    assert intake.webhooks == 7 * DAY


def test_an_idempotency_key_outlives_the_commands_that_can_still_be_read_with_it() -> None:
    assert IntakeRetentionSettings().commands >= timedelta(milliseconds=PAYMENTS_COMMANDS.retention_ms)


def test_windows_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_RETENTION_PROCESSED_EVENTS", "36h")
    monkeypatch.setenv("PAYMENT_INTAKE_RETENTION_WEBHOOKS", "P3D")
    monkeypatch.setenv("PAYMENTS_RETENTION_BATCH_SIZE", "250")
    settings = IntakeRetentionSettings()
    assert settings.processed_events == timedelta(hours=36)
    assert settings.webhooks == 3 * DAY
    assert settings.batch_size == 250
    tables = {t.table: t.window for t in [*messaging_tables(settings), *retained(settings)]}
    assert tables == {
        "processed_events": timedelta(hours=36),
        "outbox_unpublishable": 30 * DAY,
        "commands": 30 * DAY,
        "webhooks_received": 3 * DAY,
    }


def test_a_bad_window_in_the_environment_stops_the_service_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAYMENT_INTAKE_RETENTION_COMMANDS", "0s")
    with pytest.raises(ValidationError, match="PAYMENT_INTAKE_RETENTION_COMMANDS"):
        IntakeRetentionSettings()


def test_only_plain_names_reach_the_delete_statement() -> None:
    with pytest.raises(ValueError, match="plain table"):
        Retained("commands; DROP TABLE payments", "answered_at", DAY)
    with pytest.raises(ValueError, match="plain table"):
        Retained("commands", "answered_at OR true", DAY)
    with pytest.raises(ValueError, match="longer than zero"):
        Retained("commands", "answered_at", timedelta(0))


def test_a_table_is_pruned_by_one_rule_only() -> None:
    tables = [Retained("commands", "answered_at", DAY), Retained("commands", "answered_at", 2 * DAY)]
    with pytest.raises(ValueError, match="registered twice"):
        Pruner(None, service="x", tables=tables)  # type: ignore[arg-type]


def test_an_answer_is_kept_while_its_payment_is_open() -> None:
    commands = next(t for t in retained(IntakeRetentionSettings()) if t.table == "commands")
    sql = commands.delete_batch_sql()
    assert "NOT (" in sql
    for status in ("requested", "checkout_open", "processing"):
        assert f"'{status}'" in sql
    for status in ("succeeded", "failed", "cancelled", "expired", "rejected"):
        assert f"'{status}'" not in sql


def test_every_topic_states_its_retention_and_why_in_its_contract() -> None:
    registry = TopicRegistry()
    desired = registry.desired()
    for topic in registry.all:
        assert len(topic.retention_reason) > 40, f"{topic.name} has no stated retention reason"
        assert topic.cleanup_policy == "delete"  # keyed by account: compaction would keep one per account
        assert desired[topic.name][1]["retention.ms"] == str(topic.retention_ms)
    for service, roles in SERVICE_CHANNELS.items():
        channels = asyncapi(service)["channels"]
        for topic in {t for role in roles.values() for t in role}:
            assert topic.retention_reason in channels[topic.name.replace(".", "_")]["description"]
    assert registry.invoices.retention_ms == -1 and registry.payments_events.retention_ms == -1


def test_dead_letter_topics_are_bounded_in_time_and_size() -> None:
    registry = TopicRegistry()
    for topic in registry.all:
        configs = registry.desired()[topic.dead_letter][1]
        assert int(configs["retention.ms"]) == DEAD_LETTER_RETENTION_MS
        bound = int(configs["retention.bytes"])
        assert bound >= 1000 * MAX_BODY_BYTES
        assert int(configs["segment.bytes"]) <= bound // 8
