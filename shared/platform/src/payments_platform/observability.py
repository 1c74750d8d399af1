"""JSON-lines logs carrying the correlation id and, while a span is current, its trace and
span ids (payments_platform.tracing), so a log line leads to its trace and back."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from payments_contracts import Envelope
from payments_platform import tracing


def configure_logging(service: str, level: str = "INFO") -> None:
    """Every log line (ours and libraries') is one JSON object on stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _add_trace_ids,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _add_service(service: str) -> structlog.types.Processor:
    def add(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        event.setdefault("service", service)
        event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
        return event

    return add


def _add_trace_ids(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    ids = tracing.current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


@contextmanager
def about(message: Envelope) -> Iterator[None]:
    """Log lines inside carry the message's correlation id, event id and account, and the
    trace and span ids of the span applying it."""
    with (
        structlog.contextvars.bound_contextvars(
            correlation_id=str(message.correlation_id),
            event_id=str(message.event_id),
            account_id=message.account_id,
        ),
        tracing.applying(message.event_id),
    ):
        yield
