"""The media worker's HTTP endpoint: Graph posts its calls' notifications here; operators read its health.

    POST /api/calls   the worker's callbackUri (the answer names it): MediaWorker.handle
    GET  /health      capacity, live calls, what it dropped or failed, the engine's state (JSON); 503 when draining,
                      so a load balancer's probe takes the instance out while its calls finish
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from mediavm.worker import MediaWorker

log = logging.getLogger("mediavm.server")


def application(worker: MediaWorker) -> web.Application:
    async def calls(request: web.Request) -> web.Response:
        too_large = (request.content_length or 0) > worker.settings.app.max_body_bytes
        body = b"" if too_large else await request.read()  # the intake answers 413 from Content-Length
        try:
            answer = await worker.handle(dict(request.headers), body)
        except Exception:  # the last line of defence: log it, answer JSON, never a traceback
            log.exception("the worker's notification endpoint failed unexpectedly")
            return web.json_response({"error": "internal", "reason": "unexpected error; see the logs"}, status=500)
        content = answer.content()
        return web.Response(status=answer.status, body=content or None,
                            content_type="application/json" if answer.body is not None else None,
                            headers=dict(answer.headers))

    async def health(_: web.Request) -> web.Response:
        state = worker.health()
        return web.Response(status=503 if worker.draining else 200, text=json.dumps(state),
                            content_type="application/json")

    app = web.Application(client_max_size=worker.settings.app.max_body_bytes + 1)
    app.router.add_post("/api/calls", calls)
    app.router.add_get("/health", health)
    return app
