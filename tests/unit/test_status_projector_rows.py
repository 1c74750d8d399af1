"""The read model's JSON columns are written as text that must equal what json.dumps
gives (and PostgreSQL's jsonb gives back), or an unchanged row would look changed."""

from __future__ import annotations

import json
import random
import string

from status_projector.adapters.rows import _dump_amounts, _dump_refs

ALPHABET = string.printable + 'éü€\u2028\x00"\\/'


def test_amounts_and_refs_are_the_text_json_dumps_gives() -> None:
    rng = random.Random(1)

    def text() -> str:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))

    for _ in range(5000):
        amounts = {text(): rng.randint(-(10**12), 10**12) for _ in range(rng.randint(0, 4))}
        assert _dump_amounts(amounts) == (json.dumps(amounts, sort_keys=True) if amounts else "{}")
        refs = [text() for _ in range(rng.randint(0, 4))]
        assert _dump_refs(refs) == json.dumps(sorted(refs), ensure_ascii=False)


def test_a_payment_id_map_reads_as_jsonb_writes_it() -> None:
    assert _dump_amounts({"b7d0": 5, "a1c2": 10}) == '{"a1c2": 10, "b7d0": 5}'
    assert _dump_refs([]) == "[]"
