"""Kafka TLS/SASL settings: one place, read from the environment, accepted by every client."""

import ssl

import certifi
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from payments_platform.kafka import KafkaSecurity


def test_local_runtime_stays_plaintext() -> None:
    assert KafkaSecurity.model_validate({}).options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_over_tls_with_a_ca_bundle() -> None:
    options = KafkaSecurity.model_validate(
        {
            "PAYMENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PAYMENTS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "PAYMENTS_KAFKA_SASL_USERNAME": "payment-intake",
            "PAYMENTS_KAFKA_SASL_PASSWORD": "from-the-secret-store",
            "PAYMENTS_KAFKA_SSL_CAFILE": certifi.where(),
        }
    ).options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "payment-intake",
        "from-the-secret-store",
    )
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_without_credentials_is_refused(protocol: str) -> None:
    with pytest.raises(ValidationError, match="SASL_USERNAME"):
        KafkaSecurity.model_validate({"PAYMENTS_KAFKA_SECURITY_PROTOCOL": protocol})


def test_the_password_is_not_shown_in_the_settings() -> None:
    settings = KafkaSecurity.model_validate(
        {
            "PAYMENTS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PAYMENTS_KAFKA_SASL_USERNAME": "u",
            "PAYMENTS_KAFKA_SASL_PASSWORD": "hunter2-secret",
        }
    )
    assert "hunter2-secret" not in repr(settings)


async def test_every_kind_of_client_accepts_the_options() -> None:
    options = KafkaSecurity.model_validate(
        {
            "PAYMENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PAYMENTS_KAFKA_SASL_USERNAME": "u",
            "PAYMENTS_KAFKA_SASL_PASSWORD": "p",
            "PAYMENTS_KAFKA_SSL_CAFILE": certifi.where(),
        }
    ).options()
    # The constructors validate the combination (mechanism, credentials, context).
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **options)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **options)
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:1", **options)
    assert consumer._client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
    assert admin._client._sasl_plain_username == "u"
    await producer.stop()
    await consumer.stop()
    await admin.close()
