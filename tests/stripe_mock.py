"""stripe-mock, Stripe's own mock server, for the connector tests: it validates every
request against Stripe's OpenAPI description (unknown or missing parameters are refused)
and answers with Stripe's fixtures. It keeps no state, so it judges shapes, never flows.

It is a Go module: built like Helm into the infrastructure cache (`make stripe-mock`), or
here when missing. The OpenAPI description it embeds is read from the same module, so
the sandbox's Stripe mode can be judged against exactly what stripe-mock judges by.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import infra

STRIPE_MOCK_MODULE = "github.com/stripe/stripe-mock@v0.203.0"


def _go() -> str:
    go = shutil.which("go")
    assert go, "stripe-mock is missing and Go is not installed to build it (see `make stripe-mock`)"
    return go


def stripe_mock_binary() -> Path:
    configured = os.environ.get("PAYMENTS_STRIPE_MOCK")
    if configured:
        return Path(configured)
    gobin = infra.load_runtime().cache_root() / "bin"
    if not (gobin / "stripe-mock").is_file():
        subprocess.run(
            [_go(), "install", STRIPE_MOCK_MODULE], env={**os.environ, "GOBIN": str(gobin)}, check=True
        )
    return gobin / "stripe-mock"


@cache
def stripe_openapi() -> dict[str, Any]:
    """The OpenAPI description stripe-mock validates with (its module's embedded spec3.json)."""
    found = subprocess.run(
        [_go(), "mod", "download", "-json", STRIPE_MOCK_MODULE], check=True, capture_output=True, text=True
    )
    directory = Path(json.loads(found.stdout)["Dir"])
    spec: dict[str, Any] = json.loads((directory / "embedded" / "openapi" / "spec3.json").read_text())
    return spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running_stripe_mock(log: Path) -> Iterator[str]:
    """stripe-mock on a free port; its base URL."""
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(stripe_mock_binary()), "-http-addr", f"127.0.0.1:{port}", "-https-addr", "127.0.0.1:"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "stripe-mock did not start"
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)
