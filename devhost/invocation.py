"""Calling a user function the way the Python worker does.

The worker passes bindings as keyword arguments named after the bindings, adds `context` when the function
declares it, awaits coroutine functions on its event loop and runs plain functions on a thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func
from azure.functions import _abc


class _TraceContext(_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _NoException(_abc.RpcException):
    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class _RetryContext(_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> _abc.RpcException:
        return _NoException()


class Context(func.Context):
    """The invocation context a function gets when it declares a `context` parameter."""

    def __init__(self, function_name: str, invocation_id: str | None = None) -> None:
        self._function_name = function_name
        self._invocation_id = invocation_id or str(uuid.uuid4())
        self._local = threading.local

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> _abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> _abc.RetryContext:
        return _RetryContext()


def wants_context(function: Callable[..., Any]) -> bool:
    try:
        return "context" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


async def call(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Await a coroutine function; run anything else on a worker thread, awaiting what it returns if awaitable."""
    if inspect.iscoroutinefunction(function):
        return await function(**kwargs)
    result = await asyncio.to_thread(functools.partial(function, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result
