"""A throwaway PostgreSQL cluster from the machine's binaries, listening on 127.0.0.1.

The binaries are installed with apt-get when missing and we are root; as root the
server runs as an unprivileged `postgres` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .host import (
    DATABASE_ENV,
    LOOPBACK,
    apt_install,
    free_port,
    fresh_dir,
    is_root,
    log,
    pid_alive,
    remove_tree,
    require_free,
    retry_port_clash,
    signal_group,
    startup_error,
    terminate,
    wait_for,
    wait_gone,
)
from .wire import WireProtocolError, pg_close, pg_execute, pg_session

DEFAULT_POSTGRES_PORT = 5432
PG_SUPERUSER = "postgres"
PG_DATABASE = "payments"
# sun_path is 108 bytes on Linux; PostgreSQL appends "/.s.PGSQL.<port>".
MAX_SOCKET_DIR_LEN = 90


def _has_server(bin_dir: Path) -> bool:
    return all((bin_dir / tool).is_file() for tool in ("initdb", "postgres", "pg_ctl"))


def _find_pg_bindir() -> Path | None:
    """pg_config may belong to libpq-dev without a server, so check initdb is really there."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], stdout=subprocess.PIPE, text=True, check=False)
        candidate = Path(result.stdout.strip())
        if result.returncode == 0 and _has_server(candidate):
            return candidate

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return -1.0

    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_server(Path(path)):
            return Path(path)
    return None


def ensure_postgres_binaries() -> Path:
    """Return PostgreSQL's server bin dir, installing Debian's package when root."""
    found = _find_pg_bindir()
    if found is None:
        if not is_root():
            raise RuntimeError(
                "PostgreSQL server binaries not found (no initdb via pg_config or in "
                "/usr/lib/postgresql/*/bin). Install them (Debian: apt-get install postgresql) "
                f"or set {DATABASE_ENV} to an existing database."
            )
        apt_install("postgresql")
        found = _find_pg_bindir()
    if found is None:
        raise RuntimeError("PostgreSQL installed but no initdb found under /usr/lib/postgresql/*/bin")
    return found


def postgres_ready(host: str, port: int) -> bool:
    """True once a client can log in and run a query, not merely once the port is open."""
    try:
        sock = pg_session(host, port, PG_SUPERUSER, "postgres")
        try:
            pg_execute(sock, "SELECT 1")
        finally:
            pg_close(sock)
    except (OSError, struct.error, WireProtocolError):
        return False
    return True


