"""How the portal client connects to Kafka: TLS and SASL, the same choices as the
services' own (payments_platform.kafka), in a small type of its own, because the client
depends on the published language alone.

    KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_username="portal",
        sasl_password=os.environ["PORTAL_KAFKA_PASSWORD"],
        ssl_cafile="/etc/kafka/ca.pem",     # else the system's CA bundle
    )

`KafkaSecurity.from_env()` reads the services' variables (`PAYMENTS_KAFKA_SECURITY_PROTOCOL`,
`..._SASL_MECHANISM`, `..._SASL_USERNAME`, `..._SASL_PASSWORD`, `..._SSL_CAFILE`,
`..._SSL_CERTFILE`, `..._SSL_KEYFILE`), or another prefix.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from aiokafka.helpers import create_ssl_context

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Failover on a cluster (docs/deploy.md, "Failover timing"): the services' values.
TIMING: dict[str, Any] = {"metadata_max_age_ms": 15_000, "retry_backoff_ms": 100}


@dataclass(frozen=True)
class KafkaSecurity:
    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {PROTOCOLS}")
        if self.sasl_mechanism not in MECHANISMS:
            raise ValueError(f"sasl_mechanism must be one of {MECHANISMS}")
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"{self.security_protocol} needs a SASL username and password")

    @classmethod
    def from_env(cls, prefix: str = "PAYMENTS_KAFKA_") -> KafkaSecurity:
        def get(name: str) -> str | None:
            return os.environ.get(prefix + name) or None

        return cls(
            security_protocol=cast(Protocol, get("SECURITY_PROTOCOL") or "PLAINTEXT"),
            sasl_mechanism=cast(Mechanism, get("SASL_MECHANISM") or "SCRAM-SHA-512"),
            sasl_username=get("SASL_USERNAME"),
            sasl_password=get("SASL_PASSWORD"),
            ssl_cafile=get("SSL_CAFILE"),
            ssl_certfile=get("SSL_CERTFILE"),
            ssl_keyfile=get("SSL_KEYFILE"),
        )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
        )
        return context

    def options(self) -> dict[str, Any]:
        """aiokafka keyword arguments for a producer, consumer or admin client."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol, **TIMING}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options
