"""CPU and memory of named processes, found by pid, over a measured window.

Every figure is divided among the processes that did the work: the service under test,
the PostgreSQL backends serving its database plus the postmaster and its background
children, the Kafka broker, the sandbox provider and this load generator. Each is
identified by pid (the runtime's state file, the listener on the endpoint's port,
pg_stat_activity), never by process name: on a shared machine the first `java` or
`postgres` found may belong to someone else. /proc/stat gives how busy the whole machine
was, so CPU that none of them used (other users of the machine) shows too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

TICK = os.sysconf("SC_CLK_TCK")
# The application_name of the load generator's own connections that watch for the end of
# a window: their backends are the measurement's cost, not the service's.
OBSERVER = "bench-observer"
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_stat(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, RSS bytes) of one process from /proc/<pid>/stat; None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, rss 24.
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[21]) * PAGE


def machine_ticks() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (all cores)."""
    parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])  # guest time is already inside user
    return (total - idle) / TICK, total / TICK


def machine() -> dict[str, object]:
    meminfo = dict(
        (line.split(":")[0], int(line.split()[1])) for line in Path("/proc/meminfo").read_text().splitlines()
    )
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(meminfo["MemTotal"] / 1024 / 1024, 1),
        "load": [round(v, 2) for v in os.getloadavg()],
    }


def listener_pid(port: int) -> int | None:
    """The pid listening on a local TCP port (the broker, the postmaster)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def _state_files() -> list[Path]:
    root = Path(__file__).resolve().parents[1]
    named = os.environ.get("PAYMENTS_STATE_DIR")
    candidates = [Path(named) / "state.json"] if named else []
    return [*candidates, root / ".run" / "bench" / "state.json", root / ".run" / "state.json"]


def _alive(pid: int | None) -> bool:
    return bool(pid) and psutil.pid_exists(int(pid or 0))


def kafka_pid(bootstrap: str) -> int | None:
    """The broker's pid: from the runtime's state when it started this broker, else the
    process listening on the bootstrap port (None when the broker is not on this host)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    for path in _state_files():
        with contextlib.suppress(OSError, ValueError, KeyError):
            entry = json.loads(path.read_text())["kafka"]
            if entry.get("bootstrap") == bootstrap and _alive(entry.get("pid")):
                return int(entry["pid"])
    if host not in ("127.0.0.1", "localhost", "::1", ""):
        return None
    return listener_pid(int(port))


def postmaster_pid(dsn: str) -> int | None:
    for path in _state_files():
        with contextlib.suppress(OSError, ValueError, KeyError):
            entry = json.loads(path.read_text())["postgres"]
            if entry.get("dsn", "").rpartition("/")[0] == dsn.rpartition("/")[0] and _alive(entry.get("pid")):
                return int(entry["pid"])
    rest = dsn.split("@")[-1].split("/")[0]
    host, _, port = rest.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    return listener_pid(int(port or 5432))


# Samplers still running: a run that fails half-way leaves none behind (close_all).
OPEN: set[Meter | PostgresPids] = set()


async def close_all() -> None:
    for sampler in list(OPEN):
        await sampler.stop()


@dataclass
class Group:
    """Processes counted together; `pids` is asked again at every sample (backends come
    and go), so a process that starts inside the window counts from its start."""

    name: str
    pids: Callable[[], Iterable[int]]
    baseline: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    peak_rss: dict[int, float] = field(default_factory=dict)
    # A child process that exits inside the window: its CPU from the kernel's rusage of
    # reaped children, exact where sampling would miss its last fraction of a second.
    override_cpu_s: float | None = None

    def sample(self, first: bool = False) -> None:
        for pid in set(self.pids()):
            stat = proc_stat(pid)
            if stat is None:
                continue
            cpu, rss = stat
            if first:
                self.baseline[pid] = cpu
            else:
                self.baseline.setdefault(pid, 0.0)
            self.last[pid] = cpu
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0.0), rss / 1e6)

    @property
    def cpu_s(self) -> float:
        if self.override_cpu_s is not None:
            return self.override_cpu_s
        return sum(self.last[pid] - self.baseline[pid] for pid in self.last)


class Meter:
    """Samples every group from start() to stop(), every `interval` seconds, and the
    machine's /proc/stat at both ends."""

    def __init__(self, groups: list[Group], interval: float = 0.2) -> None:
        self.groups = groups
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self.wall_s = 0.0
        self.machine_busy_s = 0.0
        self.machine_total_s = 0.0

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for group in self.groups:
                group.sample()

    def start(self) -> None:
        for group in self.groups:
            group.sample(first=True)
        self._busy0, self._total0 = machine_ticks()
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop())
        OPEN.add(self)

    async def stop(self) -> None:
        if self not in OPEN:
            return
        OPEN.discard(self)
        for group in self.groups:
            group.sample()
        busy, total = machine_ticks()
        self.wall_s = time.monotonic() - self._t0
        self.machine_busy_s, self.machine_total_s = busy - self._busy0, total - self._total0
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def summary(self, messages: int) -> dict[str, object]:
        """CPU µs per message per group, 'other' (machine CPU none of them used), and how
        busy the machine was (share of all cores)."""
        per = {
            g.name: g.cpu_s / messages * 1e6 for g in self.groups if g.last or g.override_cpu_s is not None
        }
        attributed = sum(g.cpu_s for g in self.groups)
        per["other"] = max(0.0, self.machine_busy_s - attributed) / messages * 1e6
        return {
            "cpu_us_per_message": {k: round(v, 2) for k, v in per.items()},
            "cpu_s": {
                g.name: round(g.cpu_s, 3) for g in self.groups if g.last or g.override_cpu_s is not None
            },
            "pids": {g.name: sorted(g.last) for g in self.groups if g.last or g.override_cpu_s is not None},
            "peak_rss_mb": {g.name: round(max(g.peak_rss.values()), 1) for g in self.groups if g.peak_rss},
            "machine_busy": round(self.machine_busy_s / self.machine_total_s, 3)
            if self.machine_total_s
            else 0.0,
            "wall_s": round(self.wall_s, 3),
        }


class PostgresPids:
    """The backends serving one database (pg_stat_activity) and the postmaster with its
    background children (checkpointer, WAL writer...), refreshed by `refresh()`."""

    def __init__(self, admin_dsn: str, database: str) -> None:
        self.admin_dsn = admin_dsn
        self.database = database
        self.postmaster = postmaster_pid(admin_dsn)
        self.backends: set[int] = set()
        self.background: set[int] = set()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, interval: float = 0.2) -> None:
        self._conn = await asyncpg.connect(self.admin_dsn)
        await self.refresh()
        self._task = asyncio.create_task(self._loop(interval))
        OPEN.add(self)

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self.refresh()

    async def refresh(self) -> None:
        assert self._conn is not None
        rows = await self._conn.fetch(
            "SELECT pid, datname, backend_type, application_name FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid()"
        )
        if self.postmaster is None:  # not on this host: nothing to read in /proc
            return
        self.backends |= {
            r["pid"] for r in rows if r["datname"] == self.database and r["application_name"] != OBSERVER
        }
        # The postmaster's children by the process tree, less the backends serving other
        # databases (other users of a shared server): checkpointer, WAL writer, logger...
        others = {
            r["pid"] for r in rows if r["backend_type"] == "client backend" and r["datname"] != self.database
        }
        try:
            children = {c.pid for c in psutil.Process(self.postmaster).children()}
        except psutil.Error:
            children = set()
        self.background = ({self.postmaster} | children) - others - self.backends

    async def stop(self) -> None:
        OPEN.discard(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
