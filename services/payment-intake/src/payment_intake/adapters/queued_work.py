"""What committed transactions left for the background workers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class QueuedWork:
    """Whether transactions since the last look queued work for a background worker:
    payments whose checkout is to open, or calls for the provider worker (a cancel, a
    refund). The consumer's commit wakes only the worker given something to do, so a
    batch of pay commands that opened nothing costs no empty worker rounds (each a
    transaction or three). A rolled-back transaction may leave a flag set: one wake
    too many, never one too few."""

    checkouts: bool = False
    provider_calls: bool = False

    def take(self) -> tuple[bool, bool]:
        """The flags, cleared."""
        flags = self.checkouts, self.provider_calls
        self.checkouts = self.provider_calls = False
        return flags
