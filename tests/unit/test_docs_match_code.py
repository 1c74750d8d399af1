"""The operator docs say what the code does: every ops CLI command and option is in
docs/operations.md's command table and every one there exists (the typer apps,
introspected), every Helm chart value is in docs/deploy.md's values table and every value
the docs name exists in values.yaml, and the figures the docs quote (the sandbox's webhook
attempts, the probes) are the code's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
import typer.main
import yaml

from invoice_sync.entrypoints.cli import app as invoice_sync_app
from payment_intake.entrypoints.cli import app as payment_intake_app
from payments_contracts.topics import TopicRegistry
from payments_platform.settings import CommonSettings
from sandbox_provider.settings import SandboxSettings
from status_projector.entrypoints.cli import app as status_projector_app

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
DEPLOY = ROOT / "docs" / "deploy.md"
CHART = ROOT / "deploy" / "k8s"
CLIS: dict[str, typer.Typer] = {
    "invoice-sync-ops": invoice_sync_app,
    "payment-intake-ops": payment_intake_app,
    "status-projector-ops": status_projector_app,
}
EVERY_CLI = "<service>-ops"
PLACEHOLDER = re.compile(r"[A-Z][A-Z_/]*…?")


# --- the ops CLIs ---------------------------------------------------------------------------


def documented_commands() -> dict[tuple[str, str], str]:
    """(cli, command) -> the usage the command table shows; `<service>-ops` rows count for
    every CLI."""
    found: dict[tuple[str, str], str] = {}
    for line in OPERATIONS.read_text().splitlines():
        match = re.match(r"\| `((?:<service>|[a-z-]+)-ops) ([a-z-]+)([^`]*)` \|", line)
        if match is None:
            continue
        cli, command, usage = match.groups()
        for name in CLIS if cli == EVERY_CLI else [cli]:
            assert (name, command) not in found, f"{name} {command} is in the table twice"
            found[(name, command)] = usage.replace("\\|", "|")
    return found


def commands(cli: str) -> dict[str, Any]:
    group = typer.main.get_command(CLIS[cli])
    assert isinstance(group, typer.core.TyperGroup)
    return dict(group.commands)


def test_every_ops_command_is_in_the_command_table_and_every_row_is_a_command() -> None:
    documented = set(documented_commands())
    actual = {(cli, name) for cli in CLIS for name in commands(cli)}
    assert sorted(actual - documented) == [], "commands docs/operations.md does not list"
    assert sorted(documented - actual) == [], "commands docs/operations.md lists that do not exist"


def _usage_parts(usage: str) -> Iterator[tuple[str, str | None]]:
    """(option or argument placeholder, the placeholder following an option)."""
    tokens = [t for t in re.split(r"[\s\[\]|]+", usage) if t]
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.startswith("--"):
            yield token, following if following and PLACEHOLDER.fullmatch(following) else None
        elif PLACEHOLDER.fullmatch(token) and not (i and tokens[i - 1].startswith("--")):
            yield token, None


@pytest.mark.parametrize(("cli", "command"), sorted(documented_commands()), ids="-".join)
def test_every_option_and_argument_of_a_command_is_shown_as_it_is(cli: str, command: str) -> None:
    usage = documented_commands()[(cli, command)]
    shown_options = {}
    shown_arguments = []
    for part, value in _usage_parts(usage):
        if part.startswith("--"):
            for flag in part.split("/"):
                shown_options[flag] = value
        else:
            shown_arguments.append(part)
    params = commands(cli)[command].params
    options = [p for p in params if isinstance(p, typer.core.TyperOption) and "--help" not in p.opts]
    flags = {flag: p for p in options for flag in (*p.opts, *p.secondary_opts)}
    assert sorted(set(shown_options) - set(flags)) == [], f"{cli} {command} has no such option"
    for p in options:
        assert p.opts[0] in shown_options, f"{cli} {command}: {p.opts[0]} is not documented"
        takes_value = not p.is_flag
        assert (shown_options[p.opts[0]] is not None) == takes_value, (
            f"{cli} {command}: {p.opts[0]} {'takes' if takes_value else 'takes no'} value"
        )
    arguments = [p for p in params if isinstance(p, typer.core.TyperArgument)]
    assert bool(shown_arguments) == bool(arguments), f"{cli} {command}: arguments {shown_arguments}"


def test_the_readme_topic_table_names_every_message_type_of_each_topic() -> None:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `([a-z.]+)` \|.*\| ([^|]+) \|$", line)
        if match:
            rows[match[1]] = match[2]
    for topic in TopicRegistry().all:
        words = {
            m.model_fields["type"].default.split(".", 1)[1].replace(".", " ").replace("_", " ")
            for m in topic.message_types()
        }
        missing = sorted(w for w in words if w not in rows[topic.name])
        assert not missing, f"README's topic table does not say {topic.name} carries {missing}"


# --- figures quoted from the code ------------------------------------------------------------


def test_the_sandbox_webhook_attempts_in_operations_md_are_the_sandboxs() -> None:
    schedule = SandboxSettings.model_fields["webhook_schedule_s"].default
    attempts, hours = len(schedule) + 1, round(sum(schedule) / 3600)  # the first is at once
    text = " ".join(OPERATIONS.read_text().split())
    assert f"the sandbox makes {attempts} attempts over about {hours} hours" in text


def test_the_probe_figures_in_operations_md_are_the_charts() -> None:
    probes = yaml.safe_load((CHART / "values.yaml").read_text())["probes"]
    startup, liveness, readiness = probes["startup"], probes["liveness"], probes["readiness"]
    text = " ".join(OPERATIONS.read_text().split())
    up_to = startup["periodSeconds"] * startup["failureThreshold"]
    assert f"({startup['periodSeconds']} s period, up to {up_to} s to start)" in text
    assert (
        f"(every {liveness['periodSeconds']} s, {liveness['timeoutSeconds']} s timeout, "
        f"{liveness['failureThreshold']} failures" in text
    )
    assert f"(every {readiness['periodSeconds']} s, {readiness['failureThreshold']} failures)" in text
    interval = CommonSettings.model_fields["metrics_interval_s"].default
    assert f"`PAYMENTS_METRICS_INTERVAL_S` ({interval:g} s)" in text


# --- the Helm chart's values ---------------------------------------------------------------


def _leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{path}.")
        else:
            yield path


def chart_values() -> set[str]:
    """Every leaf of values.yaml, each service's under `services.<name>`."""
    paths = set(_leaves(yaml.safe_load((CHART / "values.yaml").read_text())))
    return {re.sub(r"^services\.[A-Za-z]+\.", "services.<name>.", p) for p in paths}


