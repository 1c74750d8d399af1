"""`up`, `env` and `down`: start both servers detached, record them in a state dir, stop them.

python3 deploy/runtime up   [--state-dir .run]   # start both, detached
python3 deploy/runtime up   --kafka-brokers 3 [--kafka-secure] [--replica]
                                                 # a KRaft cluster (SASL_SSL + ACLs),
                                                 # a streaming replica of PostgreSQL
python3 deploy/runtime env  [--state-dir .run]   # print the env file
python3 deploy/runtime down [--state-dir .run]   # stop them, delete data
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from .cluster import KafkaCluster
from .host import DATABASE_ENV, KAFKA_ENV, log, preferred_port, remove_tree, signal_group
from .kafka import DEFAULT_KAFKA_PORT, KafkaNode
from .postgres import DEFAULT_POSTGRES_PORT, PostgresNode


def _load_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _env_lines(variables: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    kafka = state["kafka"]
    variables = {KAFKA_ENV: kafka["bootstrap"], DATABASE_ENV: state["postgres"]["dsn"]}
    if state["postgres"].get("replica_dsn"):
        variables["PAYMENTS_READ_DATABASE_URL"] = state["postgres"]["replica_dsn"]
    if kafka.get("cluster") and kafka.get("secure"):
        # One env file per principal (mode 0600, generated passwords); the main one is the
        # super user's, for ops and `make services` (which then share one principal).
        cluster = KafkaCluster.from_state(kafka)
        for principal in cluster.passwords:
            path = state_dir / f"kafka-{principal}.env"
            path.write_text(_env_lines(cluster.client_env(principal)))
            path.chmod(0o600)
        variables |= cluster.client_env()
    (state_dir / "env").write_text(_env_lines(variables))
    if kafka.get("cluster") and kafka.get("secure"):
        (state_dir / "env").chmod(0o600)


def _node_type(entry: dict[str, Any] | None) -> type[KafkaNode] | type[KafkaCluster]:
    return KafkaCluster if entry and entry.get("cluster") else KafkaNode


def _reuse(previous: dict[str, Any] | None, node_type: Any) -> bool:
    if previous and previous.get("cluster"):
        node_type = KafkaCluster
    return bool(previous and previous.get("managed") and node_type.from_state(previous).is_running())


def _is_own_endpoint(previous: dict[str, Any] | None, key: str, value: str) -> bool:
    """A shell that sourced our env file must not make our own (dead) server look external."""
    return bool(previous and previous.get("managed") and previous.get(key) == value)


def _up_kafka(
    state_dir: Path,
    previous: dict[str, Any] | None,
    timeout: float,
    port: int | None = None,
    brokers: int = 1,
    secure: bool = False,
) -> dict[str, Any]:
    shape = (brokers, secure)
    if previous is not None and _reuse(previous, KafkaNode):
        was = (
            (len(previous["nodes"]), bool(previous.get("secure"))) if previous.get("cluster") else (1, False)
        )
        if was == shape:
            return previous
        log(f"Kafka is running as {was[0]} broker(s); `down` first to change its shape")
        return previous
    external = os.environ.get(KAFKA_ENV)
    if external and not _is_own_endpoint(previous, "bootstrap", external):
        return {"managed": False, "bootstrap": external}
    if brokers > 1 or secure:
        log(f"starting a Kafka cluster of {brokers}" + (" (SASL_SSL, ACLs)" if secure else ""))
        cluster = KafkaCluster(size=brokers, secure=secure).start(
            state_dir / "kafka", timeout=max(timeout, 180.0), detach=True
        )
        return cluster.to_state()
    log("starting Kafka")
    node = KafkaNode().start(
        state_dir / "kafka", port or preferred_port(DEFAULT_KAFKA_PORT), timeout=timeout, detach=True
    )
    return node.to_state()


def _up_postgres(
    state_dir: Path,
    previous: dict[str, Any] | None,
    timeout: float,
    port: int | None = None,
    replica: bool = False,
) -> dict[str, Any]:
    if previous is not None and _reuse(previous, PostgresNode):
        if replica and not previous.get("replica"):
            log("starting a streaming replica of PostgreSQL")
            standby = PostgresNode.from_state(previous).start_replica(
                state_dir / "postgres-replica", timeout=timeout
            )
            return previous | {"replica": standby.to_state(), "replica_dsn": standby.dsn}
        return previous
    external = os.environ.get(DATABASE_ENV)
    if external and not _is_own_endpoint(previous, "dsn", external):
        return {"managed": False, "dsn": external}
    log("starting PostgreSQL")
    node = PostgresNode().start(
        state_dir / "postgres",
        port or preferred_port(DEFAULT_POSTGRES_PORT),
        durable=True,
        timeout=timeout,
        detach=True,
    )
    state = node.to_state()
    if replica:
        log("starting a streaming replica of PostgreSQL")
        standby = node.start_replica(state_dir / "postgres-replica", timeout=timeout)
        state |= {"replica": standby.to_state(), "replica_dsn": standby.dsn}
    return state


def _describe(state: dict[str, Any]) -> str:
    kafka, postgres = state["kafka"], state["postgres"]
    lines = [f"kafka     {kafka['bootstrap']}" + ("" if kafka["managed"] else "  (external, from env)")]
    if kafka.get("managed") and kafka.get("ready_seconds") is not None:
        lines[-1] += f"  (ready in {kafka['ready_seconds']:.2f}s after launch, pid {kafka['pid']})"
    lines.append(f"postgres  {postgres['dsn']}" + ("" if postgres["managed"] else "  (external, from env)"))
    if postgres.get("replica_dsn"):
        lines.append(f"replica   {postgres['replica_dsn']}  (hot standby, PAYMENTS_READ_DATABASE_URL)")
    return "\n".join(lines)


def cmd_up(
    state_dir: Path,
    timeout: float,
    kafka_port: int | None = None,
    postgres_port: int | None = None,
    brokers: int = 1,
    secure: bool = False,
    replica: bool = False,
) -> int:
    previous = _load_state(state_dir)
    state: dict[str, Any] = {}
    try:
        state["kafka"] = _up_kafka(state_dir, previous.get("kafka"), timeout, kafka_port, brokers, secure)
        state["postgres"] = _up_postgres(state_dir, previous.get("postgres"), timeout, postgres_port, replica)
    except BaseException:
        _stop_started(state, previous)
        raise
    _write_state(state_dir, state)
    if state["kafka"] is previous.get("kafka") and state["postgres"] is previous.get("postgres"):
        print(f"already up (state in {state_dir})")
    print(_describe(state))
    print(f"env file: {state_dir / 'env'}  (source it: `. {state_dir / 'env'}`)")
    return 0


def _stop_started(state: dict[str, Any], previous: dict[str, Any]) -> None:
    """If `up` fails half-way, do not leave the half that did start running unrecorded."""
    for key in ("kafka", "postgres"):
        entry = state.get(key)
        if entry and entry.get("managed") and entry is not previous.get(key):
            _stop_entry(key, entry)


def _stop_entry(key: str, entry: dict[str, Any]) -> None:
    if key == "postgres":
        if entry.get("replica"):
            replica = PostgresNode.from_state(entry["replica"])
            replica.stop()
            replica.remove_data()
        postgres = PostgresNode.from_state(entry)
        postgres.stop()
        postgres.remove_data()
    elif entry.get("cluster"):
        cluster = KafkaCluster.from_state(entry)
        cluster.stop()
        remove_tree(cluster.root)
    else:
        node = KafkaNode.from_state(entry)
        node.stop()
        remove_tree(node.data_dir)


def cmd_down(state_dir: Path) -> int:
    state = _load_state(state_dir)
    if not state:
        log(f"nothing to stop: no state in {state_dir}")
        return 0
    for key in ("kafka", "postgres"):
        entry = state.get(key)
        if entry and entry.get("managed"):
            log(f"stopping {key} (pid {entry.get('pid')})")
            _stop_entry(key, entry)
    for name in ("state.json", "env"):
        (state_dir / name).unlink(missing_ok=True)
    for principal_env in state_dir.glob("kafka-*.env"):  # generated passwords: gone with the cluster
        principal_env.unlink()
    try:
        state_dir.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT):
            raise
    print("stopped")
    return 0


def servers(state_dir: Path) -> list[int]:
    """The pids of the Kafka and PostgreSQL that this state dir records as ours and
    that still run (checked by command line: a pid may have been reused)."""
    state = _load_state(state_dir)
    pids = []
    for key, node_type in (("kafka", KafkaNode), ("postgres", PostgresNode)):
        entry = state.get(key)
        if not (entry and entry.get("managed")):
            continue
        if entry.get("cluster"):
            nodes = KafkaCluster.from_state(entry).nodes
            pids += [n.pid for n in nodes if n.pid is not None and n.is_running()]
        elif node_type.from_state(entry).is_running():
            pids.append(int(entry["pid"]))
    return pids


def kill_now(state_dir: Path) -> None:
    """SIGKILL the servers of `state_dir` without waiting (a launcher told to hurry);
    `down` then finds them gone and deletes their data."""
    for pid in servers(state_dir):
        signal_group(pid, signal.SIGKILL)


def cmd_env(state_dir: Path) -> int:
    env_file = state_dir / "env"
    if not env_file.is_file():
        log(f"no env file in {state_dir}; run `python3 deploy/runtime up` first")
        return 1
    sys.stdout.write(env_file.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Kafka + PostgreSQL for the payments project.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start Kafka and PostgreSQL (detached)"),
        ("down", "stop what `up` started and delete its data"),
        ("env", "print the shell env file"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--state-dir", type=Path, default=Path(".run"))
        if name == "up":
            command.add_argument("--timeout", type=float, default=90.0, help="readiness deadline per server")
            command.add_argument("--kafka-port", type=int, help=f"instead of {DEFAULT_KAFKA_PORT}")
            command.add_argument("--postgres-port", type=int, help=f"instead of {DEFAULT_POSTGRES_PORT}")
            command.add_argument(
                "--kafka-brokers", type=int, default=1, help="KRaft nodes (3: RF 3, min ISR 2)"
            )
            command.add_argument(
                "--kafka-secure", action="store_true", help="SASL_SSL (SCRAM-SHA-512) with ACLs per principal"
            )
            command.add_argument("--replica", action="store_true", help="a streaming replica of PostgreSQL")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.expanduser().resolve()
    if args.command == "up":
        return cmd_up(
            state_dir,
            args.timeout,
            args.kafka_port,
            args.postgres_port,
            args.kafka_brokers,
            args.kafka_secure,
            args.replica,
        )
    if args.command == "down":
        return cmd_down(state_dir)
    return cmd_env(state_dir)
