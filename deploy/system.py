"""Start the whole system as OS processes: the sandbox provider and the three services.

Used by `make run` (deploy/run_demo.py) and by the end-to-end tests, so both run the
services exactly the same way. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processes import Process
from runtime import free_port, port_holder, port_is_free
from runtime.cli import kill_now as kill_infrastructure_now
from runtime.cli import servers

# The sandbox provider's published secret: the services accept it only in sandbox mode,
# which every launch from here is (PAYMENTS_SANDBOX=1).
DEFAULT_SECRET = "whsec_c2FuZGJveC1zZWNyZXQtZm9yLWxvY2FsLWRlbW9zLW9ubHk="
DEFAULT_PORTS = {
    "invoice-sync": 8010,
    "payment-intake": 8020,
    "status-projector": 8030,
    "sandbox-provider": 8040,
    "demo-portal": 8050,
}
START_ORDER = ("sandbox-provider", "invoice-sync", "payment-intake", "status-projector")
PORTAL = "demo-portal"
# Each program's own port setting (README's settings table); the launchers read the same
# variables, so one setting moves a program and the URLs the others are given for it.
PORT_ENV = {
    "invoice-sync": "INVOICE_SYNC_HTTP_PORT",
    "payment-intake": "PAYMENT_INTAKE_HTTP_PORT",
    "status-projector": "STATUS_PROJECTOR_HTTP_PORT",
    "sandbox-provider": "SANDBOX_PROVIDER_PORT",
    "demo-portal": "DEMO_PORTAL_HTTP_PORT",
}
# Kafka and PostgreSQL that `make run` starts (deploy/runtime): 9092 and 5432 unless set.
INFRASTRUCTURE_PORT_ENV = {"kafka": "PAYMENTS_KAFKA_PORT", "postgresql": "PAYMENTS_POSTGRES_PORT"}
DEFAULT_INFRASTRUCTURE_PORTS = {"kafka": 9092, "postgresql": 5432}


def configured_ports(defaults: dict[str, int], variables: dict[str, str]) -> dict[str, int]:
    """Each port as its variable in the environment sets it, else its default."""
    return {name: int(os.environ.get(variables[name]) or port) for name, port in defaults.items()}


def refuse_taken_ports(launcher: str, wanted: dict[str, int], state_dir: Path | None = None) -> None:
    """Exit (status 1) naming every port of `wanted` that is taken, what holds it and
    what to do, before anything starts. A launcher that moved to other ports instead
    left a user's portal talking to an orphan of an earlier run (the sandbox on 8040)
    without a word. Kafka and PostgreSQL that `state_dir` records are not in the way:
    the launcher replaces them with fresh ones."""
    replaced = set(servers(state_dir)) if state_dir is not None else set()
    variables = PORT_ENV | INFRASTRUCTURE_PORT_ENV
    taken: dict[str, str] = {}
    for name, port in wanted.items():
        if port_is_free(port):
            continue
        holder = port_holder(port)
        if holder is not None and holder[0] in replaced:
            continue
        taken[name] = (
            f"pid {holder[0]}: {holder[1][:160]}"
            if holder is not None
            else f"a process this user cannot see (`ss -ltnp 'sport = :{port}'` names it)"
        )
    if not taken:
        return
    lines = [f"  port {wanted[n]} ({n}, set by {variables[n]}) is held by {who}" for n, who in taken.items()]
    raise SystemExit(
        f"{launcher} cannot start: ports it needs are taken.\n"
        + "\n".join(lines)
        + "\nStop what holds them: an earlier run still going (Ctrl-C in its terminal), the Kafka"
        " and PostgreSQL of `make up` (`make down`), or `kill PID`. Or run on other ports: set"
        f" the variable named for each, e.g. {variables[next(iter(taken))]}=<port> {launcher}."
    )


def sandbox_merchant_file(directory: Path) -> Path:
    """A merchant file for runs that name no merchants: one merchant owning no account, so
    the status-projector starts (it needs a key), and a `default` policy, so payment-intake
    judges every account's commands by it (without one it refuses unlisted accounts)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "merchants.json"
    path.write_text(
        json.dumps({"default": "full-payment-portal", "merchants": {"sandbox-merchant": {"accounts": []}}})
    )
    return path


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


RUNTIME = Path(__file__).resolve().parent / "runtime"


def fresh_infrastructure(
    state_dir: Path, kafka_port: int | None = None, postgres_port: int | None = None
) -> dict[str, str]:
    """Start Kafka and PostgreSQL with fresh data directories; their endpoint variables."""
    runtime = [sys.executable, str(RUNTIME)]
    ports = [
        *(["--kafka-port", str(kafka_port)] if kafka_port else []),
        *(["--postgres-port", str(postgres_port)] if postgres_port else []),
    ]
    subprocess.run([*runtime, "down", "--state-dir", str(state_dir)], check=False, capture_output=True)
    subprocess.run([*runtime, "up", "--state-dir", str(state_dir), *ports], check=True)
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in (state_dir / "env").read_text().splitlines()
        if line.startswith("export ")
    )


def stop_infrastructure(state_dir: Path) -> None:
    # Its own session: a Ctrl-C in the terminal reaches the whole foreground group and
    # would kill `down` half-way, Kafka or PostgreSQL still running.
    subprocess.run(
        [sys.executable, str(RUNTIME), "down", "--state-dir", str(state_dir)],
        check=False,
        start_new_session=True,
    )


