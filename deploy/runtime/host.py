"""What both servers need from the machine: ports, processes, directories, tools.

Standard library only, like the whole package (it runs before any virtualenv exists).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

KAFKA_ENV = "PAYMENTS_KAFKA_BOOTSTRAP"
DATABASE_ENV = "PAYMENTS_DATABASE_URL"
LOOPBACK = "127.0.0.1"
PORT_ATTEMPTS = 3
TAIL_LINES = 30
T = TypeVar("T")


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays parseable (e.g. `env`)."""
    print(f"[runtime] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Jars are big and immutable: keep them outside the repo and reuse across runs."""
    configured = os.environ.get("PAYMENTS_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "payments-infra"


def is_root() -> bool:
    return os.geteuid() == 0


def port_is_free(port: int) -> bool:
    """SO_REUSEADDR mirrors what Kafka and PostgreSQL do, so TIME_WAIT does not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Let the kernel choose distinct ports; a clash before the server binds is retried."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_holder(port: int) -> tuple[int, str] | None:
    """The process listening on `port` on this machine, as (pid, command line), when this
    user may see it (Linux: /proc); None when nothing listens or it is hidden from us."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets.add(f"socket:[{inode}]")
    if not sockets:
        return None
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for process in (Path("/proc") / str(pid) for pid in pids):
        try:
            if any(os.readlink(fd) in sockets for fd in (process / "fd").iterdir()):
                cmdline = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return int(process.name), cmdline.strip()
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return None


def require_free(port: int | None) -> None:
    """A caller-chosen port that is taken is a usage error, not something to retry."""
    if port is not None and not port_is_free(port):
        raise RuntimeError(f"port {port} on {LOOPBACK} is already in use")


def preferred_port(port: int) -> int:
    """Well-known ports make the CLI endpoints memorable; fall back when taken."""
    return port if port_is_free(port) else free_port()


def pid_alive(pid: int | None, cmdline_needle: str | None = None) -> bool:
    """Zombies count as dead, and the needle guards against a recycled pid."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    if cmdline_needle is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return cmdline_needle in cmdline


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `predicate` until true; return the elapsed seconds or raise TimeoutError."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(interval)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Servers run in their own session, so the group id equals the leader's pid."""
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        wait_for(lambda: not pid_alive(pid), timeout, f"exit of pid {pid}")
    except TimeoutError:
        return False
    return True


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM lets the server shut down cleanly; SIGKILL bounds how long we wait."""
    signal_group(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        log(f"pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
        signal_group(pid, signal.SIGKILL)
        wait_gone(pid, 10)


class PortClashError(RuntimeError):
    """Another process bound a port we had picked before our server could."""



def startup_error(exc: Exception, log_file: Path) -> RuntimeError:
    """Show the server's own words (first error + tail) and make port races recognisable."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        lines = [f"(no log at {log_file})"]
    first_error = next((line for line in lines if " ERROR " in line or "FATAL:" in line), None)
    clash = any("Address already in use" in line for line in lines)
    error_type = PortClashError if clash else RuntimeError
    context = f"first error: {first_error}\n" if first_error else ""
    tail = "\n".join(lines[-TAIL_LINES:])
    return error_type(f"{exc}\n{context}last lines of {log_file}:\n{tail}")


def retry_port_clash(start_once: Callable[[], T], what: str) -> T:
    """Free ports are picked before the server binds them; parallel test workers can win."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return start_once()
        except PortClashError:
            if attempt == PORT_ATTEMPTS:
                raise
            log(f"{what}: a picked port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def remove_tree(path: Path | None) -> None:
    if path is None:
        return
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def fresh_dir(path: Path) -> Path:
    """Every run starts from empty storage so no state leaks between runs."""
    path = path.expanduser().resolve()
    remove_tree(path)
    path.mkdir(parents=True)
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Parallel pytest workers may all try to fill the cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apt_install(package: str) -> None:
    """Fresh CI machines may lack a server package; root can install it from Debian."""
    if not is_root() or shutil.which("apt-get") is None:
        raise RuntimeError(f"{package} is missing and cannot be installed here (needs root and apt-get)")
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, env=env, stdout=sys.stderr)


def require_tool(name: str, apt_package: str) -> str:
    found = shutil.which(name)
    if found is None:
        apt_install(apt_package)
        found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{name}` not found on PATH (Debian package: {apt_package})")
    return found

