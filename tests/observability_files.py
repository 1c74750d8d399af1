"""The alerting rules and the dashboard in deploy/observability, read for tests: their
expressions, the metric names those use, and promtool (built like Helm, `make promtool`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

import infra

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "rules.yml"
RULE_TESTS = OBSERVABILITY / "tests" / "alerts_test.yml"
DASHBOARD = OBSERVABILITY / "dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL_MODULE = "github.com/prometheus/prometheus/cmd/promtool@v0.316.0"

# Words of PromQL that are not metric names (functions are told apart by their "(").
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*")


def promtool_binary() -> str:
    configured = os.environ.get("PAYMENTS_PROMTOOL")
    if configured and Path(configured).is_file():
        return configured
    gobin = infra.load_runtime().cache_root() / "bin"
    if (gobin / "promtool").is_file():
        return str(gobin / "promtool")
    go = shutil.which("go")
    assert go, "promtool is missing and Go is not installed to build it (see `make promtool`)"
    subprocess.run(
        [go, "install", "-tags", "remove_all_sd", PROMTOOL_MODULE],
        env={**os.environ, "GOBIN": str(gobin)},
        check=True,
    )
    return str(gobin / "promtool")


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names an expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in _NAME.finditer(expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if match.group(0).lower() in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def exported_names_needed() -> set[str]:
    """Every metric the rules and the dashboard read that a service must export (the
    recorded series resolved to what they are recorded from)."""
    records = recorded()
    needed: set[str] = set()
    for expr in [r["expr"] for r in rules()] + dashboard_exprs():
        needed |= metric_names(expr)
    return {name for name in needed if name not in records}


def sample_names(families: dict[str, str]) -> set[str]:
    """The sample names of metric families {name: type}, as a scrape shows them."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names = set()
    for name, kind in families.items():
        names |= {name + s for s in suffixes.get(kind, ("",))}
    return names


def scraped_families(text: str) -> dict[str, str]:
    """Metric families and their types from a /metrics page (its `# TYPE` lines)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            kind = kind.strip()
            # The text format names a counter's family with its _total (the registry without).
            found[name.removesuffix("_total") if kind == "counter" else name] = kind
    return found
