"""GET /api/prompts/{path}: the flows' WAV prompts, for Graph to fetch (and cache by resource id).

Serving them from the app itself keeps prompts and flows deployed together; PROMPTS_BASE_URL can point
Graph at a Blob container or CDN instead. Only .wav files under FLOWS_DIR are served.
"""

from __future__ import annotations

from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

from functions import runtime

bp = df.Blueprint()


@bp.route(route="prompts/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def prompts(req: func.HttpRequest) -> func.HttpResponse:
    try:
        folder = Path(runtime.get().settings.flows_dir).resolve()
    except runtime.NotConfigured:
        return func.HttpResponse("not configured", status_code=503)
    wanted = req.route_params.get("path", "")
    path = (folder / wanted).resolve()
    if path.suffix.lower() != ".wav" or not path.is_relative_to(folder) or not path.is_file():
        return func.HttpResponse("no such prompt", status_code=404)
    return func.HttpResponse(path.read_bytes(), mimetype="audio/wav",
                             headers={"Cache-Control": "public, max-age=86400"})
