"""The benchmark report's arithmetic: medians over every run, ratios to the anchors of the
same run, goal verdicts, and a duration figure turned into a rate before its ratio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


report = _load("report")


def run(value: float, service_us: float, consume: float, unit: str = "events/s") -> dict[str, object]:
    return {
        "value": value,
        "unit": unit,
        "messages": 1_000_000,
        "cpu_us_per_message": {"service": service_us, "postgres": 10.0},
        "machine_busy": 0.5,
        "peak_rss_mb": {"service": 90.0},
        "pids": {"service": [1]},
        "anchors": {"kafka_consume": consume},
    }


def test_the_median_and_every_run_of_the_value_and_of_each_process() -> None:
    figure = report.summarise(
        "projector.throughput_1", [run(100, 50, 1000), run(300, 30, 1000), run(200, 10, 1000)]
    )
    assert figure["values"] == [100, 300, 200]
    assert figure["median"] == 200
    assert figure["cpu_us_per_message"]["service"] == {"median": 30, "runs": [50, 30, 10]}
    assert figure["runs"] == 3


def test_the_ratio_is_taken_per_run_against_that_runs_anchor() -> None:
    # A slow run with a slow anchor is as good as a fast run with a fast one.
    figure = report.summarise("f", [run(100, 1, 1000), run(400, 1, 4000), run(50, 1, 100)])
    ratio = figure["anchors"]["kafka_consume"]
    assert ratio["ratio_runs"] == [0.1, 0.1, 0.5]
    assert ratio["ratio_median"] == 0.1
    assert ratio["anchor_median"] == 1000


def test_a_duration_is_compared_as_a_rate() -> None:
    figure = report.summarise("projector.rebuild_s", [run(50, 1, 100_000, unit="s")])
    assert figure["anchors"]["kafka_consume"]["ratio_runs"] == [pytest.approx(0.2)]  # 20,000/s over 100,000/s


def test_goals_say_met_not_met_or_not_measured() -> None:
    figures = {
        "projector.throughput_1": report.summarise(
            "projector.throughput_1", [run(35_000, 40, 1), run(31_000, 40, 1)]
        ),
        "projector.rebuild_s": report.summarise(
            "projector.rebuild_s", [{**run(10, 1, 1, unit="s"), "messages": 500_000}]
        ),
        "payment_intake.p99_ms": report.summarise(
            "payment_intake.p99_ms",
            [{**run(40, 1000, 1, unit="ms"), "cpu_us_per_message": {"service": 1000.0, "postgres": 500.0}}],
        ),
        "scale.20000000.rebuild_s": report.summarise(
            "scale.20000000.rebuild_s", [{**run(400, 1, 1, unit="s"), "messages": 20_000_000}]
        ),
    }
    rows = {r["goal"]: r for r in report.goals(figures, {})}
    assert rows["projector, one instance"]["met"] is True
    assert rows["projector, service CPU per event"]["met"] is False  # 40 µs > 20 µs
    rebuild = rows["rebuild of 1,000,000 events"]
    assert rebuild["measured"] == 20 and rebuild["met"] is True and "scaled" in rebuild["basis"]
    history = rows["rebuild with 20,000,000 events of history"]
    assert history["measured"] == 400 and history["met"] is False and history["basis"] == ""
    whole = rows["payment-intake, whole-system CPU per command at 500/s"]
    assert whole["measured"] == 1.5 and whole["met"] is True  # (1,000 + 500) µs, `other` left out
    assert rows["invoice-sync, throughput"]["met"] is None
    assert rows["read API p99, 10,000,000 invoices in the read model"]["met"] is None


def test_the_read_api_at_a_smaller_read_model_shows_its_figure_without_a_verdict() -> None:
    def at(invoices: int) -> dict[str, dict[str, Any]]:
        return {
            f"read_api.{r}_p99_ms": {
                **report.summarise(f"read_api.{r}_p99_ms", [run(4, 1, 1, unit="ms")]),
                "invoices": invoices,
            }
            for r in ("list", "detail", "summary")
        }

    label = "read API p99, 10,000,000 invoices in the read model"
    small = {r["goal"]: r for r in report.goals(at(1_000_000), {})}[label]
    assert (small["measured"], small["met"]) == (4, None) and "1,000,000" in small["basis"]
    full = {r["goal"]: r for r in report.goals(at(10_000_000), {})}[label]
    assert (full["measured"], full["met"]) == (4, True)


def test_the_markdown_carries_runs_medians_and_verdicts() -> None:
    figures = {
        "projector.throughput_1": report.summarise(
            "projector.throughput_1", [run(100, 5, 1000), run(300, 7, 1000)]
        )
    }
    meta = {
        "date": "2026-12-01T18:00Z",
        "machine": {"cores": 2, "ram_gb": 8.0, "load": [1, 1, 1]},
        "load_end": [1, 1, 1],
        "commit": "abc1234",
        "runs": 2,
        "sizes": {},
        "infrastructure": "test",
    }
    text = report.markdown(meta, figures)
    assert "| projector.throughput_1 (events/s) | **200** | 100, 300 | 6.00 |" in text
    assert "| projector, one instance | ≥ 30,000 events/s | 200 events/s | not met |" in text
