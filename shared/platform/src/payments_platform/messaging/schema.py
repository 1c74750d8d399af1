"""Tables the building block keeps in each service's own schema."""

from __future__ import annotations

import asyncpg

MESSAGING_DDL = """
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The W3C trace context the row was written under, published as headers with it
-- (payments_platform.tracing); added after the first release, hence the ALTER.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent text;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS tracestate text;
-- Rows Kafka refused for good (too large, invalid topic): set aside with the reason so
-- they never block the rows behind them; ops inspect them here.
CREATE TABLE IF NOT EXISTS outbox_unpublishable (
    id            bigint      PRIMARY KEY,
    topic         text        NOT NULL,
    key           bytea,
    value         bytea       NOT NULL,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL,
    reason        text        NOT NULL,
    set_aside_at  timestamptz NOT NULL DEFAULT now()
);
-- Retention (payments_platform.retention) deletes the oldest rows of these in batches.
CREATE INDEX IF NOT EXISTS processed_events_age ON processed_events (processed_at);
CREATE INDEX IF NOT EXISTS outbox_unpublishable_age ON outbox_unpublishable (set_aside_at);
"""


async def install_messaging_tables(conn: asyncpg.Connection) -> None:
    await conn.execute(MESSAGING_DDL)
