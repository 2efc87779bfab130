"""Cold start: the host imports function_app before it routes anything, so that import stays light.

msgraph-sdk, kiota, azure-identity, PyJWT, cryptography and PyYAML are what made the import slow; they load
on the first invocation that needs them (the core) or the first Graph request (msgraph-sdk). The timing
itself is a benchmark (bench/imports.py), not a test; this pins which modules a fresh import pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("msgraph", "msgraph_core", "kiota_abstractions", "kiota_http", "kiota_authentication_azure",
         "azure.identity", "azure.storage.blob", "azure.monitor", "azure.servicebus", "jwt", "cryptography", "yaml",
         "httpx")
CORE = ("calling.webhook", "calling.graph", "calling.graphclient", "calling.flows", "calling.session",
        "calling.auth", "orchestrations.session_loop")

PROBE = """
import asyncio, json, os, sys
import function_app
after_import = sorted(sys.modules)
os.environ.update(BOT_APP_ID="11111111-1111-1111-1111-111111111111",
                  BOT_TENANT_ID="22222222-2222-2222-2222-222222222222",
                  BOT_PUBLIC_URL="https://bot.example.com",
                  BOT_MANAGED_IDENTITY_CLIENT_ID="33333333-3333-3333-3333-333333333333")
from functions import runtime
result = asyncio.run(runtime.get().webhook.handle({"content-type": "application/json"}, b'{"value": []}'))
print(json.dumps({"after_import": after_import, "after_webhook": sorted(sys.modules), "status": result.status}))
"""


def _probe() -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def _loaded(modules: object, names: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_import_function_app_loads_neither_msgraph_nor_the_core() -> None:
    result = _probe()
    assert _loaded(result["after_import"], HEAVY) == []
    assert _loaded(result["after_import"], CORE) == []
    # ...and the webhook works: the core loads on that first request, msgraph-sdk still waits for a Graph one.
    assert result["status"] == 401
    assert "calling.webhook" in _loaded(result["after_webhook"], CORE)
    assert _loaded(result["after_webhook"], ("msgraph", "kiota_abstractions", "calling.graph")) == []
    # ...nor azure-servicebus, which only MEDIA_HANDOFF_TRANSPORT=servicebus loads (with the runtime).
    assert _loaded(result["after_webhook"], ("azure.servicebus", "calling.servicebus")) == []
