"""A notification POST's intake, shared by every endpoint Graph posts to: size -> authenticate -> parse.

The Functions webhook (calling/webhook.py) and the media worker's own callback (mediavm/) take Graph's
POSTs the same way, with the same statuses and reasons (docs/troubleshooting.md): 413 past the size
limit, 401/403/503 from authentication, 204 for the legacy format, 400 when nothing in the body can be
read; one bad notification among good ones is logged and left out. What each does with the events differs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calling.auth import AuthError, Caller, NotificationAuthenticator
from calling.notifications import Batch, LegacyNotificationError, NotificationError, parse_body

log = logging.getLogger("calling.webhook")


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return json.dumps(self.body).encode() if self.body is not None else b""


@dataclass(frozen=True)
class Intake:
    """An authenticated, parsed POST."""

    caller: Caller
    batch: Batch

    def accepted(self, response: WebhookResponse) -> WebhookResponse:
        """`response`, with the notifications left out listed when it is an accepted batch's 202."""
        if not self.batch.rejected or response.status != 202 or response.body is None:
            return response
        # Still a 2xx: the good notifications were acted on; an error status would disown the whole batch.
        rejected = [{"index": r.index, "reason": r.reason} for r in self.batch.rejected]
        unlisted = self.batch.rejected_total - len(self.batch.rejected)
        total = {"rejected_total": self.batch.rejected_total} if unlisted else {}
        return WebhookResponse(202, {**response.body, "rejected": rejected, **total}, response.headers)


def error(status: int, kind: str, reason: str) -> WebhookResponse:
    return WebhookResponse(status, {"error": kind, "reason": reason})


async def take_in(headers: Mapping[str, str], body: bytes, *, authenticator: NotificationAuthenticator,
                  max_body_bytes: int) -> Intake | WebhookResponse:
    """The POST authenticated and parsed, or the response that refuses it. `headers`: lower-case names."""
    declared = headers.get("content-length", "")
    if (declared.isdigit() and int(declared) > max_body_bytes) or len(body) > max_body_bytes:
        return error(413, "payload_too_large", f"body exceeds {max_body_bytes} bytes")
    try:
        caller = await authenticator.authenticate(headers.get("authorization"))
    except AuthError as exc:
        log.warning("notification refused: %s", exc.reason)
        kind = {401: "unauthorized", 403: "forbidden"}.get(exc.status, "unavailable")
        return error(exc.status, kind, exc.reason)
    try:
        batch = parse_body(body)
    except LegacyNotificationError:
        log.info("legacy-format notification: answering 204 so it is re-sent in Graph format")
        return WebhookResponse(204)
    except NotificationError as exc:
        log.warning("malformed notification: %s", exc)
        return error(400, "bad_request", str(exc))
    for bad in batch.rejected:  # the first few; a 4 MiB body can hold two million bad entries
        log.warning("malformed notification ignored, the rest of the batch goes on: %s", bad.reason)
    unlisted = batch.rejected_total - len(batch.rejected)
    if unlisted:
        log.warning("%d more malformed notification(s) ignored", unlisted)
    return Intake(caller, batch)
