"""Pooled connections go back without asyncpg's reset statement (payments_platform.sessions),
so every statement that leaves state in the session past its transaction must come with
`keeps_session_state` on its connection, in the same file: a session advisory lock, a plain
SET, LISTEN, a cursor WITH HOLD."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A SET opens its statement (right after the quote, or after a `;`), in capitals as our SQL
# writes it: `UPDATE ... SET`, and "set" in prose, are not one.
SESSION_STATE = re.compile(
    r"pg_(try_)?advisory_lock(_shared)?\(|\bLISTEN\s|\bWITH HOLD\b"
    r"|(?:[\"']|;\s*)SET\s+(?!LOCAL\b)(SESSION\s+)?[a-z_.]+\s*(=|TO\b)"
)
# Files whose session statements run on connections of their own, never a pool's.
OWN_CONNECTIONS: dict[str, str] = {}


def sources() -> list[Path]:
    roots = [ROOT / "shared", ROOT / "services"]
    return [p for r in roots for p in r.rglob("*.py") if "/tests/" not in str(p)]


def test_every_session_statement_marks_its_connection() -> None:
    unmarked = []
    for path in sources():
        text = path.read_text()
        relative = str(path.relative_to(ROOT))
        if (
            SESSION_STATE.search(text)
            and "keeps_session_state(" not in text
            and relative not in OWN_CONNECTIONS
        ):
            unmarked.append(relative)
    assert unmarked == [], f"session state without keeps_session_state: {unmarked}"


def test_the_scan_finds_what_it_looks_for() -> None:
    for statement in (
        'fetchval("SELECT pg_try_advisory_lock(hashtext(x))")',
        'execute("SELECT pg_advisory_lock(1)")',
        'execute("LISTEN changes")',
        'execute("SET statement_timeout = 0")',
        "execute('SET search_path TO x')",
        'execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1")',
    ):
        assert SESSION_STATE.search(statement), statement
    for statement in (
        'execute("SELECT pg_advisory_xact_lock(1)")',
        'execute("SET LOCAL synchronous_commit = off")',
        'execute("UPDATE t SET a = 1")',
        'execute("INSERT ... ON CONFLICT DO UPDATE SET a = EXCLUDED.a")',
        '" ON CONFLICT (a) DO UPDATE"\n" SET b = EXCLUDED.b"',
        '"correlation_id (set it to the command\'s own"',
    ):
        assert not SESSION_STATE.search(statement), statement
