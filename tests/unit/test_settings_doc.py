"""docs/settings.md lists every setting a service reads: each environment variable of
each Settings class (found by importing every module
of our packages, so a new class cannot be forgotten), in a row saying who reads it and
with the description the code gives; and every variable the table lists is read."""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import cache
from pathlib import Path

import pytest
from pydantic.aliases import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
PACKAGES = (
    "payments_platform",
    "invoice_sync",
    "payment_intake",
    "status_projector",
    "sandbox_provider",
    "demo_portal",
)
# Who reads a shared class's settings: the table's "read by" column.
SHARED = {
    "CommonSettings": "every service",
    "KafkaSecurity": "every service (Kafka security)",
    "RetentionSettings": "every service (retention)",
    "MembershipSettings": "every service (consumer group)",
    "TracingSettings": "every service (tracing)",
    "RelaySettings": "every service",
}


@cache
def settings_classes() -> list[type[BaseSettings]]:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found: list[type[BaseSettings]] = []
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.split(".")[0] in PACKAGES:
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def reader(cls: type[BaseSettings]) -> str:
    if cls.__module__.startswith("payments_platform."):
        return SHARED[cls.__name__]
    return cls.__module__.split(".")[0].replace("_", "-")


def _variables(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [(str(cls.model_config.get("env_prefix", "")) + (field.alias or name)).upper()]


def own_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    """Fields the class adds or redefines (inherited ones are its base's rows)."""
    inherited = [
        b.model_fields for b in cls.__mro__[1:] if isinstance(b, type) and issubclass(b, BaseSettings)
    ]
    return {
        name: field
        for name, field in cls.model_fields.items()
        if not any(name in base and _same(base[name], field) for base in inherited)
    }


def _reads(column: str, reader: str) -> bool:
    """`payment-intake (retention)` is read by payment-intake; `every service (retention)`
    is not read by `every service`'s class."""
    return column == reader or (not reader.startswith("every") and column.startswith(f"{reader} ("))


def _same(a: FieldInfo, b: FieldInfo) -> bool:
    return (a.validation_alias, a.default) == (b.validation_alias, b.default)


@cache
def rows() -> list[tuple[str, list[str], str]]:
    """(read by, variables, description) of each row of the settings table."""
    found = []
    for line in SETTINGS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            found.append((cells[0], re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]), cells[3]))
    return found


def test_settings_classes_are_found() -> None:
    names = {c.__name__ for c in settings_classes()}
    assert {"CommonSettings", "ProjectorSettings", "IntakeRetentionSettings", "SandboxSettings"} <= names


@pytest.mark.parametrize("cls", settings_classes(), ids=lambda c: c.__name__)
def test_every_setting_is_in_the_settings_doc_under_its_reader_with_its_description(
    cls: type[BaseSettings],
) -> None:
    for name, field in own_fields(cls).items():
        variables = _variables(cls, name, field)
        listed = [r for r in rows() if _reads(r[0], reader(cls)) and set(variables) <= set(r[1])]
        assert listed, (
            f"docs/settings.md does not list {' / '.join(variables)} "
            f"as read by {reader(cls)} ({cls.__name__})"
        )
        if field.description:
            assert field.description in listed[0][2], (
                f"{variables[0]}: docs/settings.md lacks the code's description"
            )


def test_every_variable_the_settings_doc_lists_is_read() -> None:
    read = {
        v for cls in settings_classes() for n, f in cls.model_fields.items() for v in _variables(cls, n, f)
    }
    listed = {v for who, variables, _ in rows() if not who.startswith("`make run`") for v in variables}
    assert sorted(listed - read) == [], "docs/settings.md lists variables no Settings class reads"


def test_every_launcher_port_the_settings_doc_lists_is_the_launchers() -> None:
    """The launcher (`make run`, `make services`) is no service: its own ports are the
    variables it names in INFRASTRUCTURE_PORT_ENV."""
    from system import INFRASTRUCTURE_PORT_ENV

    listed = {v for who, variables, _ in rows() if who.startswith("`make run`") for v in variables}
    assert listed == set(INFRASTRUCTURE_PORT_ENV.values())
