"""Azurite (npm, installed by `python3 dev.py test`), the local Blob Storage, started for a test module."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "node_modules" / ".bin" / ("azurite-blob.cmd" if os.name == "nt" else "azurite-blob")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def azurite() -> Iterator[str]:
    """Yields the account URL (http://127.0.0.1:<port>/devstoreaccount1); in memory, gone afterwards."""
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: run `python3 dev.py test`, which installs the Node tools (npm ci)")
    port = _free_port()
    process = subprocess.Popen([str(BINARY), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                "--inMemoryPersistence", "--silent", "--skipApiVersionCheck", "--disableTelemetry"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    err = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"Azurite did not start: {err[-500:]}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/devstoreaccount1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
