"""The alerting rules and the dashboard (deploy/observability) are valid, tested, exported
and documented:

- `promtool check rules` accepts the rules, and `promtool test rules` runs their unit
  tests (deploy/observability/tests): every alert has a case where it fires and one where
  it stays quiet;
- every metric the rules and the dashboard read is one the services register (their
  modules' Prometheus registry; tests/e2e/test_traces.py also scrapes the running
  services' /metrics for them);
- every alert's `runbook_url` is the anchor of its runbook in docs/operations.md, and the
  runbook says what it means, the first command to run and how to tell the causes apart.
"""

from __future__ import annotations

import importlib
import re
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

from observability_files import (
    DASHBOARD,
    OPERATIONS,
    RULE_TESTS,
    RULES,
    alerts,
    dashboard,
    dashboard_exprs,
    exported_names_needed,
    metric_names,
    promtool_binary,
    recorded,
    sample_names,
)

# Every module that registers a metric a service serves on /metrics.
METRIC_MODULES = [
    "payments_platform.messaging.consumer",
    "payments_platform.messaging.outbox",
    "payments_platform.ops_metrics",
    "payments_platform.service",
    "payments_platform.health",
    "payments_platform.workers",
    "payments_platform.retention",
    "payment_intake.metrics",
    "payment_intake.handlers.provider_answers",
    "invoice_sync.workers",
]


@pytest.fixture(scope="module")
def promtool() -> str:
    return promtool_binary()


def test_promtool_accepts_the_rules(promtool: str) -> None:
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts()) + len(recorded())} rules found" in checked.stdout


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]
    ]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert set(alerts()) - fires == set(), "alerts never tested firing"
    assert set(alerts()) - quiet == set(), "alerts never tested staying quiet"


def test_right_after_a_rebuild_is_one_of_the_quiet_states() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    rebuild = [t for t in tests if "rebuild" in t["name"]]
    assert rebuild, "no rule test covers the switch after a rebuild"
    series = " ".join(s["series"] + " " + s["values"] for t in rebuild for s in t["input_series"])
    assert "projection_v1" in series and "projection_v2" in series and "stale" in series
    checked = {c["alertname"] for t in rebuild for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert {"ConsumerLagHigh", "ReadModelStale"} <= checked


def _registered() -> dict[str, str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return {metric.name: metric.type for metric in REGISTRY.collect()}


def test_every_metric_the_rules_and_the_dashboard_read_is_registered_by_a_service() -> None:
    exported = sample_names(_registered())
    needed = exported_names_needed()
    assert needed, "no metric names found in the rules"
    assert needed - exported == set(), "read but exported by no service"


def test_the_name_reader_sees_through_promql() -> None:
    expr = (
        'sum by (consumer, le) (rate(consumer_batch_seconds_bucket{consumer=~"projection_v.*"}[5m]))'
        " and on (consumer) (consumer:consumer_lag:sum > 0) or vector(0) unless up offset 5m"
    )
    assert metric_names(expr) == {"consumer_batch_seconds_bucket", "consumer:consumer_lag:sum", "up"}


def _anchors(markdown: str) -> dict[str, str]:
    """GitHub's heading anchors of a page, and each heading's section text."""
    sections: dict[str, str] = {}
    parts = re.split(r"^(#{2,4} .+)$", markdown, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        title = heading.lstrip("#").strip().lower()
        anchor = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        sections[anchor] = body
    return sections


def test_every_alert_links_its_runbook_and_the_runbook_answers_the_three_questions() -> None:
    sections = _anchors(OPERATIONS.read_text())
    for name, rule in alerts().items():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md" and anchor == f"runbook-{name.lower()}", f"{name}: {url}"
        assert anchor in sections, f"{name}: no section #{anchor} in docs/operations.md"
        body = sections[anchor]
        for part in ("**Means**", "**First**", "**Which cause**"):
            assert part in body, f"{name}'s runbook lacks {part}"
    runbooks = {a for a in sections if a.startswith("runbook-")}
    assert runbooks == {f"runbook-{a.lower()}" for a in alerts()}, (
        "a runbook without an alert, or the reverse"
    )


def test_the_dashboard_reads_only_the_rules_metrics_and_lays_out_on_grafanas_grid() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["templating"]["list"][0]["type"] == "datasource"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    # Every alert's expression has its panel: what pages an operator is on the board.
    records = recorded()
    shown: set[str] = set()
    pending = set().union(*(metric_names(e) for e in dashboard_exprs()))
    while pending:  # a recorded series shows what it is recorded from
        name = pending.pop()
        shown.add(name)
        pending |= metric_names(records.get(name, "")) - shown
    for name, rule in alerts().items():
        assert metric_names(rule["expr"]) & shown, f"{name} has no panel"
    assert DASHBOARD.read_text().endswith("\n")
