"""Certificates for a local cluster's TLS listeners, made at start with the machine's
openssl and never committed: a throwaway CA, one certificate the brokers share (their
principal on the mutual-TLS inter-broker and controller listeners), PEM files that Kafka
reads as they are (KIP-651) and Python's ssl module too.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .host import LOOPBACK, require_tool

BROKER_SUBJECT = "/CN=payments-kafka-broker"
BROKER_PRINCIPAL = "User:CN=payments-kafka-broker"
DAYS = "30"


@dataclass(frozen=True)
class ClusterCertificates:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def broker_cert(self) -> Path:
        return self.directory / "broker-cert.pem"

    @property
    def broker_key(self) -> Path:
        return self.directory / "broker-key.pem"

    @property
    def broker_keystore(self) -> Path:
        """Key and certificate in one PEM file, the form Kafka's PEM keystore reads."""
        return self.directory / "broker-keystore.pem"

    def client_context(self, *, as_broker: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if as_broker:
            context.load_cert_chain(str(self.broker_cert), str(self.broker_key))
        return context


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [require_tool("openssl", "openssl"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed:\n{result.stdout[-2000:]}")


def make_certificates(directory: Path) -> ClusterCertificates:
    """A CA and a broker certificate valid for 127.0.0.1 and localhost, 30 days."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    certs = ClusterCertificates(directory)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS,
        "-subj", "/CN=payments-local-ca", "-keyout", "ca-key.pem", "-out", "ca.pem",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", BROKER_SUBJECT,
        "-keyout", "broker-key.pem", "-out", "broker.csr",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text(
        f"subjectAltName=IP:{LOOPBACK},DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
        "-CAcreateserial", "-days", DAYS, "-extfile", "san.ext", "-out", "broker-cert.pem",
        cwd=directory,
    )  # fmt: skip
    # openssl 3 writes PKCS#8 keys, which Kafka's PEM keystore requires.
    certs.broker_keystore.write_text(certs.broker_key.read_text() + certs.broker_cert.read_text())
    for path in directory.iterdir():
        os.chmod(path, 0o600)
    os.chmod(certs.ca_file, 0o644)
    return certs