def stop_all(
    system: System | None, infrastructure: Path | None, say: Callable[[str], None] = print
) -> None:
    """Stop every program `system` runs, newest first, then the Kafka and PostgreSQL that
    `infrastructure` (a runtime state dir) records. A Ctrl-C or SIGTERM meanwhile hurries
    the stop (SIGKILL to everything still running) and never cuts it short: a second
    Ctrl-C used to raise KeyboardInterrupt inside it and leave the services, Kafka and
    PostgreSQL running on their ports."""

    def hurry(signum: int, frame: object) -> None:
        # os.write, not print: print from a handler can raise on a stdout in mid-write.
        os.write(sys.stderr.fileno(), b"\n  again: killing what still runs instead of waiting\n")
        if system is not None:
            system.kill_now()
        if infrastructure is not None:
            kill_infrastructure_now(infrastructure)

    previous = {sig: signal.signal(sig, hurry) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if system is not None and system.running:
            say("stopping services ...")
            codes = system.stop()
            say("  " + ", ".join(f"{name} exited {code}" for name, code in codes.items()))
        if infrastructure is not None:
            say("stopping Kafka and PostgreSQL ...")
            stop_infrastructure(infrastructure)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Running:
    name: str
    port: int
    launched: Process

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.launched.process is not None
        return self.launched.process

    @property
    def spawned(self) -> float:
        return self.launched.spawned

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
    # The reference portal (services/demo-portal) runs for `make run` and the browser tests.
    with_portal: bool = False

    def __post_init__(self) -> None:
        # Never a documented port by chance: a developer's `make run` may hold it, and a
        # launcher (run_demo.py, services.py) passes the ones it means.
        for name in DEFAULT_PORTS:
            self.ports.setdefault(name, free_port())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        p = self.ports
        if self.merchant_config is None:
            self.merchant_config = sandbox_merchant_file(self.log_dir)
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
            # Stripe merchants (provider: stripe) talk to the sandbox's Stripe mode.
            "PAYMENTS_STRIPE_API_BASE": f"{self.url('sandbox-provider')}/stripe",
            "SANDBOX_PROVIDER_STRIPE_WEBHOOK_URL": f"{self.url('payment-intake')}/callbacks/stripe",
            "SANDBOX_PROVIDER_PORT": str(p["sandbox-provider"]),
            "SANDBOX_PROVIDER_PUBLIC_URL": self.url("sandbox-provider"),
            "INVOICE_SYNC_HTTP_PORT": str(p["invoice-sync"]),
            "PAYMENT_INTAKE_HTTP_PORT": str(p["payment-intake"]),
            "STATUS_PROJECTOR_HTTP_PORT": str(p["status-projector"]),
            "DEMO_PORTAL_HTTP_PORT": str(p["demo-portal"]),
            "DEMO_PORTAL_READ_API_URL": self.url("status-projector"),
            **self.extra_env,
        }

    @property
    def names(self) -> tuple[str, ...]:
        return (*START_ORDER, PORTAL) if self.with_portal else START_ORDER

    def start(self, timeout: float = 90.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            self.start_one(name)
        for name in self.names:
            self.wait_ready(name, timeout)

    def start_one(self, name: str, env: dict[str, str] | None = None, *, key: str | None = None) -> Running:
        key = key or name
        argv, log = [str(self.bin_dir / name)], self.log_dir / f"{key}.log"
        launched = Process(argv, {**self.env(), **(env or {})}, log).start()
        self.running[key] = Running(key, self.ports[key], launched)
        return self.running[key]

    def start_replica(self, name: str, replica: int) -> Running:
        """One more instance of service `name`, on its own port, with a stable instance
        id (static group membership) that a restart of the same replica reuses."""
        key = f"{name}-{replica}"
        self.ports.setdefault(key, free_port())
        env = {PORT_ENV[name]: str(self.ports[key]), "PAYMENTS_INSTANCE_ID": key}
        return self.start_one(name, env, key=key)

    def wait_ready(self, name: str, timeout: float = 90.0) -> float:
        """Seconds from the process's start until `name` answered ready."""
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
                    return time.monotonic() - running.spawned
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready after {timeout}s (last answer {last}):\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_one(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        # Forgotten only once stopped, so kill_now still sees the one being waited for.
        code = self.running[name].launched.stop(sig, timeout)
        del self.running[name]
        assert code is not None
        return code

    def kill_now(self) -> None:
        """SIGKILL every program still running, without waiting (from a signal handler)."""
        for running in list(self.running.values()):
            running.launched.kill_now()

    def stop(self) -> dict[str, int]:
        """SIGTERM every process (services drain their batch and outbox), newest first."""
        codes = {}
        for key in reversed(list(self.running)):
            codes[key] = self.stop_one(key)
        return codes

    def stop_cleanly(self) -> str:
        """`stop()`, then what went wrong: each program that did not exit 0 on SIGTERM, with
        its error lines and the end of its log ('' when every one did)."""
        codes = self.stop()
        return "\n".join(
            f"{name} exited {code}:\n{self.errors(name)}\n...\n{self.tail(name)}"
            for name, code in codes.items()
            if code != 0
        )

    def errors(self, name: str, lines: int = 20) -> str:
        """The last lines of `name`'s log at error level or above, or of a traceback."""
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        marks = ('"level": "error"', '"level": "critical"', "Traceback")
        text = path.read_text(errors="replace").splitlines()
        found = [line for line in text if any(m in line for m in marks)]
        return "\n".join(found[-lines:])
