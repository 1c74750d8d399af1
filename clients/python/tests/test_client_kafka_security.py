"""The client's Kafka security options: the services' choices, in the client's own type."""

from __future__ import annotations

import secrets
import ssl

import pytest

from payments_portal_client import KafkaSecurity

PASSWORD = secrets.token_urlsafe(12)


def test_plaintext_by_default_with_the_failover_timing() -> None:
    options = KafkaSecurity().options()
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options and "sasl_mechanism" not in options
    assert options["metadata_max_age_ms"] == 15_000


def test_sasl_ssl_carries_the_principal_and_a_tls_context() -> None:
    options = KafkaSecurity(
        security_protocol="SASL_SSL", sasl_username="portal", sasl_password=PASSWORD
    ).options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("portal", PASSWORD)
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="username and password"):
        KafkaSecurity(security_protocol="SASL_SSL")


def test_the_password_is_not_in_its_repr() -> None:
    assert PASSWORD not in repr(
        KafkaSecurity(security_protocol="SASL_SSL", sasl_username="p", sasl_password=PASSWORD)
    )


def test_the_services_variables_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PAYMENTS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("PAYMENTS_KAFKA_SASL_USERNAME", "portal")
    monkeypatch.setenv("PAYMENTS_KAFKA_SASL_PASSWORD", PASSWORD)
    security = KafkaSecurity.from_env()
    assert (security.security_protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert security.sasl_username == "portal"
