"""`make services`: the four programs (sandbox provider, invoice-sync, payment-intake,
status-projector) against an existing Kafka and PostgreSQL, without the demo.

Kafka and PostgreSQL come from PAYMENTS_KAFKA_BOOTSTRAP and PAYMENTS_DATABASE_URL, else
from the `.run/env` that `make up` writes. The merchant file is PAYMENTS_MERCHANT_CONFIG
(yours), else the demo's. Every other setting is read from the environment by each
service (README: "Run against your own Kafka and PostgreSQL"). It runs in sandbox mode,
with the sandbox provider; Ctrl-C stops everything. Standard library plus the launcher.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from system import (  # noqa: E402
    DEFAULT_PORTS,
    PORT_ENV,
    START_ORDER,
    System,
    configured_ports,
    refuse_taken_ports,
    stop_all,
)


def endpoints(state_dir: Path) -> tuple[str, str]:
    kafka, database = os.environ.get("PAYMENTS_KAFKA_BOOTSTRAP"), os.environ.get("PAYMENTS_DATABASE_URL")
    env_file = state_dir / "env"
    if (not kafka or not database) and env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            value = shlex.split(value)[0] if value else ""
            if name == "PAYMENTS_KAFKA_BOOTSTRAP":
                kafka = kafka or value
            elif name == "PAYMENTS_DATABASE_URL":
                database = database or value
    if not kafka or not database:
        raise SystemExit(
            "set PAYMENTS_KAFKA_BOOTSTRAP and PAYMENTS_DATABASE_URL, or run `make up` first"
        )
    return kafka, database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".run"))
    args = parser.parse_args()
    state_dir = args.state_dir.resolve()
    kafka, database = endpoints(state_dir)
    merchants = Path(os.environ.get("PAYMENTS_MERCHANT_CONFIG") or HERE / "demo" / "merchants.yaml").resolve()
    bin_dir = Path(sys.executable).parent
    # Ports you set win, else the documented ones; one that is taken stops us here.
    ports = configured_ports({name: DEFAULT_PORTS[name] for name in START_ORDER}, PORT_ENV)
    refuse_taken_ports("make services", ports)
    subprocess.run(
        [str(bin_dir / "payments-topics")],
        env={**os.environ, "PAYMENTS_KAFKA_BOOTSTRAP": kafka},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    system = System(
        kafka_bootstrap=kafka,
        database_url=database,
        log_dir=state_dir / "logs",
        bin_dir=bin_dir,
        topic_prefix=os.environ.get("PAYMENTS_TOPIC_PREFIX", ""),
        merchant_config=merchants,
        ports=ports,
    )
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        system.start()
        print(f"kafka {kafka}  postgresql {database}  merchant file {merchants}", flush=True)
        for name in system.names:
            print(f"  {name:17} {system.url(name)}   log: {state_dir / 'logs' / (name + '.log')}", flush=True)
        print("Ctrl-C stops them (a second Ctrl-C kills instead of waiting).", flush=True)
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_all(system, None, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
