"""What every service shares: contracts, topics, settings and the consume/outbox building block."""
