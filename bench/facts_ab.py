"""payment-intake's invoice facts one statement each against a run of them read and
written once, in batches of 500 (the consumer's batch), interleaved; client and server
CPU per fact.

    .venv/bin/python bench/facts_ab.py [--facts 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "deploy"), str(HERE.parent / "tests" / "integration")]

from procs import proc_stat  # noqa: E402
from test_payment_intake_invoice_facts_run import apply, facts  # noqa: E402

from payment_intake.adapters.repositories import PostgresInvoiceRepository  # noqa: E402
from payment_intake.adapters.schema import install  # noqa: E402
from payments_platform.database import open_pool  # noqa: E402

BATCH = 500


async def measure(dsn: str, n: int, rounds: int) -> None:
    every = [(k, f"A{i % 400}", f"INV-{i}", v, x) for i, (k, _, _, v, x) in enumerate(facts(7, n))]
    for r in range(rounds):
        for label, in_runs in (("one statement each", False), ("a run per batch", True)):
            pool = await open_pool(dsn, f"facts_{r}_{int(in_runs)}", install=install, size=1)
            try:
                async with pool.acquire() as conn:
                    backend = await conn.fetchval("SELECT pg_backend_pid()")
                    server0, client0 = (proc_stat(backend) or (0.0, 0))[0], time.process_time()
                    for i in range(0, n, BATCH):
                        run = every[i : i + BATCH]
                        async with conn.transaction():
                            repo = PostgresInvoiceRepository(conn)
                            if in_runs:
                                await repo.preload(
                                    [(a, k) for _, a, k, _, _ in run],
                                    [a for kind, a, *_ in run if kind == "synced"],
                                )
                            for fact in run:
                                await apply(repo, fact)
                            await repo.flush()
                    client = time.process_time() - client0
                    server = (proc_stat(backend) or (0.0, 0))[0] - server0
                per = f"client {client / n * 1e6:6.1f} server {server / n * 1e6:6.1f} µs/fact"
                print(f"round {r + 1} {label:18s}: {per}", flush=True)
            finally:
                await pool.close()
    print(f"load average {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dsn = os.environ.get("PAYMENTS_DATABASE_URL")
    state_dir = None
    if dsn is None:
        from run import infrastructure

        env, state_dir = infrastructure()
        dsn = env["PAYMENTS_DATABASE_URL"]
    try:
        asyncio.run(measure(dsn, args.facts, args.rounds))
    finally:
        if state_dir is not None:
            from system import stop_infrastructure

            stop_infrastructure(state_dir)


if __name__ == "__main__":
    main()
