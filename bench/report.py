"""From runs to the report: medians over every run, ratios to the anchors, the goals.

A figure's runs are dicts as the figure modules return them: value, unit, messages and,
where the figure has them, cpu_us_per_message per process, peak_rss_mb per process,
machine_busy and anchors (records or rows per second).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROCESSES = ("service", "postgres", "kafka", "provider", "loadgen", "other")
ANCHORS = ("kafka_consume", "kafka_produce", "pg_unnest", "pg_copy")
LOWER_IS_BETTER = {"s", "ms", "MB"}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def rate_of(run: dict[str, Any]) -> float:
    """Messages per second a run achieved (a duration figure turned into a rate)."""
    if run["unit"] == "s":
        return float(run["messages"]) / float(run["value"])
    return float(run["value"])


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure over all its runs: median and every run of each quantity."""
    values = [float(r["value"]) for r in runs]
    out: dict[str, Any] = {
        "name": name,
        "unit": runs[0]["unit"],
        "messages": runs[0].get("messages"),
        "runs": len(runs),
        "median": median(values),
        "values": values,
    }
    out["pids"] = [r["pids"] for r in runs if "pids" in r]
    for key in ("note", "invoices"):
        if key in runs[0]:
            out[key] = runs[0][key]
    cpu: dict[str, dict[str, Any]] = {}
    for process in PROCESSES:
        per_run = [
            r["cpu_us_per_message"][process] for r in runs if process in r.get("cpu_us_per_message", {})
        ]
        if per_run:
            cpu[process] = {"median": median(per_run), "runs": per_run}
    if cpu:
        out["cpu_us_per_message"] = cpu
    busy = [r["machine_busy"] for r in runs if "machine_busy" in r]
    if busy:
        out["machine_busy"] = {"median": median(busy), "runs": busy}
    rss: dict[str, float] = {}
    for r in runs:
        for process, mb in r.get("peak_rss_mb", {}).items():
            rss[process] = max(rss.get(process, 0.0), mb)
    if rss:
        out["peak_rss_mb"] = rss
    ratios: dict[str, dict[str, Any]] = {}
    for anchor in ANCHORS:
        pairs = [(rate_of(r), r["anchors"][anchor]) for r in runs if anchor in r.get("anchors", {})]
        if pairs:
            per_run = [figure / base for figure, base in pairs]
            ratios[anchor] = {
                "anchor_median": median([base for _, base in pairs]),
                "anchor_runs": [base for _, base in pairs],
                "ratio_median": median(per_run),
                "ratio_runs": per_run,
            }
    if ratios:
        out["anchors"] = ratios
    return out


@dataclass
class Goal:
    label: str
    target: str
    measured: Callable[[dict[str, dict[str, Any]]], float | None]
    met: Callable[[float], bool]
    unit: str


def _median(name: str) -> Callable[[dict[str, dict[str, Any]]], float | None]:
    return lambda figures: figures[name]["median"] if name in figures else None


def _cpu(name: str) -> Callable[[dict[str, dict[str, Any]]], float | None]:
    def get(figures: dict[str, dict[str, Any]]) -> float | None:
        cpu = figures.get(name, {}).get("cpu_us_per_message", {}).get("service")
        return None if cpu is None else float(cpu["median"])

    return get


def _rebuild_at(
    events: int, *, snapshot: bool = False
) -> Callable[[dict[str, dict[str, Any]]], float | None]:
    """The rebuild over `events` of history (`snapshot`: the one an operator runs, from the
    newest snapshot, where measured): its scale point, else the main runs' rebuild scaled
    linearly (the basis column says so)."""

    def get(figures: dict[str, dict[str, Any]]) -> float | None:
        point = figures.get(f"scale.{events}.rebuild_from_snapshot_s") if snapshot else None
        point = point or figures.get(f"scale.{events}.rebuild_s")
        if point is not None:
            return float(point["median"])
        if events != 1_000_000:
            return None
        f = figures.get("projector.rebuild_s")
        return None if f is None else f["median"] * events / f["messages"]

    return get


