"""`make bench`: every benchmark, on real Kafka and PostgreSQL, one JSON line per figure.

Uses PAYMENTS_KAFKA_BOOTSTRAP / PAYMENTS_DATABASE_URL when set, else starts a fresh
local Kafka and a durable PostgreSQL for the run. Results go to bench/results.jsonl
(rewritten each run) and are printed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "deploy"))
from system import fresh_infrastructure, stop_infrastructure  # noqa: E402

BENCHMARKS = ("bench_invoice_sync.py", "bench_payment_intake.py", "bench_status_projector.py")


def infrastructure(state_dir: Path) -> tuple[dict[str, str], bool]:
    if os.environ.get("PAYMENTS_KAFKA_BOOTSTRAP") and os.environ.get("PAYMENTS_DATABASE_URL"):
        return {}, False
    return fresh_infrastructure(state_dir), True


def main() -> None:
    state_dir = ROOT / ".run" / "bench"
    env, started = infrastructure(state_dir)
    results = HERE / "results.jsonl"
    results.unlink(missing_ok=True)
    failed = []
    try:
        for script in BENCHMARKS:
            print(f"\n=== {script}", flush=True)
            done = subprocess.run(
                [sys.executable, str(HERE / script)],
                env={**os.environ, **env, "PAYMENTS_SANDBOX": "1"},
                check=False,
            )
            if done.returncode != 0:
                failed.append(script)
    finally:
        if started:
            stop_infrastructure(state_dir)
    print("\n=== bench/results.jsonl")
    for line in results.read_text().splitlines() if results.exists() else []:
        r = json.loads(line)
        print(f"{r['name']:32} {r['value']:>12} {r['unit']}")
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
