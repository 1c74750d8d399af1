"""`make run`'s launcher (deploy/run_demo.py) as a user drives it from a terminal, on ports of
its own (the same settings a user sets, never the documented defaults):

- Ctrl-C, then Ctrl-C again while it is stopping, stops every program it started (the
  services, then Kafka and PostgreSQL) and frees every port;
- a port it needs that is taken stops it at once, with a message naming the port, what
  holds it and what to do, and a non-zero exit; it never moves quietly to another port.

A terminal's Ctrl-C reaches the whole foreground process group, so the launcher runs in a
group of its own and each SIGINT goes to that group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import free_port, port_holder, port_is_free
from runtime.host import pid_alive
from system import DEFAULT_PORTS, INFRASTRUCTURE_PORT_ENV, PORT_ENV

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "run_demo.py"
RUNTIME = DEMO.parent / "runtime"
STARTED_S = 300  # Kafka, PostgreSQL and five programs from nothing, on a shared 2-core machine


class Launcher:
    """deploy/run_demo.py in a process group of its own, its output collected line by line."""

    def __init__(self, state_dir: Path, ports: dict[str, int]) -> None:
        self.ports = ports
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PAYMENTS_KAFKA_BOOTSTRAP", "PAYMENTS_DATABASE_URL", "PAYMENTS_MERCHANT_CONFIG")
        }
        env |= {PORT_ENV[name]: str(ports[name]) for name in PORT_ENV}
        env |= {INFRASTRUCTURE_PORT_ENV[name]: str(ports[name]) for name in INFRASTRUCTURE_PORT_ENV}
        self.process = subprocess.Popen(
            [sys.executable, str(DEMO), "--state-dir", str(state_dir)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None:
                self._reader.join(5)
                if any(text in line for line in self.lines):
                    return
                raise AssertionError(f"the launcher exited {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def exit_code(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code


def launcher_ports() -> dict[str, int]:
    names = [*DEFAULT_PORTS, *INFRASTRUCTURE_PORT_ENV]
    return dict(zip(names, (free_port() for _ in names), strict=True))


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[set[int]]:
    """Pids a test found; whatever of them is still alive at the end is killed, and the
    launcher's Kafka and PostgreSQL data removed, so a test that fails leaves the machine
    as it found it."""
    pids: set[int] = set()
    yield pids
    for pid in pids:
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
    subprocess.run(
        [sys.executable, str(RUNTIME), "down", "--state-dir", str(tmp_path / "run")],
        check=False,
        capture_output=True,
    )


def test_ctrl_c_twice_while_stopping_stops_every_program_and_frees_every_port(
    tmp_path: Path, leftovers: set[int]
) -> None:
    ports = launcher_ports()
    launcher = Launcher(tmp_path / "run", ports)
    try:
        launcher.wait_for("Running (logs in", STARTED_S)
        holders = {name: port_holder(port) for name, port in ports.items()}
        assert all(holders.values()), f"not every program listens on its port: {holders}"
        leftovers.update(pid for pid, _ in holders.values() if pid is not None)  # type: ignore[misc]
        launcher.ctrl_c()
        launcher.wait_for("stopping services", 60)
        launcher.ctrl_c()  # impatient: again while the services drain
        time.sleep(0.3)
        launcher.ctrl_c()  # and once more
        code = launcher.exit_code(120)
    finally:
        if launcher.process.poll() is None:
            launcher.ctrl_c()
            launcher.exit_code(120)
    alive = {name: holder for name, holder in holders.items() if holder and pid_alive(holder[0])}
    assert not alive, f"still running after the launcher exited {code}: {alive}\n{launcher.output}"
    taken = [name for name, port in ports.items() if not port_is_free(port)]
    assert not taken, f"ports still taken: {taken}\n{launcher.output}"
    assert "stopped." in launcher.output, launcher.output


def test_a_taken_port_stops_the_launcher_at_once_with_what_holds_it_and_what_to_do(
    tmp_path: Path, leftovers: set[int]
) -> None:
    ports = launcher_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["sandbox-provider"]))
        squatter.listen()
        launcher = Launcher(tmp_path / "run", ports)
        try:
            code = launcher.exit_code(60)
        finally:
            if launcher.process.poll() is None:  # it went on with another port: stop it
                launcher.ctrl_c()
                launcher.exit_code(180)
    out = launcher.output
    assert code != 0, out
    assert str(ports["sandbox-provider"]) in out and "sandbox-provider" in out, out
    assert f"pid {os.getpid()}" in out, out  # what holds it: this test
    assert PORT_ENV["sandbox-provider"] in out and "make down" in out, out
    # Nothing was started: not even Kafka or PostgreSQL.
    assert port_is_free(ports["kafka"]) and port_is_free(ports["postgresql"]), out