# Every process found by pid; `other` (the rest of a shared machine) is left out.
_SYSTEM = ("service", "postgres", "kafka", "provider", "loadgen")


def _system_cpu(name: str) -> Callable[[dict[str, dict[str, Any]]], float | None]:
    def get(figures: dict[str, dict[str, Any]]) -> float | None:
        cpu = figures.get(name, {}).get("cpu_us_per_message")
        return None if not cpu else sum(float(cpu[p]["median"]) for p in _SYSTEM if p in cpu) / 1000

    return get


def _read_at_scale(figures: dict[str, dict[str, Any]]) -> float | None:
    """The slowest of the three routes' p99 with the large read model."""
    p99s = [
        figures[f"read_api.{r}_p99_ms"]["median"]
        for r in ("list", "detail", "summary")
        if f"read_api.{r}_p99_ms" in figures
    ]
    return max(p99s) if p99s else None


GOALS = [
    Goal(
        "projector, service CPU per event", "≤ 20 µs", _cpu("projector.throughput_1"), lambda v: v <= 20, "µs"
    ),
    Goal(
        "projector, one instance",
        "≥ 30,000 events/s",
        _median("projector.throughput_1"),
        lambda v: v >= 30_000,
        "events/s",
    ),
    Goal("rebuild of 1,000,000 events", "< 30 s", _rebuild_at(1_000_000), lambda v: v < 30, "s"),
    Goal(
        "rebuild with 20,000,000 events of history",
        "< 30 s",
        _rebuild_at(20_000_000, snapshot=True),
        lambda v: v < 30,
        "s",
    ),
    Goal(
        "payment-intake, CPU per command",
        "≤ 150 µs",
        _cpu("payment_intake.throughput"),
        lambda v: v <= 150,
        "µs",
    ),
    Goal("payment-intake, p99 at 500/s", "< 50 ms", _median("payment_intake.p99_ms"), lambda v: v < 50, "ms"),
    Goal(
        "payment-intake, whole-system CPU per command at 500/s",
        "≤ 1.7 ms",
        _system_cpu("payment_intake.p99_ms"),
        lambda v: v <= 1.7,
        "ms",
    ),
    Goal(
        "invoice-sync, CPU per document", "≤ 90 µs", _cpu("invoice_sync.throughput"), lambda v: v <= 90, "µs"
    ),
    Goal(
        "invoice-sync, throughput",
        "≥ 8,000 documents/s",
        _median("invoice_sync.throughput"),
        lambda v: v >= 8_000,
        "documents/s",
    ),
    Goal("read API p99, 1,000 invoices", "< 5 ms", _median("projector.api_p99_ms"), lambda v: v < 5, "ms"),
    Goal(
        "read API p99, 10,000,000 invoices in the read model",
        "< 10 ms",
        _read_at_scale,
        lambda v: v < 10,
        "ms",
    ),
]


def basis(label: str, figures: dict[str, dict[str, Any]], sizes: dict[str, Any]) -> str:
    """Where a run's sizes differ from the goal's own, say so next to the verdict."""
    if (
        label == "rebuild with 20,000,000 events of history"
        and "scale.20000000.rebuild_from_snapshot_s" in figures
    ):
        return "from a snapshot (1% of events after it)"
    if label == "rebuild of 1,000,000 events" and "scale.1000000.rebuild_s" not in figures:
        f = figures.get("projector.rebuild_s")
        return (
            ""
            if f is None or f["messages"] == 1_000_000
            else f"scaled linearly from {f['messages']:,} events"
        )
    if label.startswith("payment-intake") and "500/s" in label and sizes.get("rate") not in (None, 500):
        return f"at {sizes['rate']}/s, not 500/s"
    if label == "payment-intake, whole-system CPU per command at 500/s":
        return "service + postgres + kafka + provider + loadgen (not `other`); issue 24's start: 3.4 ms"
    if label == "read API p99, 1,000 invoices" and "projector.api_p99_ms" in figures:
        return str(figures["projector.api_p99_ms"].get("note", "")).split(";")[0]
    if label.startswith("read API p99, 10,000,000"):
        loaded = [f.get("invoices") for n, f in figures.items() if n.startswith("read_api.")]
        if loaded and loaded[0] != 10_000_000:
            return f"with {loaded[0]:,} invoices in the read model (`--full`: 10,000,000); slowest route"
        return "slowest of list, detail, summary"
    return ""


