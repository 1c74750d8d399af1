"""Benchmarks append one JSON object per line to bench/results.jsonl: name, value, unit."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.jsonl"


def record(name: str, value: float, unit: str, **context: object) -> None:
    line = {"name": name, "value": round(value, 3), "unit": unit, **context}
    with RESULTS.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)
