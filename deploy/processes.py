"""One OS process we started: the launcher's services, a test's crash victims, a worker.

Every caller that runs a program (deploy/system.py, the e2e crash tests, the fault
harness) starts, kills and stops it through this one class. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class Process:
    """A program in its own session (so a SIGKILL takes its children too), its output
    appended to `log` across restarts, or discarded when there is no log."""

    argv: list[str]
    env: dict[str, str]
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    spawned: float = 0.0
    _out: IO[bytes] | None = field(default=None, repr=False)

    def start(self, extra_env: dict[str, str] | None = None) -> Process:
        self._close_log()
        self.starts += 1
        self._out = self.log.open("ab") if self.log is not None else None
        self.process = subprocess.Popen(
            self.argv,
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._out if self._out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.spawned = time.monotonic()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing runs its shutdown path."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._close_log()

    def kill_now(self) -> None:
        """SIGKILL without waiting for it, so a signal handler may call it: waiting there
        could block on the very wait the handler interrupted."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """`sig` (SIGTERM: drain and exit), then SIGKILL after `timeout`; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
