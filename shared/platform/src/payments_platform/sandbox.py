"""Sandbox mode: the one switch under which published, well-known credentials work.

`PAYMENTS_SANDBOX=1` (set by `make run`, the tests and the benchmarks) lets a service
use the sandbox provider's published webhook secret and the demo portal keys printed
by `make run`. Without it a service refuses to start on either, or without credentials
of its own: a deployment that forgot to configure one fails loudly instead of running
with a secret everybody knows.
"""

from __future__ import annotations

SANDBOX_ENV = "PAYMENTS_SANDBOX"  # read as CommonSettings.sandbox
# Published with the sandbox provider (and in this repository): never a real secret.
SANDBOX_WEBHOOK_SECRET = "whsec_c2FuZGJveC1zZWNyZXQtZm9yLWxvY2FsLWRlbW9zLW9ubHk="  # noqa: S105
_DEMO_KEY_PREFIX = "sandbox_key_"


class UnsafeConfiguration(RuntimeError):
    """A credential is missing, or a published one is used outside sandbox mode."""


def demo_api_key(merchant: str) -> str:
    """The published read-API key of a merchant in sandbox mode (printed by `make run`)."""
    return f"{_DEMO_KEY_PREFIX}{merchant}"

