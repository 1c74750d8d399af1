"""Start the whole system as OS processes: the sandbox provider and the three services.

Used by `make run` (deploy/demo.py) and by the end-to-end tests, so both run the
services exactly the same way. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# The sandbox provider's published secret: the services accept it only in sandbox mode,
# which every launch from here is (PAYMENTS_SANDBOX=1).
DEFAULT_SECRET = "whsec_c2FuZGJveC1zZWNyZXQtZm9yLWxvY2FsLWRlbW9zLW9ubHk="
DEFAULT_PORTS = {
    "invoice-sync": 8010,
    "payment-intake": 8020,
    "status-projector": 8030,
    "sandbox-provider": 8040,
}
START_ORDER = ("sandbox-provider", "invoice-sync", "payment-intake", "status-projector")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http_json(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw) if raw else None
        except ValueError:
            return err.code, raw.decode(errors="replace")


RUNTIME = Path(__file__).resolve().parent / "runtime.py"


def fresh_infrastructure(state_dir: Path) -> dict[str, str]:
    """Start Kafka and PostgreSQL with fresh data directories; their endpoint variables."""
    runtime = [sys.executable, str(RUNTIME)]
    subprocess.run([*runtime, "down", "--state-dir", str(state_dir)], check=False, capture_output=True)
    subprocess.run([*runtime, "up", "--state-dir", str(state_dir)], check=True)
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in (state_dir / "env").read_text().splitlines()
        if line.startswith("export ")
    )


def stop_infrastructure(state_dir: Path) -> None:
    subprocess.run([sys.executable, str(RUNTIME), "down", "--state-dir", str(state_dir)], check=False)


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class System:
    kafka_bootstrap: str
    database_url: str
    log_dir: Path
    bin_dir: Path
    topic_prefix: str = ""
    webhook_secret: str = DEFAULT_SECRET
    merchant_config: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    running: dict[str, Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, default in DEFAULT_PORTS.items():
            self.ports.setdefault(name, default if port_is_free(default) else free_port())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        p = self.ports
        return {
            **os.environ,
            "PAYMENTS_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "PAYMENTS_DATABASE_URL": self.database_url,
            "PAYMENTS_TOPIC_PREFIX": self.topic_prefix,
            "PAYMENTS_WEBHOOK_SECRET": self.webhook_secret,
            "PAYMENTS_SANDBOX": "1",
            **({"PAYMENTS_MERCHANT_CONFIG": str(self.merchant_config)} if self.merchant_config else {}),
            "PAYMENTS_PROVIDER_URL": self.url("sandbox-provider"),
            "PAYMENTS_PROVIDER_WEBHOOK_URL": f"{self.url('payment-intake')}/callbacks/provider",
            "SANDBOX_PROVIDER_PORT": str(p["sandbox-provider"]),
            "SANDBOX_PROVIDER_PUBLIC_URL": self.url("sandbox-provider"),
            "INVOICE_SYNC_HTTP_PORT": str(p["invoice-sync"]),
            "PAYMENT_INTAKE_HTTP_PORT": str(p["payment-intake"]),
            "STATUS_PROJECTOR_HTTP_PORT": str(p["status-projector"]),
            **self.extra_env,
        }

    def start(self, timeout: float = 90.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in START_ORDER:
            self.start_one(name)
        for name in START_ORDER:
            self.wait_ready(name, timeout)

    def start_one(self, name: str) -> Running:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [str(self.bin_dir / name)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running[name] = Running(name, self.ports[name], process, log)
        return self.running[name]

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        path = "/health/live" if name == "sandbox-provider" else "/health/ready"
        deadline = time.monotonic() + timeout
        running = self.running[name]
        last: Any = None
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {running.process.returncode}:\n{self.tail(name)}")
            try:
                status, last = http_json("GET", running.url + path, timeout=2.0)
                if status == 200:
                    return
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready after {timeout}s (last answer {last}):\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_one(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        running = self.running.pop(name)
        if running.process.poll() is None:
            running.process.send_signal(sig)
            try:
                running.process.wait(timeout)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait(10)
        running.log.close()
        return running.process.returncode

    def stop(self) -> dict[str, int]:
        """SIGTERM every process (services drain their batch and outbox), newest first."""
        codes = {}
        for name in reversed(START_ORDER):
            if name in self.running:
                codes[name] = self.stop_one(name)
        return codes
