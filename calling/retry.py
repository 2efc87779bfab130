"""Retry for Graph requests under a deadline, as a kiota middleware.

kiota's own RetryHandler adds a 3 s base delay to every retry and will wait out a 120 s Retry-After;
an answer must reach Graph within 15 s of the incoming call (5 s for policy recording). This handler
retries only 429, 503 and 504, honours Retry-After, backs off exponentially with jitter otherwise, and
gives up as soon as the next wait would pass the request's budget. Other statuses never retry.

It also stamps every request with a `client-request-id` (kept across retries, so Graph and our logs name the
same request), bounds each attempt's timeouts by what is left of the budget (an answer must not sit on a
slow connection past its deadline), and opens one CLIENT span per attempt, carrying Graph's request-id,
so each request is a dependency in Application Insights with its status code.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from kiota_abstractions.request_option import RequestOption
from kiota_http.middleware.middleware import REQUEST_OPTIONS_KEY, BaseMiddleware
from opentelemetry import trace
from opentelemetry.trace import SpanKind

RETRY_STATUSES = frozenset({429, 503, 504})
_tracer = trace.get_tracer("calling.graph")


class RetryBudget(RequestOption):
    """Per-request override: retry only until `deadline` (a `time.monotonic()` value), and only on
    `statuses` (default RETRY_STATUSES). createCall retries only 429: Graph may have carried out a request
    it answered 503 or 504, and a call placed twice rings someone twice."""

    KEY = "CallingRetryBudget"

    def __init__(self, deadline: float | None = None, statuses: frozenset[int] | None = None) -> None:
        self.deadline = deadline
        self.statuses = statuses

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
        deadline = budget.deadline if isinstance(budget, RetryBudget) and budget.deadline is not None \
            else started + self.budget_seconds
        statuses = budget.statuses if isinstance(budget, RetryBudget) and budget.statuses else RETRY_STATUSES
        request.headers.setdefault("client-request-id", str(uuid.uuid4()))
        attempt = 0
        while True:
            attempt += 1
            self._bound_timeouts(request, deadline)
            name = f"graph {request.method} {request.url.path}"
            with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
                span.set_attribute("http.request.method", request.method)
                span.set_attribute("url.full", str(request.url))
                span.set_attribute("http.request.resend_count", attempt - 1)
                if "client-request-id" in request.headers:
                    span.set_attribute("graph.client_request_id", request.headers["client-request-id"])
                response = await super().send(request, transport)
                span.set_attribute("http.response.status_code", response.status_code)
                if "request-id" in response.headers:
                    span.set_attribute("graph.request_id", response.headers["request-id"])
            if response.status_code not in statuses or attempt >= self.max_attempts:
                return response
            delay = self._delay(response, attempt)
            if delay is None or self._clock() + delay > deadline:
                return response
            await response.aclose()
            await self._sleep(delay)
            request.headers["Retry-Attempt"] = str(attempt)

    def _bound_timeouts(self, request: httpx.Request, deadline: float) -> None:
        """No single attempt may outlive the budget: shrink httpx's per-request timeouts to what is left."""
        remaining = max(0.5, deadline - self._clock())
        current = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            name: min(remaining, current.get(name) or remaining) for name in ("connect", "read", "write", "pool")
        }

    def _delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Retry-After (seconds or HTTP date) wins; else exponential backoff, jittered in [ceiling/2, ceiling]."""
        header = response.headers.get("retry-after")
        if header:
            parsed = parse_retry_after(header)
            if parsed is not None:
                return parsed
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)


def parse_retry_after(value: str) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date (None when it is neither)."""
    value = value.strip()
    if value.lstrip("-").replace(".", "", 1).isdigit():
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
