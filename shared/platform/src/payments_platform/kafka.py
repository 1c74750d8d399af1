"""How every Kafka client of ours connects: bootstrap servers plus TLS and SASL.

Every producer, consumer and admin client is built with `client_options(bootstrap)`,
so a cluster with TLS and SASL/SCRAM (ACLs per principal) is one set of environment
variables away. The local runtime stays PLAINTEXT on loopback.

PAYMENTS_KAFKA_SECURITY_PROTOCOL  PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
PAYMENTS_KAFKA_SASL_MECHANISM     PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
PAYMENTS_KAFKA_SASL_USERNAME / PAYMENTS_KAFKA_SASL_PASSWORD
PAYMENTS_KAFKA_SSL_CAFILE         CA bundle that signed the brokers' certificates
PAYMENTS_KAFKA_SSL_CERTFILE / PAYMENTS_KAFKA_SSL_KEYFILE   client certificate (mTLS)
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class KafkaSecurity(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("PAYMENTS_KAFKA_SECURITY_PROTOCOL")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", validation_alias=_env("PAYMENTS_KAFKA_SASL_MECHANISM")
    )
    sasl_username: str | None = Field(None, validation_alias=_env("PAYMENTS_KAFKA_SASL_USERNAME"))
    sasl_password: SecretStr | None = Field(None, validation_alias=_env("PAYMENTS_KAFKA_SASL_PASSWORD"))
    ssl_cafile: str | None = Field(None, validation_alias=_env("PAYMENTS_KAFKA_SSL_CAFILE"))
    ssl_certfile: str | None = Field(None, validation_alias=_env("PAYMENTS_KAFKA_SSL_CERTFILE"))
    ssl_keyfile: str | None = Field(None, validation_alias=_env("PAYMENTS_KAFKA_SSL_KEYFILE"))

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"{self.security_protocol} needs PAYMENTS_KAFKA_SASL_USERNAME and "
                "PAYMENTS_KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def options(self) -> dict[str, Any]:
        """aiokafka keyword arguments (the same for producers, consumers and admin clients)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        if self.uses_sasl:
            assert self.sasl_password is not None
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return options


@functools.cache
def _security() -> dict[str, Any]:
    return KafkaSecurity().options()


# Client side of failover (docs/deploy.md, "Failover timing"). A request to a broker that
# died fails at once (its sockets are closed) and any error refreshes the metadata, so
# these bound the rest: how stale the partition map may get without an error (a leader
# moved back by preferred-leader election, partitions added), and how fast a retry follows.
TIMING: dict[str, Any] = {"metadata_max_age_ms": 15_000, "retry_backoff_ms": 100}


def client_options(bootstrap: str) -> dict[str, Any]:
    """`bootstrap_servers`, the security settings from the environment and the failover
    timing, for any client (producer, consumer, admin)."""
    return {"bootstrap_servers": bootstrap, **_security(), **TIMING}
