"""Retries against a loopback Graph stub: 429/503/504 honour Retry-After within a budget; nothing else retries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from calling.credentials import LocalTokenCredential
from calling.errors import GraphError
from calling.graph import CallControl
from calling.graphclient import build_graph_client
from calling.retry import parse_retry_after
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, Recorded, graph_error


class Sleeps:
    """Records the waits the retry handler asks for, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def control_with(server: LoopbackServer, sleep: Any = None, budget: float = 10.0) -> CallControl:
    kwargs = {"sleep": sleep} if sleep else {}
    client = build_graph_client(server.graph_url, LocalTokenCredential(), retry_budget_seconds=budget, **kwargs)
    return CallControl(client, callback_uri="https://bot.example.com/api/calls", tenant_id=TENANT_ID, app_id=APP_ID)


def fail_times(n: int, status: int, retry_after: str | None = None) -> Any:
    count = {"n": 0}

    def responder(_: Recorded) -> web.Response | None:
        count["n"] += 1
        if count["n"] <= n:
            return graph_error(status, "TooManyRequests" if status == 429 else "ServiceUnavailable", "slow down",
                               retry_after=retry_after)
        return None  # fall through to the stub's normal answer

    return responder


async def test_429_with_retry_after_then_success_over_real_time(server: LoopbackServer) -> None:
    server.script("POST", "/answer", fail_times(1, 429, retry_after="1"))
    started = time.monotonic()
    await control_with(server).answer("c1")
    elapsed = time.monotonic() - started
    answers = [r for r in server.graph_requests() if r.path.endswith("/answer")]
    assert len(answers) == 2
    assert answers[1].at - answers[0].at >= 0.95, "the retry waited for Retry-After"
    assert elapsed < 5
    assert answers[0].body == answers[1].body, "the same body is resent"


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_retryable_statuses(server: LoopbackServer, status: int) -> None:
    sleeps = Sleeps()
    server.script("POST", "/playPrompt", fail_times(2, status, retry_after="2"))
    from calling.graph import Prompt

    op = await control_with(server, sleeps).play_prompt("c1", [Prompt("https://p.example.com/a.wav")])
    assert op.status == "running"
    assert sleeps.waits == [2.0, 2.0]
    assert len(server.graph_requests()) == 3


async def test_backoff_without_retry_after_grows(server: LoopbackServer) -> None:
    sleeps = Sleeps()
    server.script("POST", "/keepAlive", fail_times(3, 503))
    await control_with(server, sleeps).keep_alive("c1")
    assert len(sleeps.waits) == 3
    assert all(0 < w <= 5 for w in sleeps.waits)
    assert sleeps.waits[2] > sleeps.waits[0]


@pytest.mark.parametrize(("status", "code"), [(400, "BadRequest"), (403, "Forbidden"), (404, "itemNotFound"),
                                              (409, "Conflict"), (500, "InternalServerError")])
async def test_other_statuses_do_not_retry_and_raise_typed_errors(server: LoopbackServer, status: int,
                                                                  code: str) -> None:
    server.script("POST", "/answer", lambda r: graph_error(status, code, "nope", request_id="req-42"))
    with pytest.raises(GraphError) as info:
        await control_with(server, Sleeps()).answer("c1")
    error = info.value
    assert (error.action, error.status, error.code, error.message) == ("answer", status, code, "nope")
    assert error.request_id == "req-42"
    assert error.client_request_id == "client-1"
    assert len(server.graph_requests()) == 1


async def test_budget_stops_retrying_and_surfaces_the_429(server: LoopbackServer) -> None:
    server.script("POST", "/answer", fail_times(10, 429, retry_after="30"))
    sleeps = Sleeps()
    with pytest.raises(GraphError) as info:
        await control_with(server, sleeps, budget=10).answer("c1")
    assert info.value.status == 429
    assert info.value.retry_after == 30
    assert sleeps.waits == [], "a 30 s wait does not fit a 10 s budget"
    assert len(server.graph_requests()) == 1


async def test_deadline_overrides_the_default_budget(server: LoopbackServer) -> None:
    server.script("POST", "/answer", fail_times(1, 429, retry_after="3"))
    sleeps = Sleeps()
    with pytest.raises(GraphError):
        await control_with(server, sleeps, budget=60).answer("c1", deadline=time.monotonic() + 2)
    assert sleeps.waits == []


async def test_attempts_are_bounded(server: LoopbackServer) -> None:
    server.script("POST", "/subscribeToTone", fail_times(100, 503, retry_after="0"))
    with pytest.raises(GraphError) as info:
        await control_with(server, Sleeps()).subscribe_to_tone("c1")
    assert info.value.status == 503
    assert len(server.graph_requests()) == 6


async def test_unreachable_graph_is_a_typed_error() -> None:
    client = build_graph_client("http://127.0.0.1:9/v1.0", LocalTokenCredential())
    control = CallControl(client, callback_uri="https://b/api/calls", tenant_id=TENANT_ID, app_id=APP_ID)
    with pytest.raises(GraphError) as info:
        await control.keep_alive("c1")
    assert info.value.status is None
    assert info.value.code == "transportError"


def test_retry_after_formats() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 17 <= (parse_retry_after(later) or 0) <= 20


async def test_client_request_id_is_sent_and_kept_across_retries(server: LoopbackServer) -> None:
    server.script("POST", "/answer", fail_times(1, 503, retry_after="0"))
    await control_with(server, Sleeps()).answer("c1")
    first, second = server.graph_requests()
    assert first.headers["client-request-id"] == second.headers["client-request-id"]
    assert len(first.headers["client-request-id"]) == 36
    await control_with(server, Sleeps()).answer("c2")
    assert server.graph_requests()[2].headers["client-request-id"] != first.headers["client-request-id"]


async def test_a_slow_graph_cannot_hold_an_attempt_past_the_deadline(server: LoopbackServer) -> None:
    server.delays["/answer"] = 5.0
    started = time.monotonic()
    with pytest.raises(GraphError) as info:
        await control_with(server, Sleeps(), budget=60).answer("c1", deadline=time.monotonic() + 1.0)
    assert time.monotonic() - started < 3, "the attempt's timeouts were cut to the remaining budget"
    assert info.value.code == "transportError"


async def test_a_credential_failure_is_a_typed_error(server: LoopbackServer) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    class Broken(LocalTokenCredential):
        async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise ClientAuthenticationError("AADSTS700213: No matching federated identity record found")

        async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
            return await self.get_token(*scopes)

    client = build_graph_client(server.graph_url, Broken())
    control = CallControl(client, callback_uri="https://b/api/calls", tenant_id=TENANT_ID, app_id=APP_ID)
    with pytest.raises(GraphError) as info:
        await control.answer("c1")
    assert (info.value.status, info.value.code) == (None, "authenticationFailed")
    assert "AADSTS700213" in str(info.value)
    assert server.graph_requests() == []