def ensure_os_user(name: str) -> None:
    """PostgreSQL refuses to run as root, so root needs an unprivileged account for it."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        log(f"creating OS user {name!r} to run PostgreSQL")
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )


def _as_user(run_as: str | None) -> dict[str, Any]:
    """Popen kwargs that drop root (uid, gid and supplementary groups) for child processes."""
    if run_as is None:
        return {}
    entry = pwd.getpwnam(run_as)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _user_can_write(path: Path, run_as: str | None) -> bool:
    if run_as is None:
        return os.access(path, os.W_OK | os.X_OK)
    result = subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)], **_as_user(run_as))
    return result.returncode == 0


def _chown(path: Path, run_as: str | None) -> None:
    if run_as is None:
        return
    entry = pwd.getpwnam(run_as)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class PostgresNode:
    """A throwaway PostgreSQL cluster owned by this runtime, listening on 127.0.0.1."""

    data_dir: Path | None = None
    pgdata: Path | None = None
    port: int | None = None
    pid: int | None = None
    bin_dir: Path | None = None
    run_as: str | None = None
    durable: bool = True
    relocated: bool = False
    ready_seconds: float | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        if self.port is None:
            raise RuntimeError("PostgreSQL is not started")
        return f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{self.port}/{PG_DATABASE}"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "postgres.log"

    def start(
        self,
        data_dir: Path,
        port: int | None = None,
        durable: bool = True,
        *,
        timeout: float = 60.0,
        detach: bool = False,
    ) -> PostgresNode:
        """initdb a fresh cluster, start it and create the `payments` database.

        `durable=False` trades crash safety for speed: right for tests, whose data
        is thrown away anyway. `detach` has the same meaning as for KafkaNode.
        """
        require_free(port)
        self.bin_dir = ensure_postgres_binaries()
        self.run_as = PG_SUPERUSER if is_root() else None
        if self.run_as:
            ensure_os_user(self.run_as)
        self.durable = durable
        if not detach:
            atexit.register(self.stop)
        retry_port_clash(lambda: self._start_once(data_dir, port, timeout), "PostgreSQL")
        self._create_database()
        return self

    def _start_once(self, data_dir: Path, port: int | None, timeout: float) -> None:
        self.remove_data()
        self.data_dir = fresh_dir(data_dir)
        self.port = port or free_port()
        self.pgdata = self._place_cluster()
        self._initdb()
        self._configure()
        self._launch()
        self._wait_ready(timeout)

    def _place_cluster(self) -> Path:
        """Put the cluster where the postgres user can reach it and the socket path fits.

        As root, data dirs often sit under 0700 parents (/root, pytest's tmp dirs) the
        postgres user cannot traverse; then the cluster lives in /tmp and data_dir gets
        a `pgdata` symlink to it, so the socket dir is still reachable from data_dir.
        """
        assert self.data_dir is not None
        _chown(self.data_dir, self.run_as)
        wanted = self.data_dir / "pgdata"
        if len(str(wanted)) <= MAX_SOCKET_DIR_LEN and _user_can_write(self.data_dir, self.run_as):
            return wanted
        base = Path(tempfile.mkdtemp(prefix="payments-pg-", dir="/tmp"))
        base.chmod(0o755)
        _chown(base, self.run_as)
        wanted.symlink_to(base / "pgdata")
        self.relocated = True
        return base / "pgdata"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / args[0]), *args[1:]]
        return subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
            **_as_user(self.run_as),
        )

    def _initdb(self) -> None:
        assert self.pgdata is not None
        args = [
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not self.durable:
            args.append("--no-sync")
        result = self._run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout[-4000:]}")

    def _configure(self) -> None:
        """Loopback-only trust auth: fine for a throwaway local cluster, never for a shared one."""
        assert self.pgdata is not None
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.pgdata}'",
            "max_connections": "200",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# payments runtime\n" + lines)
        (self.pgdata / "pg_hba.conf").write_text(
            "# payments runtime: trust, loopback and the private socket only\n"
            "local all all trust\n"
            f"host  all all {LOOPBACK}/32 trust\n"
            # A streaming replica (start_replica) connects for replication from loopback.
            f"host  replication all {LOOPBACK}/32 trust\n"
        )

    def _launch(self) -> None:
        """Run the postmaster directly (not via pg_ctl) so an early crash is seen at once."""
        assert self.bin_dir is not None
        assert self.pgdata is not None
        with open(self.log_file, "ab") as log_handle:
            self._process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.pgdata)],
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                **_as_user(self.run_as),
            )
        self.pid = self._process.pid

    def _probe(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise RuntimeError(f"PostgreSQL exited with code {code} during startup")
        assert self.port is not None
        return postgres_ready(LOOPBACK, self.port)

    def _wait_ready(self, timeout: float) -> None:
        try:
            self.ready_seconds = wait_for(self._probe, timeout, f"PostgreSQL on port {self.port}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise startup_error(exc, self.log_file) from None

    def _create_database(self) -> None:
        self._execute(f"CREATE DATABASE {PG_DATABASE}")

    def is_running(self) -> bool:
        return pid_alive(self.pid, "postgres")

    def start_replica(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        timeout: float = 60.0,
        synchronous: bool = False,
    ) -> PostgresNode:
        """A hot standby of this server: pg_basebackup, then streaming replication.

        It answers read-only queries with what it has replayed; the read API reads from it
        (PAYMENTS_READ_DATABASE_URL). The copy is taken from this server's current data,
        so the payments database and every schema in it are there from the start.

        `synchronous`: this server's commits wait until the standby has the WAL on disk,
        so promoting the standby after this server is lost loses no commit (writes wait
        while the standby is down). Set on this server only, after the copy: once promoted,
        the standby runs alone without waiting for a standby it no longer has.
        """
        assert self.port is not None and self.bin_dir is not None
        replica = PostgresNode(bin_dir=self.bin_dir, run_as=self.run_as, durable=self.durable)
        require_free(port)

        def once() -> None:
            replica.remove_data()
            replica.data_dir = fresh_dir(data_dir)
            replica.port = port or free_port()
            replica.pgdata = replica._place_cluster()
            result = replica._run(
                "pg_basebackup",
                "-h", LOOPBACK, "-p", str(self.port), "-U", PG_SUPERUSER,
                "-D", str(replica.pgdata), "-X", "stream", "-R", "--checkpoint=fast",
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"pg_basebackup failed:\n{result.stdout[-4000:]}")
            with open(replica.pgdata / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# payments runtime: this copy is a hot standby\n"
                    f"port = {replica.port}\n"
                    f"unix_socket_directories = '{replica.pgdata}'\n"
                    "hot_standby = on\n"
                    # Reads on the standby are short; a replay conflict cancels them after
                    # this long rather than holding replay (and freshness) back.
                    "max_standby_streaming_delay = 5s\n"
                )
            replica._launch()
            replica._wait_ready(timeout)

        retry_port_clash(once, "PostgreSQL replica")
        if synchronous:
            self._execute("ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()")
        return replica

    def promote(self, timeout: float = 60.0) -> float:
        """Make this standby the primary (`pg_ctl promote`); seconds until it takes writes."""
        assert self.pgdata is not None
        started = time.monotonic()
        result = self._run("pg_ctl", "promote", "-D", str(self.pgdata), "-w", "-t", str(int(timeout)))
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl promote failed:\n{result.stdout[-4000:]}")
        return time.monotonic() - started

    def _execute(self, *statements: str) -> None:
        assert self.port is not None
        sock = pg_session(LOOPBACK, self.port, PG_SUPERUSER, "postgres")
        try:
            for sql in statements:
                pg_execute(sock, sql)
        finally:
            pg_close(sock)

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: no checkpoint, crash recovery on the next start."""
        assert self.pgdata is not None
        self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "30")
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
        self._process, self.pid = None, None

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend (the host lost), no shutdown at all."""
        if self.pid is not None and self.is_running():
            self.thaw()
            signal_group(self.pid, signal.SIGKILL)
            wait_gone(self.pid, 10)
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
        self._process, self.pid = None, None

    def processes(self) -> list[int]:
        """The postmaster and every process it forked (backends, walwriter, ...)."""
        if self.pid is None:
            return []
        found = [self.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.pid:
                    found.append(int(stat.parent.name))
        return found

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections stay open and nothing answers (a hung
        host, a partition), the case a client's timeouts must handle without an error."""
        for pid in self.processes():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def restart(self, timeout: float = 60.0) -> float:
        """Start the cluster again on its data directory; seconds until it accepts logins."""
        started = time.monotonic()
        self._launch()
        self._wait_ready(timeout)
        return time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
        """`pg_ctl stop -m fast` aborts sessions but shuts down cleanly; SIGKILL is the backstop."""
        if self.pid is not None and self.is_running() and self.pgdata is not None:
            result = self._run(
                "pg_ctl",
                "stop",
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
            )
            if result.returncode != 0 or not wait_gone(self.pid, 5):
                log(f"pg_ctl stop failed ({result.stdout.strip()}); killing pid {self.pid}")
                terminate(self.pid, 5)
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._process = None
        self.pid = None

    def remove_data(self) -> None:
        """The relocated cluster lives outside data_dir, so it must be deleted explicitly."""
        if self.relocated and self.pgdata is not None:
            remove_tree(self.pgdata.parent)
            self.relocated = False
        remove_tree(self.data_dir)

    def to_state(self) -> dict[str, Any]:
        return {
            "managed": True,
            "dsn": self.dsn,
            "pid": self.pid,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "pgdata": str(self.pgdata),
            "bin_dir": str(self.bin_dir),
            "run_as": self.run_as,
            "durable": self.durable,
            "relocated": self.relocated,
            "log": str(self.log_file),
            "ready_seconds": self.ready_seconds,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PostgresNode:
        return cls(
            data_dir=Path(state["data_dir"]),
            pgdata=Path(state["pgdata"]),
            port=state["port"],
            pid=state["pid"],
            bin_dir=Path(state["bin_dir"]),
            run_as=state.get("run_as"),
            durable=state.get("durable", True),
            relocated=state.get("relocated", False),
            ready_seconds=state.get("ready_seconds"),
        )


def failover_dsn(*nodes: PostgresNode) -> str:
    """One URL over a primary and its standbys that connects to whichever takes writes
    (`target_session_attrs`, as in libpq): a client keeps it across a promotion."""
    hosts = ",".join(f"{LOOPBACK}:{node.port}" for node in nodes)
    return f"postgresql://{PG_SUPERUSER}@{hosts}/{PG_DATABASE}?target_session_attrs=read-write"
