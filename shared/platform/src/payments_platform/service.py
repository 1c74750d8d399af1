"""Hosts one service process: HTTP (health, metrics, its own routes), its consumers and
its outbox relay; stops gracefully on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol

import asyncpg
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from payments_contracts.topics import TopicRegistry

from . import tracing
from .database import answers_within, open_pool
from .health import BrokerProbe, LoopHeartbeat
from .http_limits import server_limits
from .messaging import OutboxRelay, TransactionalConsumer
from .observability import configure_logging
from .settings import CommonSettings
from .topic_admin import apply_registry

log = logging.getLogger(__name__)

RELAY_LEADER = Gauge(
    "outbox_relay_leader", "1 while this instance holds the outbox lock and publishes", ["service"]
)


class Background(Protocol):
    """Any long-running part of a service besides the consumers (timers, workers)."""

    @property
    def ready(self) -> bool: ...

    async def run(self, stopping: asyncio.Event) -> None: ...


class _QuietServer(uvicorn.Server):
    # The host owns signal handling so shutdown can drain consumers and the outbox first.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServiceHost:
    def __init__(
        self,
        *,
        name: str,
        app: FastAPI,
        host: str,
        port: int,
        pool: asyncpg.Pool,
        broker: BrokerProbe,
        relay: OutboxRelay | None = None,
        consumers: list[TransactionalConsumer] | None = None,
        background: list[Background] | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.app = app
        self.pool = pool
        self.broker = broker
        self.heartbeat = LoopHeartbeat()
        self.relay = relay
        self.consumers = consumers or []
        self.background = background or []
        self._on_stop = on_stop
        self._stopping = asyncio.Event()
        self._server = _QuietServer(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                **server_limits(),
            )
        )
        self._add_operational_routes()
        tracing.instrument_app(app)

    def _add_operational_routes(self) -> None:
        @self.app.get("/health/live", include_in_schema=False)
        async def live() -> Response:
            alive = self.heartbeat.alive()
            return JSONResponse(
                {"status": "alive" if alive else "stalled", "service": self.name, **self.heartbeat.figures()},
                status_code=200 if alive else 503,
            )

        @self.app.get("/health/ready", include_in_schema=False)
        async def ready() -> Response:
            checks = await self.readiness()
            status = 200 if all(checks.values()) else 503
            body: dict[str, Any] = {"service": self.name, "checks": checks}
            if self.relay is not None:
                body["outbox_relay"] = "leader" if self.relay.ready else "standby"
            return JSONResponse(body, status_code=status)

        @self.app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def readiness(self) -> dict[str, bool]:
        """Can this instance do its work? Which instance publishes the outbox is not part
        of it: a standby relay is as ready as the leader (docs/operations.md, Health)."""
        checks: dict[str, bool] = {}
        database, broker = await asyncio.gather(self._database_answers(), self.broker.reachable())
        checks["database"], checks["broker"] = database, broker
        for consumer in self.consumers:
            checks[f"consumer:{consumer.name}"] = consumer.in_group
        for part in self.background:
            checks[type(part).__name__] = part.ready
        checks["accepting"] = not self._stopping.is_set()
        return checks

    async def _database_answers(self) -> bool:
        return await answers_within(self.pool, 1.5)

    async def _watch_relay_leadership(self) -> None:
        leading = False
        RELAY_LEADER.labels(self.name).set(0)
        while self.relay is not None:
            if self.relay.ready != leading:
                leading = self.relay.ready
                RELAY_LEADER.labels(self.name).set(int(leading))
                role = "leader" if leading else "standby"
                log.info(
                    f"outbox relay: this instance is now the {role}",
                    extra={"service": self.name, "outbox_relay": role},
                )
            await asyncio.sleep(0.25)

    def request_stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the batch in hand, flushing the outbox")
            self._stopping.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGUSR1, log_where_tasks_wait)
        relay_stopping = asyncio.Event()
        self.heartbeat.start()
        tasks: dict[str, asyncio.Task[Any]] = {
            "http": asyncio.create_task(self._server.serve()),
            **{f"consumer:{c.name}": asyncio.create_task(c.run()) for c in self.consumers},
            **{
                f"background:{type(b).__name__}": asyncio.create_task(b.run(self._stopping))
                for b in self.background
            },
        }
        if self.relay is not None:
            tasks["relay"] = asyncio.create_task(self.relay.run(relay_stopping))
            tasks["relay-leadership"] = asyncio.create_task(self._watch_relay_leadership())
        log.info("service started", extra={"service": self.name, "port": self._server.config.port})
        stop_wait = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait([stop_wait, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
        failed = [name for name, t in tasks.items() if t in done and t.exception() is not None]
        for name in failed:
            log.error("part of the service failed", extra={"part": name}, exc_info=tasks[name].exception())
        self.request_stop()
        for consumer in self.consumers:
            consumer.stop()
        await self._settle([t for n, t in tasks.items() if n.startswith(("consumer:", "background:"))])
        relay_stopping.set()
        await self._settle([tasks["relay"]] if "relay" in tasks else [])
        if "relay-leadership" in tasks:
            tasks["relay-leadership"].cancel()
            await asyncio.gather(tasks["relay-leadership"], return_exceptions=True)
        self._server.should_exit = True
        await self._settle([tasks["http"]])
        if self._on_stop is not None:
            await self._on_stop()
        await self.broker.close()
        await self.heartbeat.stop()
        await self.pool.close()
        log.info("service stopped", extra={"service": self.name})
        tracing.shutdown()
        if failed:
            raise SystemExit(1)

    @staticmethod
    async def _settle(tasks: list[asyncio.Task[Any]], timeout: float = 30.0) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def start_up(
    service: str,
    settings: CommonSettings,
    *,
    schema: str,
    install: Callable[[asyncpg.Connection], Awaitable[None]],
) -> tuple[TopicRegistry, asyncpg.Pool]:
    """What every service does first: JSON logs, traces when an OTLP endpoint is set, the
    topic registry applied (waiting for the broker), its own schema installed and a pool
    bound to it."""
    configure_logging(service, settings.log_level)
    tracing.configure(service)
    registry = TopicRegistry(settings.topic_prefix, settings.topic_partitions)
    await apply_registry(
        settings.kafka_bootstrap, registry, replication_factor=settings.topic_replication_factor
    )
    pool = await open_pool(settings.database_url, schema, size=settings.db_pool_size, install=install)
    if settings.setup_only:
        await pool.close()
        log.info("topics and schema in place; set-up only, exiting", extra={"schema": schema})
        raise SystemExit(0)
    collect_garbage_less_often()
    return registry, pool


def log_where_tasks_wait() -> None:
    """`kill -USR1 <pid>`: one log line per task with the stack it waits in, for an
    operator asking why an instance makes no progress."""
    for task in asyncio.all_tasks():
        log.warning("task stack", extra={"task": task.get_name(), "stack": awaiting(task)})


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task waits, down the whole chain of coroutines it awaits.

    `Task.print_stack` shows only the outermost frame of a suspended coroutine, which
    says nothing when a library's routine is stuck three awaits deep.
    """
    lines = [repr(task)]
    step: Any = task.get_coro()
    for _ in range(40):
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is None:
            if step is not None:
                lines.append(f"  awaiting {step!r}")
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
    return "\n".join(lines)


def collect_garbage_less_often(allocations: int = 20_000) -> None:
    """Leave everything loaded so far (it lives as long as the process) out of the cyclic
    collector's scans, and collect after `allocations` allocations instead of 700.

    A batch of thousands of messages allocates hundreds of thousands of short-lived
    objects; with the defaults the collector's passes cost as much as the decoding
    itself (the consume block's CPU per message fell from 51 to 31 us with this). A
    service whose batches keep more objects alive at once passes more (status-projector).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(allocations, 20, 20)


def run_service(serve: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service's async entrypoint on uvloop (when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve())
    else:
        uvloop.run(serve())
