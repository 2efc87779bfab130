"""Telemetry: spans per Graph attempt (CLIENT, with Graph's request-id), events with correlation ids."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from calling import telemetry
from calling.graph import CallControl
from tests.stubs import LoopbackServer, graph_error

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the global provider can be set once per process
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def test_each_graph_attempt_is_a_client_span_with_graphs_ids(server: LoopbackServer, control: CallControl,
                                                                   spans: InMemorySpanExporter) -> None:
    calls = {"n": 0}

    def throttle_once(_: object) -> object:
        calls["n"] += 1
        return graph_error(503, "ServiceUnavailable", "busy", retry_after="0", request_id="r-first") \
            if calls["n"] == 1 else None

    server.script("POST", "/keepAlive", throttle_once)  # type: ignore[arg-type]
    await control.keep_alive("c1")
    graph = [s for s in spans.get_finished_spans() if s.name.startswith("graph ")]
    assert [s.kind for s in graph] == [SpanKind.CLIENT, SpanKind.CLIENT]
    first, second = (dict(s.attributes or {}) for s in graph)
    assert first["http.response.status_code"] == 503
    assert first["graph.request_id"] == "r-first"
    assert (first["http.request.resend_count"], second["http.request.resend_count"]) == (0, 1)
    assert second["http.response.status_code"] == 200
    assert first["graph.client_request_id"] == second["graph.client_request_id"]
    assert first["url.full"].endswith("/v1.0/communications/calls/c1/keepAlive")


def test_events_carry_correlation_and_reserved_names_are_renamed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with telemetry.correlation(call_id="c-9", scenario_id="s-9", chain_id=None):
        telemetry.emit("call.terminated", code=200, subcode=5001, message="ended", args="x", skipped=None)
        logging.getLogger("calling.anything").info("plain line")
    [event, line] = [r for r in caplog.records if r.name in ("calling.events", "calling.anything")]
    assert (event.call_id, event.scenario_id, event.chain_id) == ("c-9", "s-9", "")
    assert getattr(event, "microsoft.custom_event.name") == "call.terminated"
    assert (event.code, event.subcode, event.event_message, event.event_args) == (200, 5001, "ended", "x")
    assert not hasattr(event, "skipped")
    assert event.getMessage() == "call.terminated code=200 subcode=5001 event_message=ended event_args=x"
    assert (line.call_id, line.correlation) == ("c-9", "call_id=c-9 scenario_id=s-9")


def test_nothing_is_exported_without_a_connection_string() -> None:
    assert telemetry.configure(None) is False
    assert telemetry.configure("") is False


def test_the_media_workers_logs_go_where_the_exporter_sends_calling_s(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    exporter = logging.Handler()

    def configure_azure_monitor(*, connection_string: str, logger_name: str, **_: object) -> None:
        assert connection_string.startswith("InstrumentationKey=")
        logging.getLogger(logger_name).addHandler(exporter)  # what the distro does: a handler on that logger

    module = types.ModuleType("azure.monitor.opentelemetry")
    module.configure_azure_monitor = configure_azure_monitor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", module)
    monkeypatch.setattr(telemetry, "_configured", False)
    try:
        assert telemetry.configure("InstrumentationKey=00000000-0000-0000-0000-000000000000", also=("mediavm",))
        assert exporter in logging.getLogger("mediavm").handlers
        assert logging.getLogger("mediavm").level == logging.INFO
    finally:
        for name in ("calling", "mediavm"):
            logging.getLogger(name).removeHandler(exporter)
        monkeypatch.setattr(telemetry, "_configured", False)