def _smaller_than_the_goal(label: str, figures: dict[str, dict[str, Any]]) -> bool:
    """A read model smaller than the goal's own says nothing about meeting it: the figure
    is shown, the verdict is not."""
    if not label.startswith("read API p99, 10,000,000"):
        return False
    loaded = [f.get("invoices") for n, f in figures.items() if n.startswith("read_api.")]
    return bool(loaded) and (loaded[0] or 0) < 10_000_000


def goals(figures: dict[str, dict[str, Any]], sizes: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows = []
    for goal in GOALS:
        value = goal.measured(figures)
        judged = value is not None and not _smaller_than_the_goal(goal.label, figures)
        rows.append(
            {
                "goal": goal.label,
                "target": goal.target,
                "measured": None if value is None else round(value, 2),
                "unit": goal.unit,
                "met": goal.met(value) if judged and value is not None else None,
                "basis": basis(goal.label, figures, sizes or {}),
            }
        )
    return rows


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(meta: dict[str, Any], figures: dict[str, dict[str, Any]]) -> str:
    m = meta["machine"]
    lines = [
        f"# make bench, {meta['date']}",
        "",
        f"- machine: {m['cores']} cores, {m['ram_gb']} GB RAM, load average {m['load']} at start, "
        f"{meta['load_end']} at end",
        f"- git commit: {meta['commit']}",
        f"- mode: {meta.get('mode', 'default')}; runs per figure: {meta['runs']}"
        + (" (fewer than 3: a trial, not figures to quote)" if meta["runs"] < 3 else "")
        + f"; sizes: {json.dumps(meta['sizes'])}",
        f"- infrastructure: {meta['infrastructure']}; {meta.get('seconds', 0):.0f} s in all",
        *(f"- **failed run**: {failure}" for failure in meta.get("failures", [])),
        "",
        "Each figure: the median of its runs, then every run. CPU is µs per message of each "
        "process over the measured window (found by pid; `other` is machine CPU none of them "
        "used); `busy` is the share of all cores in use. `vs <anchor>` is the figure's rate over "
        "the anchor's rate on the same records in the same run (median of the per-run ratios).",
        "",
        "| figure | median | runs | CPU µs/msg service | postgres | kafka | provider | loadgen | other "
        "| busy | vs consume | vs produce | vs unnest | vs COPY |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        cpu = f.get("cpu_us_per_message", {})
        cells = [_fmt(cpu[p]["median"]) if p in cpu else "" for p in PROCESSES]
        busy = f"{f['machine_busy']['median']:.0%}" if "machine_busy" in f else ""
        ratios = f.get("anchors", {})
        anchor_cells = [f"{ratios[a]['ratio_median']:.3f}" if a in ratios else "" for a in ANCHORS]
        runs = ", ".join(_fmt(v) for v in f["values"])
        lines.append(
            f"| {name} ({f['unit']}) | **{_fmt(f['median'])}** | {runs} | "
            + " | ".join([*cells, busy, *anchor_cells])
            + " |"
        )
    anchors_seen = {
        a: (name, f["anchors"][a]["anchor_median"])
        for name, f in figures.items()
        for a in f.get("anchors", {})
    }
    if anchors_seen:
        lines += ["", "Anchors (median records or rows per second, per figure's records):", ""]
        lines += ["| figure | consume | produce | unnest | COPY |", "|---|---|---|---|---|"]
        for name, f in figures.items():
            if "anchors" in f:
                lines.append(
                    f"| {name} | "
                    + " | ".join(
                        _fmt(f["anchors"][a]["anchor_median"]) if a in f["anchors"] else "" for a in ANCHORS
                    )
                    + " |"
                )
    rss_rows = [(name, f["peak_rss_mb"]) for name, f in figures.items() if "peak_rss_mb" in f]
    if rss_rows:
        lines += [
            "",
            "Peak RSS under load (MB, highest over the runs):",
            "",
            "| figure | service | provider |",
            "|---|---|---|",
        ]
        for name, rss in rss_rows:
            provider = _fmt(rss["provider"]) if "provider" in rss else ""
            lines.append(f"| {name} | {_fmt(rss.get('service', 0))} | {provider} |")
    lines += _scale_out(figures) + _scale_curve(figures)
    lines += [
        "",
        "Goals (issue 24):",
        "",
        "| goal | target | measured | met | basis |",
        "|---|---|---|---|---|",
    ]
    for row in goals(figures, meta["sizes"]):
        measured = "not measured" if row["measured"] is None else f"{_fmt(row['measured'])} {row['unit']}"
        met = "—" if row["met"] is None else ("met" if row["met"] else "not met")
        lines.append(f"| {row['goal']} | {row['target']} | {measured} | {met} | {row['basis']} |")
    notes = [f"- {name}: {f['note']}" for name, f in figures.items() if "note" in f]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _scale_out(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The projector with 1, 2, 4 instances in one group: rate, speed-up, speed-up per instance."""
    counts = sorted(int(n.rsplit("_", 1)[1]) for n in figures if n.startswith("projector.throughput_"))
    if len(counts) < 2:
        return []
    lines = [
        "",
        "Scale-out, status-projector (one consumer group, partitions: the largest count, at least 4):",
        "",
        "| instances | events/s (median) | speed-up vs 1 (median of per-run ratios) | per instance |",
        "|---|---|---|---|",
    ]
    for count in counts:
        rate = figures[f"projector.throughput_{count}"]["median"]
        speedup = 1.0 if count == 1 else figures.get(f"projector.speedup_{count}_vs_1", {}).get("median")
        cells = ["", ""] if speedup is None else [f"{speedup:.2f}x", f"{speedup / count:.2f}x"]
        lines.append(f"| {count} | {_fmt(rate)} | " + " | ".join(cells) + " |")
    return lines


def _scale_curve(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The rebuild over growing histories: from the first offset, and from a snapshot."""
    points = sorted(
        (int(n.split(".")[1]), f)
        for n, f in figures.items()
        if n.startswith("scale.") and n.endswith(".rebuild_s")
    )
    if not points:
        return []
    lines = [
        "",
        "Scale curve, `status-projector-ops rebuild` over N events of history (fresh database each "
        "run; a point at the main runs' size is their rebuild): from the first offset, then from a "
        "snapshot taken after it with 1% more events since:",
        "",
        "| events | seconds (median) | runs | events/s | CPU µs/event service | postgres "
        "| from a snapshot, seconds (median) | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for events, f in points:
        cpu = f.get("cpu_us_per_message", {})
        cells = [_fmt(cpu[p]["median"]) if p in cpu else "" for p in ("service", "postgres")]
        runs = ", ".join(_fmt(v) for v in f["values"])
        snap = figures.get(f"scale.{events}.rebuild_from_snapshot_s")
        snap_cells = [_fmt(snap["median"]), ", ".join(_fmt(v) for v in snap["values"])] if snap else ["", ""]
        lines.append(
            f"| {events:,} | {_fmt(f['median'])} | {runs} | {_fmt(events / f['median'])} | "
            + " | ".join([*cells, *snap_cells])
            + " |"
        )
    return lines


def write(directory: Path, meta: dict[str, Any], figures: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """bench/results/<date>.md and .jsonl (one line of run metadata, one per figure, the goals)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = meta["date"].replace(":", "")
    md, jsonl = directory / f"{stem}.md", directory / f"{stem}.jsonl"
    md.write_text(markdown(meta, figures))
    with jsonl.open("w") as out:
        out.write(json.dumps({"kind": "run", **meta}) + "\n")
        for f in figures.values():
            out.write(json.dumps({"kind": "figure", **f}) + "\n")
        for row in goals(figures, meta["sizes"]):
            out.write(json.dumps({"kind": "goal", **row}) + "\n")
    return md, jsonl
