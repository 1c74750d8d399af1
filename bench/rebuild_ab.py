"""The rebuild three ways on the same events, interleaved in one session: from the first
offset in one process, from the first offset in two, and from a snapshot (taken after the
first N events, then N/10 more produced).

    .venv/bin/python bench/rebuild_ab.py [--events 200000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "deploy")]

from anchors import produce_batched  # noqa: E402
from bench_status_projector import events, rebuild_once  # noqa: E402
from common import BIN, Scratch, Services, merchant_file  # noqa: E402
from run import infrastructure  # noqa: E402


async def measure(bootstrap: str, dsn: str, n: int, rounds: int) -> None:
    async with Scratch(bootstrap, dsn, partitions=4) as scratch:
        reg = scratch.registry
        invoices, payments = events(n)
        await produce_batched(bootstrap, reg.invoices.name, 4, invoices)
        await produce_batched(bootstrap, reg.payments_events.name, 4, payments)
        accounts = sorted({k.decode() for k, _ in invoices})
        services = Services(
            scratch, extra={"PAYMENTS_MERCHANT_CONFIG": str(merchant_file(scratch.logs, accounts))}
        )
        env = {**services.env, "PAYMENTS_TOPIC_PARTITIONS": "4"}
        await rebuild_once(
            scratch, {**env, "STATUS_PROJECTOR_REBUILD_WORKERS": "1"}, n
        )  # warm, and a version
        subprocess.run(
            [str(BIN / "status-projector-ops"), "snapshot"], env=env, check=True, capture_output=True
        )
        more_i, more_p = events.__wrapped__(n // 10, n)
        await produce_batched(bootstrap, reg.invoices.name, 4, more_i)
        await produce_batched(bootstrap, reg.payments_events.name, 4, more_p)
        total = n + n // 10
        for r in range(rounds):
            for label, extra in (
                ("first offset, 1 process", {"STATUS_PROJECTOR_REBUILD_WORKERS": "1"}),
                ("first offset, 2 processes", {"STATUS_PROJECTOR_REBUILD_WORKERS": "2"}),
            ):
                print(f"round {r + 1}: {label}", flush=True)
                await rebuild_once(scratch, {**env, **extra}, total, "--no-from-snapshot")
            print(f"round {r + 1}: from the snapshot, 2 processes ({n // 10:,} events after it)", flush=True)
            await rebuild_once(scratch, env, n // 10, "--from-snapshot")
        print(f"load average {os.getloadavg()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env, state_dir = infrastructure()
    os.environ.update(env)
    os.environ["PAYMENTS_SANDBOX"] = "1"
    if state_dir is not None:
        os.environ["PAYMENTS_STATE_DIR"] = str(state_dir)
    try:
        asyncio.run(
            measure(
                os.environ["PAYMENTS_KAFKA_BOOTSTRAP"],
                os.environ["PAYMENTS_DATABASE_URL"],
                args.events,
                args.rounds,
            )
        )
    finally:
        if state_dir is not None:
            from system import stop_infrastructure

            stop_infrastructure(state_dir)


if __name__ == "__main__":
    main()
