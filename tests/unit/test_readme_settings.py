"""docs/settings.md (moved there from README's "Run against your own Kafka and PostgreSQL")
lists every setting a service reads: each environment variable of each Settings class,
with its default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic.aliases import AliasChoices
from pydantic_settings import BaseSettings

from demo_portal.settings import DemoPortalSettings
from invoice_sync.settings import InvoiceSyncSettings
from payment_intake.settings import PaymentIntakeSettings
from payments_platform.kafka import KafkaSecurity
from payments_platform.membership import MembershipSettings
from payments_platform.messaging.outbox import RelaySettings
from payments_platform.retention import RetentionSettings
from payments_platform.settings import CommonSettings
from sandbox_provider.settings import SandboxSettings
from status_projector.settings import ProjectorSettings

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
SETTINGS: list[type[BaseSettings]] = [
    CommonSettings,
    KafkaSecurity,
    RetentionSettings,
    MembershipSettings,
    RelaySettings,
    PaymentIntakeSettings,
    InvoiceSyncSettings,
    ProjectorSettings,
    SandboxSettings,
    DemoPortalSettings,
]


def _section() -> str:
    return SETTINGS_DOC.read_text()


def _variables(cls: type[BaseSettings]) -> list[str]:
    found = []
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            found += [c for c in alias.choices if isinstance(c, str)]
        elif isinstance(alias, str):
            found.append(alias)
        else:
            found.append((str(cls.model_config.get("env_prefix", "")) + (field.alias or name)).upper())
    return found


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_every_setting_is_in_the_settings_doc(cls: type[BaseSettings]) -> None:
    section = _section()
    missing = [v for v in _variables(cls) if f"`{v}`" not in section]
    assert not missing, f"docs/settings.md does not list {missing} ({cls.__name__})"
