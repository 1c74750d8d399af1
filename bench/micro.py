"""In-process CPU per event of the projector's decode + handlers (no Kafka, no PostgreSQL),
two ways over the same records in one process, interleaved: a repeatable ratio on a
shared machine where wall-clock figures are not.

    .venv/bin/python bench/micro.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_status_projector import events  # noqa: E402
from fakes.status_projector import FakeProjectionBatch  # noqa: E402

from payments_contracts.topics import TopicRegistry  # noqa: E402
from payments_platform.messaging import Delivery  # noqa: E402
from payments_platform.messaging.fast_decoding import fast_decoder  # noqa: E402
from status_projector.handlers import apply_batch  # noqa: E402

BATCH = 2000


async def project(records: list[tuple[str, bytes]], decode: dict[str, object]) -> float:
    """CPU seconds to decode and apply every record in batches of 2,000."""
    batch = FakeProjectionBatch()
    gc.collect()
    started = time.process_time()
    for i in range(0, len(records), BATCH):
        deliveries = [
            Delivery(topic, 0, i + n, decode[topic](value))  # type: ignore[operator]
            for n, (topic, value) in enumerate(records[i : i + BATCH])
        ]
        await apply_batch(deliveries, batch)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reg = TopicRegistry()
    invoices, payments = events(args.events)
    # Per account, invoices before payments, as a partition-ordered fetch would give them.
    records = [(reg.invoices.name, v) for _, v in invoices] + [
        (reg.payments_events.name, v) for _, v in payments
    ]
    ways = {
        "pydantic": {t.name: t.decoder.validate_json for t in (reg.invoices, reg.payments_events)},
        "msgspec": {t.name: fast_decoder(t) for t in (reg.invoices, reg.payments_events)},
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, decode in ways.items():
            results[name].append(asyncio.run(project(records, decode)) / len(records) * 1e6)
    for name, runs in results.items():
        every = ", ".join(f"{r:.2f}" for r in runs)
        print(f"{name}: CPU µs/event {sorted(runs)[len(runs) // 2]:.2f} (runs {every})")


if __name__ == "__main__":
    main()
