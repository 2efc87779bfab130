"""Telemetry: correlation ids on every log line, call milestones as events, spans, Azure Monitor export.

Microsoft support asks for the call id, scenario id and chain id of a call; every log record from the
`calling` loggers carries them (and the tenant) as attributes, which Application Insights stores as
customDimensions. Milestones (`call.incoming`, `call.answered`, ...) are log records named with
`microsoft.custom_event.name`, which the Azure Monitor exporter sends to the customEvents table.
docs/monitoring.md lists every event, its fields and the Kusto queries built on them.
Nothing is exported unless APPLICATIONINSIGHTS_CONNECTION_STRING is set.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

EVENT_LOGGER = "calling.events"
CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
CORRELATION_FIELDS = ("call_id", "scenario_id", "chain_id", "tenant_id")

_correlation: ContextVar[dict[str, str]] = ContextVar("calling_correlation", default={})  # noqa: B039
_events = logging.getLogger(EVENT_LOGGER)
tracer = trace.get_tracer("calling")
_configured = False
# Attributes every LogRecord has: an event field with one of these names is stored as `event_<name>`.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


@contextlib.contextmanager
def correlation(**ids: str | None) -> Iterator[dict[str, str]]:
    """Within the block, log records and events carry these ids (None values are left out)."""
    merged = {**_correlation.get(), **{k: v for k, v in ids.items() if v}}
    token = _correlation.set(merged)
    try:
        yield merged
    finally:
        _correlation.reset(token)


def current_correlation() -> dict[str, str]:
    return dict(_correlation.get())


def _stamp(record: logging.LogRecord) -> None:
    ids = _correlation.get()
    for name in CORRELATION_FIELDS:
        if not hasattr(record, name):
            setattr(record, name, ids.get(name, ""))
    record.correlation = " ".join(f"{k}={v}" for k, v in ids.items()) or "-"


def emit(name: str, **fields: Any) -> None:
    """A call milestone: a customEvents row in Application Insights, a log line locally."""
    install_correlation()
    present = {(f"event_{k}" if k in _RESERVED else k): v for k, v in fields.items()
               if v is not None and k not in CORRELATION_FIELDS}
    _events.info("%s %s", name, " ".join(f"{k}={v}" for k, v in present.items()),
                 extra={CUSTOM_EVENT_ATTRIBUTE: name, "event_name": name, **present})
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {k: _span_value(v) for k, v in {**_correlation.get(), **present}.items()})


def _span_value(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else str(value)


_factory_installed = False


def install_correlation() -> None:
    """Stamp the current correlation ids on every log record, from any logger (idempotent).

    A record factory rather than a logger filter: filters do not run for child loggers' records.
    """
    global _factory_installed  # noqa: PLW0603 (process-wide, once)
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _stamp(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def configure(connection_string: str | None, *, also: tuple[str, ...] = ()) -> bool:
    """Export traces, logs and events to Application Insights when a connection string is set.

    `also`: more loggers whose records go there too (the media worker's `mediavm`); the exporter itself
    listens on `calling` only. Returns whether exporting is on. Called once at startup; safe to call again.
    """
    global _configured  # noqa: PLW0603 (process-wide, once)
    install_correlation()
    for name in ("calling", *also):
        logging.getLogger(name).setLevel(logging.INFO)
    if not connection_string or _configured:
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    exported = logging.getLogger("calling")
    before = set(exported.handlers)
    configure_azure_monitor(connection_string=connection_string, logger_name="calling",
                            enable_live_metrics=False)
    for handler in [h for h in exported.handlers if h not in before]:  # the exporter's log handler
        for name in also:
            logging.getLogger(name).addHandler(handler)
    _configured = True
    return True
