"""The provider client's retries: a blip is tried again a few times, a refusal never."""

from __future__ import annotations

from typing import Any

import pytest

from payment_intake.adapters.provider import ProviderClient
from payment_intake.domain.provider import ProviderRefused
from payments_platform.messaging import TransientError


class Answers:
    def __init__(self, *answers: Exception | dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_blips_are_retried_until_an_answer() -> None:
    call = Answers(TransientError("503"), TransientError("reset"), {"ok": True})
    assert await ProviderClient("http://provider", attempts=3)._retrying(call) == {"ok": True}
    assert call.calls == 3


async def test_the_last_blip_is_raised_once_the_attempts_are_spent() -> None:
    call = Answers(*(TransientError(f"blip {i}") for i in range(3)))
    with pytest.raises(TransientError, match="blip 2"):
        await ProviderClient("http://provider", attempts=3)._retrying(call)
    assert call.calls == 3


async def test_a_refusal_is_not_retried() -> None:
    call = Answers(ProviderRefused("invalid_amount", "no"), {"ok": True})
    with pytest.raises(ProviderRefused):
        await ProviderClient("http://provider", attempts=3)._retrying(call)
    assert call.calls == 1
