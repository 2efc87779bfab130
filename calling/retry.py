"""Retry for Graph requests under a deadline, as a kiota middleware.

kiota's own RetryHandler adds a 3 s base delay to every retry and will wait out a 120 s Retry-After;
an answer must reach Graph within 15 s of the incoming call (5 s for policy recording). This handler
retries only 429, 503 and 504, honours Retry-After, backs off exponentially with jitter otherwise, and
gives up as soon as the next wait would pass the request's budget. Other statuses never retry.

It also opens one span per HTTP attempt, carrying Graph's request-id, so each request is in the portal.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from kiota_abstractions.request_option import RequestOption
from kiota_http.middleware.middleware import REQUEST_OPTIONS_KEY, BaseMiddleware
from opentelemetry import trace

RETRY_STATUSES = frozenset({429, 503, 504})
_tracer = trace.get_tracer("calling.graph")


class RetryBudget(RequestOption):
    """Per-request override: retry only until `deadline` (a `time.monotonic()` value)."""

    KEY = "CallingRetryBudget"

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    @staticmethod
    def get_key() -> str:
        return RetryBudget.KEY


class BudgetedRetryHandler(BaseMiddleware):
    def __init__(
        self,
        *,
        budget_seconds: float = 10.0,
        max_attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__()
        self.budget_seconds = budget_seconds
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._sleep = sleep

    async def send(self, request: httpx.Request, transport: httpx.AsyncBaseTransport) -> httpx.Response:
        options = request.extensions.get(REQUEST_OPTIONS_KEY) or {}
        budget = options.get(RetryBudget.KEY)
        started = self._clock()
        deadline = budget.deadline if isinstance(budget, RetryBudget) else started + self.budget_seconds
        attempt = 0
        while True:
            attempt += 1
            with _tracer.start_as_current_span(f"graph {request.method} {request.url.path}") as span:
                span.set_attribute("http.request.method", request.method)
                span.set_attribute("url.full", str(request.url))
                span.set_attribute("http.request.resend_count", attempt - 1)
                if "client-request-id" in request.headers:
                    span.set_attribute("graph.client_request_id", request.headers["client-request-id"])
                response = await super().send(request, transport)
                span.set_attribute("http.response.status_code", response.status_code)
                if "request-id" in response.headers:
                    span.set_attribute("graph.request_id", response.headers["request-id"])
            if response.status_code not in RETRY_STATUSES or attempt >= self.max_attempts:
                return response
            delay = self._delay(response, attempt)
            if delay is None or self._clock() + delay > deadline:
                return response
            await response.aclose()
            await self._sleep(delay)
            request.headers["Retry-Attempt"] = str(attempt)

    def _delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Retry-After (seconds or HTTP date) wins; else exponential backoff with full jitter."""
        header = response.headers.get("retry-after")
        if header:
            parsed = parse_retry_after(header)
            if parsed is not None:
                return parsed
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)


def parse_retry_after(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
