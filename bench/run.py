"""`make bench`: every figure, 3 runs each, with CPU per message per process,
same-session anchors and the issue's goals; a markdown table at the end.

Uses PAYMENTS_KAFKA_BOOTSTRAP / PAYMENTS_DATABASE_URL when set, else starts Kafka and a
durable PostgreSQL with deploy/runtime.py for the run and stops them after. Writes
bench/results/<date>.md and <date>.jsonl.

    .venv/bin/python bench/run.py [--full | --tiny] [--runs 3] [--scale]
        [--only invoice-sync,payment-intake,projector,read-api] [--documents N] [--commands N]
        [--rate 500] [--events N] [--instances 1,2] [--read-model-invoices N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "deploy"))

import report  # noqa: E402
from procs import close_all, machine  # noqa: E402

FIGURES = ("invoice-sync", "payment-intake", "projector", "read-api")
# `make bench`: every figure 3 times at sizes that still reach a steady state, within 15
# minutes on 2 cores (docs/decisions/0030-benchmark-method.md); `--full` the sizes of
# issue 24's goals; `--tiny` seconds-long (tests/bench, inside make test).
DEFAULT = {
    "runs": 3,
    "documents": 20_000,
    "commands": 5_000,
    "rate": 500,
    "seconds": 10.0,
    "warmup": 3.0,
    "events": 200_000,
    "instances": "1,2",
    "api_requests": 1000,
    "read_model_invoices": 1_000_000,
    "scale_events": "200000,1000000",
}
FULL = {
    **DEFAULT,
    "documents": 100_000,
    "commands": 20_000,
    "events": 1_000_000,
    "instances": "1,2,4",
    "api_requests": 3000,
    "read_model_invoices": 10_000_000,
    "scale_events": "1000000,5000000,20000000",
}
TINY = {
    **DEFAULT,
    "documents": 1500,
    "commands": 300,
    "rate": 100,
    "seconds": 2.0,
    "warmup": 0.5,
    "events": 10_000,
    "api_requests": 120,
    "read_model_invoices": 20_000,
    "scale_events": "5000,10000",
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the goals' own sizes (about an hour or more)")
    parser.add_argument(
        "--tiny", action="store_true", help="seconds-long sizes (the short test in make test)"
    )
    parser.add_argument("--runs", type=int, help="runs per figure (3; a report to quote has at least 3)")
    parser.add_argument("--only", default=",".join(FIGURES), help="comma-separated: " + ", ".join(FIGURES))
    parser.add_argument("--documents", type=int, help="invoice-sync: ERP documents per run")
    parser.add_argument("--commands", type=int, help="payment-intake: commands in the throughput phase")
    parser.add_argument("--rate", type=int, help="payment-intake: steady rate for the p99 (commands/s)")
    parser.add_argument("--seconds", type=float, help="payment-intake: measured seconds at the steady rate")
    parser.add_argument("--warmup", type=float, help="payment-intake: warm-up seconds before them")
    parser.add_argument("--events", type=int, help="projector: events per run (live, rebuild)")
    parser.add_argument("--instances", help="projector: instances per consumer group to measure")
    parser.add_argument("--api-requests", type=int, help="read API requests for each p99")
    parser.add_argument(
        "--read-model-invoices", type=int, help="read-api: invoices loaded by COPY into the read model"
    )
    parser.add_argument(
        "--scale", action="store_true", help="also the rebuild's scale curve (see --scale-events)"
    )
    parser.add_argument("--scale-events", help="events of history for each point of the scale curve")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy every service process into this directory (slows them: a run to read, not to quote)",
    )
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL if args.full else DEFAULT
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.mode = "tiny" if args.tiny else "full" if args.full else "default"
    return args


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


async def measure(
    args: argparse.Namespace, bootstrap: str, dsn: str, failures: list[str]
) -> dict[str, list[dict[str, Any]]]:
    only = set(args.only.split(","))
    unknown = only - set(FIGURES)
    if unknown:
        raise SystemExit(f"unknown figure(s): {', '.join(sorted(unknown))}")
    instances = [int(i) for i in args.instances.split(",") if i]
    runs: dict[str, list[dict[str, Any]]] = {}

    def keep(figures: dict[str, dict[str, Any]]) -> None:
        for name, run in figures.items():
            runs.setdefault(name, []).append(run)

    async def attempt(label: str, figures: Any) -> None:
        """A failed run is reported, not dropped in silence: the report lists it and
        `make bench` exits non-zero; the medians are over the runs that completed."""
        try:
            keep(await figures)
        except Exception as exc:
            failures.append(f"{label}: {exc!r}"[:500])
            print(f"  FAILED {label}: {exc!r}", flush=True)
        finally:
            await close_all()

    # Runs interleave the figures, so a slow minute of the shared machine does not land
    # on every run of one figure.
    for run in range(args.runs):
        print(f"\n=== run {run + 1}/{args.runs}", flush=True)
        if "invoice-sync" in only:
            import bench_invoice_sync

            await attempt(
                f"invoice-sync run {run + 1}", bench_invoice_sync.run_once(bootstrap, dsn, args.documents)
            )
        if "payment-intake" in only:
            import bench_payment_intake

            await attempt(
                f"payment-intake run {run + 1}", bench_payment_intake.run_once(bootstrap, dsn, args)
            )
        if "projector" in only:
            import bench_status_projector

            await attempt(
                f"projector run {run + 1}",
                bench_status_projector.run_once(bootstrap, dsn, args.events, instances, args.api_requests),
            )
        if "read-api" in only:
            import bench_read_api

            await attempt(
                f"read-api run {run + 1}",
                bench_read_api.run_once(bootstrap, dsn, args.read_model_invoices, args.api_requests),
            )
    if args.scale and "projector" in only:
        import bench_status_projector

        async def scaled(events: int) -> dict[str, dict[str, Any]]:
            figures = await bench_status_projector.rebuild_only(bootstrap, dsn, events)
            return {f"scale.{events}.{name.split('.', 1)[1]}": f for name, f in figures.items()}

        for events in (int(e) for e in args.scale_events.split(",")):
            if events == args.events and "projector.rebuild_s" in runs:
                # The main runs' rebuild is this point already: same events, same tool.
                runs[f"scale.{events}.rebuild_s"] = runs["projector.rebuild_s"]
                continue
            for run in range(args.runs):
                print(f"\n=== scale curve: {events:,} events, run {run + 1}/{args.runs}", flush=True)
                await attempt(f"scale {events} run {run + 1}", scaled(events))
    return runs


def infrastructure() -> tuple[dict[str, str], Path | None]:
    if os.environ.get("PAYMENTS_KAFKA_BOOTSTRAP") and os.environ.get("PAYMENTS_DATABASE_URL"):
        return {}, None
    from system import fresh_infrastructure

    state_dir = ROOT / ".run" / "bench"
    return fresh_infrastructure(state_dir), state_dir


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    env, state_dir = infrastructure()
    os.environ.update(env)
    if state_dir is not None:
        os.environ["PAYMENTS_STATE_DIR"] = str(state_dir)
    os.environ["PAYMENTS_SANDBOX"] = "1"
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_PROFILE_DIR"] = str(args.profile.resolve())
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "machine": machine(),
        "commit": commit(),
        "runs": args.runs,
        "mode": args.mode,
        "infrastructure": "started for this run" if state_dir else "from PAYMENTS_* endpoints",
        "sizes": {
            k: getattr(args, k)
            for k in (
                "documents",
                "commands",
                "rate",
                "seconds",
                "warmup",
                "events",
                "instances",
                "api_requests",
                "read_model_invoices",
            )
        },
    }
    started = time.monotonic()
    failures: list[str] = []
    try:
        runs = asyncio.run(
            measure(
                args, os.environ["PAYMENTS_KAFKA_BOOTSTRAP"], os.environ["PAYMENTS_DATABASE_URL"], failures
            )
        )
    finally:
        if state_dir is not None:
            from system import stop_infrastructure

            stop_infrastructure(state_dir)
    meta["load_end"] = [round(v, 2) for v in os.getloadavg()]
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["failures"] = failures
    figures = {name: report.summarise(name, r) for name, r in runs.items()}
    md, jsonl = report.write(args.out, meta, figures)
    print("\n" + md.read_text())
    print(f"written: {md.relative_to(ROOT) if md.is_relative_to(ROOT) else md}, {jsonl.name}")
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed; the report above is over the runs that completed")
    return {"meta": meta, "figures": figures, "markdown": md, "jsonl": jsonl}


if __name__ == "__main__":
    main()
