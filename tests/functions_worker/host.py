"""Plays the Functions host's side of the worker's gRPC stream against Microsoft's worker library.

    python host.py APP_DIR OUT_JSON [INVOCATIONS_JSON]

Runs in a Python that has `azure-functions-runtime` (the library the Azure Functions Python worker loads
for the v2 programming model on Python 3.13+) and `protobuf`. It arranges `sys.path` the way the worker's
dependency manager does (the app's `.python_packages/lib/site-packages`, then the worker's own packages,
then the app directory), then sends, as serialized `StreamingMessage`s through the library's own handlers,
a WorkerInitRequest, a FunctionsMetadataRequest, one FunctionLoadRequest per indexed function, and any
InvocationRequests described in INVOCATIONS_JSON
(`[{"function": name, "http": {"url", "method", "headers", "params", "body"}, "inputs": {binding: TypedData}}]`).
Writes one JSON document to OUT_JSON: every response message, decoded from its wire bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass
class WorkerRequest:
    """What the worker's dispatcher hands the library: the name, the decoded message and the properties."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


def _arrange_path(app: Path) -> None:
    """Customer packages first, then the worker's, then the app directory (the dependency manager's order)."""
    worker_paths = [p for p in sys.path if p and "site-packages" in p]
    rest = [p for p in sys.path if p not in worker_paths and p != str(HERE)]
    sys.path[:] = [str(app / ".python_packages" / "lib" / "site-packages"), *worker_paths, str(app), *rest]


def _wire(protos: Any, message: Any) -> Any:
    """Through the wire and back: what the worker sees is what a peer could have sent."""
    return protos.StreamingMessage.FromString(message.SerializeToString())


def _dump(message: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def _run(app: Path, invocations: list[dict[str, Any]]) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import rpc

    protos = rpc.build()
    _arrange_path(app)
    os.chdir(app)  # the host starts the worker in the script root (AzureWebJobsScriptRoot)
    import azure_functions_runtime as library

    out: dict[str, Any] = {"library": library.version.VERSION}
    library.start_threadpool_executor()
    try:
        init = _wire(protos, protos.StreamingMessage(request_id="init", worker_init_request=protos.WorkerInitRequest(
            host_version="4.1040.0", function_app_directory=str(app), worker_directory=str(HERE),
            capabilities={"FunctionDataCache": "false"})))
        response = await library.worker_init_request(
            WorkerRequest("WorkerInitRequest", init, {"protos": protos, "host": "127.0.0.1"}))
        out["init"] = _dump(_wire(protos, protos.StreamingMessage(request_id="init", worker_init_response=response)))

        metadata = _wire(protos, protos.StreamingMessage(
            request_id="metadata", functions_metadata_request=protos.FunctionsMetadataRequest(
                function_app_directory=str(app))))
        response = await library.functions_metadata_request(WorkerRequest("WorkerMetadataRequest", metadata))
        out["metadata"] = _dump(_wire(protos, protos.StreamingMessage(request_id="metadata",
                                                                      function_metadata_response=response)))

        ids: dict[str, str] = {}
        out["load"] = []
        for function in response.function_metadata_results:
            ids[function.name] = function.function_id
            load = _wire(protos, protos.StreamingMessage(request_id="load", function_load_request=(
                protos.FunctionLoadRequest(function_id=function.function_id, metadata=function))))
            loaded = await library.function_load_request(WorkerRequest("FunctionLoadRequest", load))
            out["load"].append(_dump(_wire(protos, protos.StreamingMessage(request_id="load",
                                                                           function_load_response=loaded))))

        out["invocations"] = []
        for number, spec in enumerate(invocations):
            request = _wire(protos, protos.StreamingMessage(
                request_id="invoke", invocation_request=_invocation(protos, ids, number, spec)))
            answered = await library.invocation_request(WorkerRequest("FunctionInvocationRequest", request))
            out["invocations"].append(_dump(_wire(protos, protos.StreamingMessage(request_id="invoke",
                                                                                  invocation_response=answered))))
    finally:
        library.stop_threadpool_executor()
    return out


def _invocation(protos: Any, ids: dict[str, str], number: int, spec: dict[str, Any]) -> Any:
    """An InvocationRequest as the host builds one: the trigger's data, then the other input bindings."""
    inputs = []
    http = spec.get("http")
    if http is not None:
        body = http.get("body", "").encode()
        inputs.append(protos.ParameterBinding(name=http.get("name", "req"), data=protos.TypedData(http=protos.RpcHttp(
            method=http.get("method", "POST"), url=http["url"], headers=http.get("headers", {}),
            params=http.get("params", {}), query=http.get("query", {}),
            body=protos.TypedData(bytes=body), rawBody=protos.TypedData(bytes=body)))))
    for name, value in (spec.get("inputs") or {}).items():  # {"string": ...} or {"json": ...}
        inputs.append(protos.ParameterBinding(name=name, data=protos.TypedData(**value)))
    return protos.InvocationRequest(invocation_id=f"invocation-{number}", function_id=ids[spec["function"]],
                                    input_data=inputs)


def main(argv: list[str]) -> int:
    app = Path(argv[0]).resolve()
    invocations = json.loads(Path(argv[2]).read_text()) if len(argv) > 2 else []
    Path(argv[1]).write_text(json.dumps(asyncio.run(_run(app, invocations)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