def values_table() -> list[str]:
    text = DEPLOY.read_text()
    section = text[text.index("## 4. Values") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `")]
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row)]


def _covers(documented: str, leaf: str) -> bool:
    return leaf == documented or leaf.startswith(documented + ".")


def _exists(path: str) -> bool:
    return any(_covers(path, leaf) for leaf in chart_values())


def test_every_chart_value_is_in_the_values_table() -> None:
    documented = values_table()
    missing = sorted(v for v in chart_values() if not any(_covers(d, v) for d in documented))
    assert missing == [], "values docs/deploy.md does not describe"


def test_every_value_the_docs_name_exists_in_the_chart() -> None:
    """The values table, and any value path or `--set` the guides mention."""
    tops = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    named = set(values_table())
    for doc in (DEPLOY, OPERATIONS, ROOT / "README.md"):
        text = doc.read_text()
        named |= {m for m in re.findall(r"--set[ =]([A-Za-z.<>\-]+)=", text)}
        named |= {
            m for m in re.findall(r"`([a-z][A-Za-z]*(?:\.[A-Za-z<>\-]+)+)`", text) if m.split(".")[0] in tops
        }
        named |= {m for m in re.findall(r"`(services\.[^`.]+\.[A-Za-z]+)`", text)}
    named = {
        re.sub(r"^services\.(invoiceSync|paymentIntake|statusProjector)\.", "services.<name>.", n)
        for n in named
    }
    assert sorted(n for n in named if not _exists(n)) == [], "value paths the chart does not have"
