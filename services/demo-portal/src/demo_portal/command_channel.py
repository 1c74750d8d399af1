"""What the portal's handlers need from outside: send a command and await its outcome.

A Protocol, so that the handlers never import the FastStream adapter implementing it
(adapters/messaging.py) and a test can hand them any object with the same method.
"""

from __future__ import annotations

from typing import Protocol

from payments_contracts.envelope import Envelope
from payments_portal_client import Outcome


class CommandChannel(Protocol):
    async def send(self, command: Envelope, *, until_checkout: bool, timeout_s: float) -> Outcome: ...
