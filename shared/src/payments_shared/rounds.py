"""Kept for callers not yet moved to payments_shared.workers (the one worker loop)."""

from payments_shared.workers import rest, run_rounds

__all__ = ["rest", "run_rounds"]
