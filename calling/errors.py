"""Errors from Graph, carrying what Microsoft support asks for: code, message, request-id, client-request-id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GraphError(Exception):
    """A Graph request failed. `status` is the HTTP status (None when no response came back at all)."""

    def __init__(
        self,
        action: str,
        status: int | None,
        code: str | None,
        message: str | None,
        *,
        request_id: str | None = None,
        client_request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.action = action
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.retry_after = retry_after
        ids = ", ".join(f"{k} {v}" for k, v in (("request-id", request_id),
                                                ("client-request-id", client_request_id)) if v)
        super().__init__(
            f"Graph {action} failed: {status if status is not None else 'no response'} "
            f"{code or ''}: {message or ''}" + (f" ({ids})" if ids else "")
        )

    @property
    def is_not_found(self) -> bool:
        """404: the call (or operation, participant) no longer exists on Graph."""
        return self.status == 404

    @property
    def is_throttled(self) -> bool:
        return self.status == 429

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for activity results, logs and telemetry."""
        return {"action": self.action, "status": self.status, "code": self.code, "message": self.message,
                "request_id": self.request_id, "client_request_id": self.client_request_id}

    @classmethod
    def from_sdk(cls, action: str, exc: Exception) -> GraphError:
        """From kiota's APIError / msgraph's ODataError, whichever the response allowed."""
        status = getattr(exc, "response_status_code", None)
        headers: Mapping[str, str] = {k.lower(): v for k, v in (getattr(exc, "response_headers", None) or {}).items()}
        odata = getattr(exc, "error", None)
        code = getattr(odata, "code", None)
        message = getattr(odata, "message", None) or getattr(exc, "message", None) or str(exc) or None
        inner = getattr(odata, "inner_error", None)
        request_id = getattr(inner, "request_id", None) or headers.get("request-id")
        client_request_id = getattr(inner, "client_request_id", None) or headers.get("client-request-id")
        retry_after = _seconds(headers.get("retry-after"))
        return cls(action, status, code, message, request_id=request_id,
                   client_request_id=client_request_id, retry_after=retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
