"""`python -m mediavm`, the worker as a service: its settings refused with every problem named (no traceback),
and a run that serves /health over HTTPS, answers a hand-off, writes the recording and drains on stop.
The Service Bus inbox is replaced by the in-process one (no Service Bus runs here)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from calling.config import ConfigError
from calling.handoff import HandoffMessage, InProcessTransport
from mediavm import __main__ as service
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, incoming_call

ROOT = Path(__file__).resolve().parent.parent
RECORDING = {"inviteReasons": ["PolicyBasedRecording"], "policyIdentifier": "Test Policy"}


def env(server: LoopbackServer, tmp_path: Path, port: int = 0, **more: str) -> dict[str, str]:
    return {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
            "GRAPH_BASE_URL": server.graph_url, "CALLING_OPENID_CONFIG_URL": server.openid_url,
            "MEDIA_WORKER_PUBLIC_URL": f"https://127.0.0.1:{port}", "MEDIA_WORKER_LISTEN": f"127.0.0.1:{port}",
            "MEDIA_HANDOFF_TRANSPORT": "servicebus", "SERVICEBUS_NAMESPACE": "sb-test.servicebus.windows.net",
            "RECORDINGS_DIR": str(tmp_path / "recordings"), **more}


def test_unusable_settings_exit_2_naming_every_problem() -> None:
    run = subprocess.run([sys.executable, "-m", "mediavm"], check=False, cwd=ROOT, capture_output=True, text=True,
                         timeout=60,
                         env={"PATH": "/usr/bin:/bin", "MEDIA_ENGINE": "dolby", "MEDIA_WORKER_CAPACITY": "many"})
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    for name in ("BOT_APP_ID", "MEDIA_WORKER_PUBLIC_URL", "MEDIA_ENGINE must be one of loopback, windows",
                 "MEDIA_WORKER_CAPACITY must be a whole number"):
        assert name in run.stderr


def test_the_service_needs_the_queue_and_somewhere_for_recordings(server: LoopbackServer, tmp_path: Path) -> None:
    settings = env(server, tmp_path, MEDIA_HANDOFF_TRANSPORT="none", MEDIA_ENGINE="windows")
    del settings["RECORDINGS_DIR"]
    with pytest.raises(ConfigError) as caught:
        service.check(settings)
    problems = "\n".join(caught.value.problems)
    assert "MEDIA_HANDOFF_TRANSPORT must be servicebus" in problems
    assert "RECORDINGS_CONTAINER_URL (or RECORDINGS_DIR) is not set" in problems
    # the Windows engine's own settings are checked by the service, each named
    for name in ("MEDIA_CERTIFICATE_THUMBPRINT", "MEDIA_INSTANCE_PUBLIC_PORT", "MEDIA_INSTANCE_PUBLIC_IP",
                 "MEDIA_SERVICE_FQDN", "MEDIA_LIBRARY_DIR"):
        assert f"MEDIA_ENGINE=windows needs {name}" in problems, name


def test_a_scheduled_events_setting_that_makes_no_sense_stops_the_service(server: LoopbackServer,
                                                                          tmp_path: Path) -> None:
    settings = env(server, tmp_path, MEDIA_SCHEDULED_EVENTS="sometimes")
    with pytest.raises(ConfigError) as caught:
        service.check(settings)
    assert any("MEDIA_SCHEDULED_EVENTS" in problem for problem in caught.value.problems)


def test_tls_files_go_together_and_must_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="go together"):
        service.tls_context({"MEDIA_WORKER_TLS_CERT_FILE": "cert.pem"})
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="could not be loaded"):
        service.tls_context({"MEDIA_WORKER_TLS_CERT_FILE": str(tmp_path / "bad.pem"),
                             "MEDIA_WORKER_TLS_KEY_FILE": str(tmp_path / "bad.pem")})
    assert service.tls_context({}) is None


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_run_serves_https_answers_a_hand_off_and_drains_on_stop(server: LoopbackServer,
                                                                        tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    values = env(server, tmp_path, port, MEDIA_WORKER_TLS_CERT_FILE=str(cert), MEDIA_WORKER_TLS_KEY_FILE=str(key),
                 MEDIA_WORKER_DRAIN_SECONDS="0")
    settings = service.check(values)
    inbox, stop = InProcessTransport(), asyncio.Event()
    run = asyncio.create_task(service.serve(settings, service.tls_context(values), stop=stop, inbox=inbox))
    client_tls = ssl.create_default_context(cafile=str(cert))
    client_tls.check_hostname = False
    health: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"https://127.0.0.1:{port}/health", ssl=client_tls) as response:
                    health = await response.json()
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        assert health["status"] == "ok" and health["capacity"] == 20
        now = datetime.now(UTC)
        await inbox.send(HandoffMessage(call_id="call-svc", tenant_id=TENANT_ID,
                                        notification=incoming_call("call-svc", bot_data=RECORDING),
                                        decision={"action": "handoff", "reason": "policy_recording"},
                                        deadline=now + timedelta(seconds=5), received_at=now))
        for _ in range(100):
            if any(r.path.endswith("/call-svc/answer") for r in server.graph_requests()):
                break
            await asyncio.sleep(0.05)
        [answer] = [r for r in server.graph_requests() if r.path.endswith("/call-svc/answer")]
        assert answer.json["callbackUri"] == f"https://127.0.0.1:{port}/api/calls"
        assert answer.json["participantCapacity"] == 10
        stop.set()
        await asyncio.wait_for(run, 10)
    # drained: the call the worker still held was hung up, and nothing listens any more
    assert any(r.method == "DELETE" and r.path.endswith("/calls/call-svc") for r in server.graph_requests())
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


async def test_the_startup_sweep_marks_an_earlier_runs_unfinished_recordings_partial(server: LoopbackServer,
                                                                                     tmp_path: Path) -> None:
    """An earlier run that crashed left a file `recording`, untouched since; the next start says `partial`."""
    folder = tmp_path / "recordings" / "compliance" / TENANT_ID / "2026-12-01" / "call-old"
    folder.mkdir(parents=True)
    (folder / "source-7.wav").write_bytes(b"RIFF")
    facts = folder / "source-7.json"
    facts.write_text(json.dumps({"status": "recording", "call_id": "call-old"}))
    hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(facts, (hour_ago, hour_ago))
    live = folder.parent / "call-live" / "source-8.json"  # another worker's recording, written just now
    live.parent.mkdir()
    live.write_text(json.dumps({"status": "recording", "call_id": "call-live"}))
    stop = asyncio.Event()
    stop.set()
    settings = service.check(env(server, tmp_path, _free_port()))
    await asyncio.wait_for(service.serve(settings, None, stop=stop, inbox=InProcessTransport()), 10)
    swept = json.loads(facts.read_text())
    assert swept["status"] == "partial" and swept["call_id"] == "call-old"
    assert "the worker stopped writing" in swept["reason"]
    assert json.loads(live.read_text())["status"] == "recording"
