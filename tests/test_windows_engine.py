"""The Windows media engine (mediavm/windows/) against a stand-in of Microsoft's media library, on Mono.

The library runs only on Windows, so tests/dotnet_standin/ holds a stand-in with the same namespaces, types, members
and event signatures the engine uses, compiled here with Debian's Mono C# compiler (mcs) and loaded through pythonnet
on Mono: the engine's own interop code runs (assembly loading, the platform's initialisation, a socket per call and its
blob, events raised on a System.Threading.Thread, unmanaged buffers copied out and disposed, sends, shutdown).

Each scenario runs in a child process (`python -m tests.test_windows_engine <scenario> <stand-in dir>`): pythonnet
loads one runtime per process and never unloads it, MediaPlatform is static, and Mono stays out of pytest's process.
The child prints one `RESULT {json}` line; the tests assert on it. Measurements (handler time on the .NET thread,
frames per second) are in the results: `python -m tests.test_windows_engine meeting <dir>` prints them.

`python3 dev.py test` installs Mono (as root, with apt-get); elsewhere these tests skip, naming what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import dataclasses
import importlib
import importlib.util
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from calling.config import ConfigError
from mediavm.config import WindowsMediaSettings
from mediavm.engine import FRAME_BYTES, AudioFrame

ROOT = Path(__file__).resolve().parent.parent
SOURCES = Path(__file__).resolve().parent / "dotnet_standin"
MONO_PACKAGES = "mono-mcs mono-runtime mono-devel libmonosgen-2.0-1"
#: (assembly, sources, references): compiled in this order.
BUILD = (
    ("Newtonsoft.Json.dll", ("Newtonsoft.Json.cs",), ()),
    ("Microsoft.Skype.Bots.Media.dll", ("Microsoft.Skype.Bots.Media.cs",), ("System.dll", "Newtonsoft.Json.dll")),
    ("Microsoft.Graph.Communications.Calls.Media.dll", ("Microsoft.Graph.Communications.Calls.Media.cs",),
     ("Microsoft.Skype.Bots.Media.dll",)),
)
# What the stand-in puts in its buffers (tests/dotnet_standin/Microsoft.Skype.Bots.Media.cs, StandIn.Pattern/Feeder).
TIMESTAMP_BASE = 638000000000000000
TICKS_PER_FRAME = 200_000
THUMBPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"
APP_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "66666666-7777-8888-9999-000000000000"


def pattern(tick: int, speaker: int) -> bytes:
    return bytes(((tick * 31) + (speaker * 17) + i) & 0xFF for i in range(FRAME_BYTES))


def speaks(tick: int, k: int) -> bool:
    return tick % (k + 3) != 0


def silent(tick: int) -> bool:
    return tick % 10 == 9


def expected_unmixed(tick: int, speakers: list[int]) -> list[int]:
    return [msi for k, msi in enumerate(speakers) if speaks(tick, k)][:4]


# --- the parent: pytest ----------------------------------------------------------------------------------------


def _missing() -> list[str]:
    missing = []
    if not sys.platform.startswith("linux"):
        return ["Linux (the stand-in runs on Debian's Mono)"]
    if shutil.which("mcs") is None:
        missing.append("mcs (mono-mcs)")
    if ctypes.util.find_library("monosgen-2.0") is None:
        missing.append("libmonosgen-2.0 (libmonosgen-2.0-1)")
    if not Path("/usr/lib/mono/4.5/Facades/netstandard.dll").exists():
        missing.append("netstandard.dll (mono-devel)")
    if importlib.util.find_spec("pythonnet") is None:
        missing.append("pythonnet (pip install -e .[windows])")
    return missing


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in assemblies, compiled from tests/dotnet_standin/ with mcs."""
    missing = _missing()
    if missing:
        pytest.skip(f"the Windows engine's stand-in needs {', '.join(missing)}: python3 dev.py test installs them as "
                    f"root (apt-get install {MONO_PACKAGES}; pip install -e .[windows])")
    return build(tmp_path_factory.mktemp("dotnet-standin"))


def build(out: Path) -> Path:
    """Compile tests/dotnet_standin/*.cs into `out` with mcs (warnings are errors)."""
    mcs = shutil.which("mcs")
    assert mcs is not None
    for assembly, sources, references in BUILD:
        refs = [f"-r:{out / r}" if (out / r).exists() else f"-r:{r}" for r in references]
        done = subprocess.run([mcs, "-target:library", "-nologo", "-warnaserror+", f"-out:{out / assembly}", *refs,
                               *(str(SOURCES / s) for s in sources)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"mcs {assembly}:\n{done.stdout}\n{done.stderr}"
    return out


def scenario(standin: Path, name: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tests.test_windows_engine", name, str(standin)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    line = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        pytest.fail(f"scenario {name} failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def test_meeting_audio_arrives_per_speaker_with_every_buffer_copied_and_disposed(standin: Path) -> None:
    r = scenario(standin, "meeting")
    # The platform got the settings, the socket the call's: from the engine, through pythonnet.
    assert r["platform"] == {"ApplicationId": "bot-app-id", "CertificateThumbprint": THUMBPRINT,
                             "InstanceInternalPort": 8445, "InstancePublicPort": 6001,
                             "InstancePublicIPAddress": "20.30.40.50", "ServiceFqdn": "media-0.example.com"}
    assert r["socket"] == {"CallId": "call-meeting", "Unmixed": True, "Direction": "Recvonly", "Format": "Pcm16K"}
    assert r["blob"] == ('{"standIn":true,"callId":"call-meeting","mpUri":"net.tcp://media-0.example.com:6001/'
                         'MediaProcessor","direction":"Recvonly","unmixed":true}')
    # Every tick, every speaker's bytes, ids and timestamps, in order, on the loop; the handler on .NET's thread.
    assert r["ticks"] == r["raised"] == 600
    assert r["mismatches"] == []
    assert r["frames"] == sum(len(expected_unmixed(t, [11, 22, 33, 44, 55])) for t in range(600))
    assert r["handler_thread_is_loop"] is False
    assert r["consumer_thread_is_loop"] is True
    # Every buffer disposed, by the handler, once; no unmanaged block left; nothing thrown into the library.
    assert r["left_undisposed"] == 0
    assert r["error"] is None
    assert r["created"] == r["disposed"] == 600
    assert r["double_disposals"] == 0
    assert r["outstanding"] == 0
    assert r["stats"]["handler_errors"] == 0 and r["stats"]["dropped"] == 0
    assert r["health"]["engine"] == "windows" and r["health"]["ticks"] == 600
    assert r["health"]["runtime"].startswith("mono: Mono ")
    assert r["handler_us"]["median"] < 5000  # about 0.1 ms here: see docs/media.md for the numbers


def test_a_slow_consumer_loses_the_oldest_ticks_and_never_holds_up_the_library(standin: Path) -> None:
    r = scenario(standin, "slow")
    assert r["raised"] == 1000 and r["left_undisposed"] == 0 and r["error"] is None
    assert r["queued"] == 500  # QUEUE_TICKS: 10 s
    assert r["dropped"] == 500
    assert r["first_queued_tick"] == 500 and r["last_queued_tick"] == 999  # the oldest went
    assert r["outstanding"] == 0
    assert r["handler_us"]["p99"] < 5000  # nobody reading changes nothing for the library's thread
    # The event loop's thread computing in Python (holding the GIL) while buffers come: each handler waits for the GIL
    # about one switch interval, which the engine sets to 1 ms while it runs (Python's default: 5 ms).
    assert r["switch_interval_running"] == 0.001
    assert r["switch_interval_after_stop"] == r["switch_interval_before"]
    assert r["busy_loop"]["handler_us"]["p99"] < 20_000  # within a frame (20 ms)
    assert r["busy_loop"]["raised"] == r["busy_loop"]["delivered"] == 300


def test_a_one_to_one_call_gets_the_mixed_audio_labelled_with_the_speaker(standin: Path) -> None:
    r = scenario(standin, "one_to_one")
    assert r["socket"]["Unmixed"] is False
    assert r["mismatches"] == []
    assert r["ticks"] == 150
    assert r["outstanding"] == 0 and r["left_undisposed"] == 0


def test_sent_audio_reaches_the_socket_in_send_buffers_the_library_frees(standin: Path) -> None:
    r = scenario(standin, "send")
    assert r["socket"]["Direction"] == "Sendrecv"
    assert r["before_active"] == {"sent": 0, "send_not_active": 1}
    assert r["sent_frames"] == 50
    assert r["bytes_match"] is True
    assert r["buffer_types"] == ["Microsoft.Graph.Communications.Calls.Media.AudioSendBuffer"]
    assert r["formats"] == ["Pcm16K"]
    assert r["timestamps_increase"] is True
    assert r["created"] == r["freed"] == r["send_disposals"] == 50  # the platform disposed each, later, elsewhere
    assert r["wrong_size"] == "ValueError"
    assert r["after_inactive"]["sent_frames"] == 50 and r["after_inactive"]["send_not_active"] == 2


def test_stream_failure_ends_one_call_and_stop_disposes_every_socket_and_shuts_down(standin: Path) -> None:
    r = scenario(standin, "failure_and_shutdown")
    assert r["failed_call"] == {"ticks": 40, "ended": True, "reason": "MediaStreamFailure"}
    assert r["health_after_event"] == "HeavilyLoaded"
    assert r["closed_mid_feed"]["error"] is None
    assert r["closed_mid_feed"]["raised"] < 2000  # the feed stopped with the socket
    assert r["closed_mid_feed"]["frames_ended"] is True
    assert r["closed_mid_feed"]["handlers_left"] == 0
    assert r["after_stop"] == {"sockets_disposed": 3, "handlers_left": 0, "health_handlers_left": 0, "shutdowns": 1,
                               "initialized": False, "outstanding": 0, "started": False, "other_call_ended": True,
                               "sessions": 0}


def test_library_errors_are_named_and_never_reach_the_library_thread(standin: Path) -> None:
    r = scenario(standin, "errors")
    assert "MediaPlatform.Initialize failed: SkypeMediaException: certificate not found" in r["initialize"]
    assert r["switch_interval_restored"] is True
    assert "overloaded" in r["overloaded"] and "CreateMediaConfiguration" in r["overloaded"]
    assert r["overloaded_socket_disposed"] is True
    assert r["raising_sink"] == {"error": None, "left_undisposed": 0, "outstanding": 0, "handler_errors": 20,
                                 "raised": 20}
    assert r["not_started"] == "RuntimeError"


# --- settings and the service, in pytest's process (no .NET) ----------------------------------------------------


def windows_env(**more: str) -> dict[str, str]:
    return {"MEDIA_CERTIFICATE_THUMBPRINT": THUMBPRINT, "MEDIA_INSTANCE_PUBLIC_PORT": "6001",
            "MEDIA_INSTANCE_PUBLIC_IP": "20.30.40.50", "MEDIA_SERVICE_FQDN": "media-0.example.com",
            "MEDIA_LIBRARY_DIR": "C:\\mediavm\\lib", **more}


def test_windows_settings_are_read_and_normalised() -> None:
    settings = WindowsMediaSettings.from_env(
        windows_env(MEDIA_CERTIFICATE_THUMBPRINT="\u200e01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef 01 23 45 67",
                    MEDIA_SERVICE_FQDN="media-0.example.com."), "app")
    assert settings == WindowsMediaSettings(application_id="app", certificate_thumbprint=THUMBPRINT, public_port=6001,
                                            public_ip="20.30.40.50", service_fqdn="media-0.example.com",
                                            library_dir="C:\\mediavm\\lib", internal_port=8445, runtime="coreclr",
                                            dotnet_version="8.0")


def test_every_windows_setting_problem_is_named() -> None:
    with pytest.raises(ConfigError) as missing:
        WindowsMediaSettings.from_env({}, "app")
    text = "\n".join(missing.value.problems)
    for name in ("MEDIA_CERTIFICATE_THUMBPRINT", "MEDIA_INSTANCE_PUBLIC_PORT", "MEDIA_INSTANCE_PUBLIC_IP",
                 "MEDIA_SERVICE_FQDN", "MEDIA_LIBRARY_DIR"):
        assert f"MEDIA_ENGINE=windows needs {name}" in text
    assert len(missing.value.problems) == 5
    with pytest.raises(ConfigError) as wrong:
        WindowsMediaSettings.from_env(windows_env(
            MEDIA_CERTIFICATE_THUMBPRINT="abc", MEDIA_INSTANCE_PUBLIC_PORT="70000", MEDIA_INSTANCE_INTERNAL_PORT="x",
            MEDIA_INSTANCE_PUBLIC_IP="media-0", MEDIA_SERVICE_FQDN="10.0.0.4", MEDIA_DOTNET_RUNTIME="netfx",
            MEDIA_DOTNET_VERSION="8"), "app")
    text = "\n".join(wrong.value.problems)
    for expected in ("MEDIA_CERTIFICATE_THUMBPRINT must be 40 hex digits",
                     "MEDIA_INSTANCE_PUBLIC_PORT must be a port number", "MEDIA_INSTANCE_INTERNAL_PORT must be a port",
                     "MEDIA_INSTANCE_PUBLIC_IP must be an IP address", "MEDIA_SERVICE_FQDN must be a DNS name",
                     "MEDIA_DOTNET_RUNTIME must be coreclr", "MEDIA_DOTNET_VERSION must be major.minor"):
        assert expected in text
    assert len(wrong.value.problems) == 7


def _service_env(tmp_path: Path, library: Path) -> dict[str, str]:
    return {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
            "BOT_MANAGED_IDENTITY_CLIENT_ID": "00000000-0000-0000-0000-00000000000a",
            "MEDIA_WORKER_PUBLIC_URL": "https://media-0.example.com:7000", "MEDIA_HANDOFF_TRANSPORT": "servicebus",
            "SERVICEBUS_NAMESPACE": "sb-test.servicebus.windows.net", "RECORDINGS_DIR": str(tmp_path / "recordings"),
            "MEDIA_ENGINE": "windows", **windows_env(MEDIA_LIBRARY_DIR=str(library))}


def test_the_service_builds_the_windows_engine_and_checks_the_library_folder(tmp_path: Path) -> None:
    from mediavm import __main__ as service
    from mediavm.windows import WindowsEngine

    with pytest.raises(ConfigError) as caught:
        service.check(_service_env(tmp_path, tmp_path / "nowhere"))
    assert any("has no Microsoft.Skype.Bots.Media.dll" in p for p in caught.value.problems)
    (tmp_path / "Microsoft.Skype.Bots.Media.dll").write_bytes(b"")
    settings = service.check(_service_env(tmp_path, tmp_path))
    assert settings.windows is not None and settings.windows.application_id == APP_ID
    assert isinstance(service.media_engine(settings), WindowsEngine)
    assert service.media_engine(dataclasses.replace(settings, engine="loopback")).name == "loopback"


def test_a_media_platform_that_does_not_start_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mediavm import __main__ as service
    from mediavm.windows import MediaLibraryError

    (tmp_path / "Microsoft.Skype.Bots.Media.dll").write_bytes(b"")

    async def serve(*args: Any, **kwargs: Any) -> None:
        raise MediaLibraryError("MediaPlatform.Initialize failed: SkypeMediaException: no certificate")

    monkeypatch.setattr(service, "serve", serve)
    assert service.main(_service_env(tmp_path, tmp_path)) == service.EXIT_MEDIA
    assert "The media platform did not start: MediaPlatform.Initialize failed" in capsys.readouterr().err


def test_nothing_loads_pythonnet_unless_the_windows_engine_starts() -> None:
    code = ("import sys, mediavm.__main__, mediavm.worker, mediavm.windows, mediavm.windows.engine; "
            "print(sorted(m for m in ('pythonnet', 'clr', 'clr_loader', 'mediavm.windows.interop') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]"


# --- the child: one scenario in a process of its own, on Mono ------------------------------------------------------


class Ctx:
    """The engine's settings for the stand-in, and the stand-in's test side once .NET is up."""

    def __init__(self, library_dir: str) -> None:
        self.settings = WindowsMediaSettings(
            application_id="bot-app-id", certificate_thumbprint=THUMBPRINT, public_port=6001, public_ip="20.30.40.50",
            service_fqdn="media-0.example.com", library_dir=library_dir, runtime="mono")
        self.Platform: Any = None
        self.Feeder: Any = None
        self.media: Any = None
        self.system: Any = None
        self.sends: Any = None

    def bind(self) -> None:
        from mediavm.windows import interop

        interop.load_runtime(self.settings)
        clr: Any = importlib.import_module("clr")
        clr.AddReference(str(Path(self.settings.library_dir) / "Microsoft.Graph.Communications.Calls.Media.dll"))
        standin: Any = importlib.import_module("StandIn")
        self.Platform, self.Feeder = standin.Platform, standin.Feeder
        self.media = importlib.import_module("Microsoft.Skype.Bots.Media")
        self.system = importlib.import_module("System")
        self.sends = importlib.import_module("Microsoft.Graph.Communications.Calls.Media").StandInSends

    async def engine(self) -> Any:
        from mediavm.windows import WindowsEngine

        engine = WindowsEngine(self.settings)
        await engine.start()
        self.bind()
        return engine

    def socket(self, call_id: str) -> Any:
        return next(s for s in self.Platform.Sockets if self.Platform.CallId(s) == call_id)

    def describe(self, socket: Any) -> dict[str, Any]:
        p = self.Platform
        return {"CallId": p.CallId(socket), "Unmixed": bool(p.Unmixed(socket)), "Direction": p.Direction(socket),
                "Format": p.Format(socket)}

    def uints(self, values: list[int]) -> Any:
        return self.system.Array[self.system.UInt32](values)

    async def join(self, feeder: Any, seconds: float = 60) -> None:
        assert await asyncio.to_thread(feeder.Join, int(seconds * 1000)), "the stand-in's feed did not finish"


def wait_until(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def micros(values: Any) -> dict[str, float]:
    data = sorted(float(v) for v in values)
    if not data:
        return {}
    p99 = data[min(len(data) - 1, int(len(data) * 0.99))]
    return {"median": round(statistics.median(data), 1), "p99": round(p99, 1), "max": round(data[-1], 1),
            "mean": round(statistics.fmean(data), 1)}


async def take(session: Any, count: int, seconds: float = 30) -> list[list[AudioFrame]]:
    ticks: list[list[AudioFrame]] = []

    async def read() -> None:
        async for tick in session.frames():
            ticks.append(tick)
            if len(ticks) == count:
                return

    await asyncio.wait_for(read(), seconds)
    return ticks


async def queued(session: Any) -> list[list[AudioFrame]]:
    """What a session holds now, without waiting for more."""
    ticks: list[list[AudioFrame]] = []
    frames = session.frames()
    while True:
        try:
            ticks.append(await asyncio.wait_for(anext(frames), 0.2))
        except (TimeoutError, StopAsyncIteration):
            return ticks


async def meeting(ctx: Ctx) -> dict[str, Any]:
    engine = await ctx.engine()
    session = await engine.create_session("call-meeting")
    socket = ctx.socket("call-meeting")
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    deliver = session.deliver

    def spy(frames: list[AudioFrame]) -> None:
        threads.add(threading.get_ident())
        deliver(frames)

    session.deliver = spy
    speakers = [11, 22, 33, 44, 55]
    feeder = ctx.Feeder.Start(socket, ctx.uints(speakers), 600, 0, True, False)
    consumer_threads: set[int] = set()
    ticks: list[list[AudioFrame]] = []
    async for tick in session.frames():
        consumer_threads.add(threading.get_ident())
        ticks.append(tick)
        if len(ticks) == 600:
            break
    await ctx.join(feeder)
    mismatches = []
    for t, tick in enumerate(ticks):
        ids = [f.source_id for f in tick]
        if ids != expected_unmixed(t, speakers):
            mismatches.append(f"tick {t}: speakers {ids}, not {expected_unmixed(t, speakers)}")
        for frame in tick:
            if frame.timestamp != TIMESTAMP_BASE + t * TICKS_PER_FRAME or frame.pcm != pattern(t, frame.source_id):
                mismatches.append(f"tick {t} speaker {frame.source_id}: wrong timestamp or bytes")
    frames = sum(len(t) for t in ticks)
    elapsed = float(feeder.ElapsedSeconds)
    p = ctx.Platform
    instance = p.LastSettings.MediaPlatformInstanceSettings
    result = {
        "platform": {"ApplicationId": p.LastSettings.ApplicationId,
                     "CertificateThumbprint": instance.CertificateThumbprint,
                     "InstanceInternalPort": instance.InstanceInternalPort,
                     "InstancePublicPort": instance.InstancePublicPort,
                     "InstancePublicIPAddress": instance.InstancePublicIPAddress.ToString(),
                     "ServiceFqdn": instance.ServiceFqdn},
        "socket": ctx.describe(socket), "blob": session.configuration(),
        "ticks": len(ticks), "frames": frames, "raised": feeder.Raised, "mismatches": mismatches[:10],
        "handler_thread_is_loop": loop_thread in threads, "consumer_thread_is_loop": consumer_threads == {loop_thread},
        "left_undisposed": feeder.LeftUndisposed, "error": feeder.Error,
        "stats": dataclasses.asdict(session.stats),
        "handler_us": micros(feeder.HandlerMicros),
        "engine_handler_us": {"mean": round(session.stats.handler_ns / max(1, session.stats.handler_calls) / 1000, 1),
                              "max": round(session.stats.handler_max_ns / 1000, 1)},
        "feed_seconds": round(elapsed, 3), "ticks_per_second": round(600 / elapsed),
        "frames_per_second": round(frames / elapsed),
        "health": dict(engine.health()),
    }
    await engine.stop()
    result.update(created=p.BuffersCreated, disposed=p.BuffersDisposed, double_disposals=p.DoubleDisposals,
                  outstanding=p.Outstanding)
    return result


async def slow(ctx: Ctx) -> dict[str, Any]:
    before = sys.getswitchinterval()
    engine = await ctx.engine()
    running = sys.getswitchinterval()
    session = await engine.create_session("call-slow")
    socket = ctx.socket("call-slow")
    feeder = ctx.Feeder.Start(socket, ctx.uints([7, 8]), 1000, 0, True, False)
    await ctx.join(feeder)  # nobody reads meanwhile
    held = await queued(session)
    first = (held[0][0].timestamp - TIMESTAMP_BASE) // TICKS_PER_FRAME
    last = (held[-1][0].timestamp - TIMESTAMP_BASE) // TICKS_PER_FRAME
    result: dict[str, Any] = {
        "raised": feeder.Raised, "left_undisposed": feeder.LeftUndisposed, "error": feeder.Error,
        "queued": len(held), "dropped": session.stats.dropped, "first_queued_tick": first, "last_queued_tick": last,
        "handler_us": micros(feeder.HandlerMicros), "switch_interval_before": before,
        "switch_interval_running": running,
    }

    async def busy(interval: float) -> dict[str, Any]:
        """The loop's own thread computes in Python for the whole feed (a 2 ms pace): the GIL is contended."""
        sys.setswitchinterval(interval)
        busy_session = await engine.create_session(f"call-busy-{interval}")
        busy_feeder = ctx.Feeder.Start(ctx.socket(f"call-busy-{interval}"), ctx.uints([7, 8]), 300, 2, True, False)
        end = time.perf_counter() + 3.0
        spins = 0
        while time.perf_counter() < end and busy_session.stats.received < 300:
            spins += 1  # pure Python: holds the GIL but for the forced switches
        await ctx.join(busy_feeder)
        delivered = len(await queued(busy_session))
        await busy_session.close()
        return {"raised": busy_feeder.Raised, "delivered": delivered, "handler_us": micros(busy_feeder.HandlerMicros),
                "error": busy_feeder.Error}

    result["busy_loop"] = await busy(running)
    result["busy_loop_python_default_5ms"] = await busy(0.005)
    sys.setswitchinterval(running)
    await engine.stop()
    result["switch_interval_after_stop"] = sys.getswitchinterval()
    result["outstanding"] = ctx.Platform.Outstanding
    return result


async def one_to_one(ctx: Ctx) -> dict[str, Any]:
    engine = await ctx.engine()
    session = await engine.create_session("call-1to1", unmixed_audio=False)
    socket = ctx.socket("call-1to1")
    mismatches: list[str] = []
    left = 0

    async def feed(speakers: list[int], dominant: int | None, label: str) -> None:
        nonlocal left
        feeder = ctx.Feeder.Start(socket, ctx.uints(speakers), 50, 0, False, False)
        ticks = await take(session, 50)
        await ctx.join(feeder)
        left += int(feeder.LeftUndisposed)
        for t, tick in enumerate(ticks):
            active = [msi for k, msi in enumerate(speakers) if speaks(t, k)]
            want = [] if silent(t) else [AudioFrame(active[0] if active else (dominant or 0),
                                                    TIMESTAMP_BASE + t * TICKS_PER_FRAME, pattern(t, 0))]
            if tick != want:
                mismatches.append(f"{label} tick {t}: {[(f.source_id, f.timestamp) for f in tick]}")

    ctx.Platform.RaiseDominantSpeaker(socket, 77)
    await feed([], 77, "dominant speaker")
    ctx.Platform.RaiseDominantSpeaker(socket, 0xFFFFFFFF)  # DominantSpeakerChangedEventArgs.None
    await feed([], None, "nobody dominant")
    await feed([5, 6], None, "active speakers")
    result = {"socket": ctx.describe(socket), "mismatches": mismatches[:10], "ticks": session.stats.received,
              "left_undisposed": left}
    await engine.stop()
    result["outstanding"] = ctx.Platform.Outstanding
    return result


async def send(ctx: Ctx) -> dict[str, Any]:
    engine = await ctx.engine()
    ctx.Platform.SendDisposeDelayMs = 5  # the platform keeps each sent buffer a while, then disposes it elsewhere
    session = await engine.create_session("call-send", send_audio=True)
    socket = ctx.socket("call-send")
    frames = [bytes((i * 7 + j) & 0xFF for j in range(FRAME_BYTES)) for i in range(50)]
    await session.send(frames[0])  # before AudioSendStatusChanged(Active): the library would discard it
    result: dict[str, Any] = {"socket": ctx.describe(socket),
                              "before_active": {"sent": len(ctx.Platform.SentFrames),
                                                "send_not_active": session.stats.send_not_active}}
    ctx.Platform.RaiseSendStatus(socket, ctx.media.MediaSendStatus.Active)
    for pcm in frames:
        await session.send(pcm)
    # The stand-in disposes on .NET's thread pool: poll its counter (no event to wait on across the runtimes).
    await asyncio.to_thread(wait_until, lambda: ctx.Platform.SendDisposals >= 50, 10)
    sent = list(ctx.Platform.SentFrames)
    stamps = [int(f.Timestamp) for f in sent]
    result.update(
        sent_frames=len(sent), bytes_match=[bytes(f.Bytes) for f in sent] == frames,
        buffer_types=sorted({str(f.BufferType) for f in sent}), formats=sorted({str(f.Format) for f in sent}),
        timestamps_increase=all(a <= b for a, b in itertools.pairwise(stamps)) and stamps[0] > 0,
        created=ctx.sends.Created, freed=ctx.sends.Freed, send_disposals=ctx.Platform.SendDisposals)
    try:
        await session.send(b"short")
        result["wrong_size"] = None
    except ValueError:
        result["wrong_size"] = "ValueError"
    ctx.Platform.RaiseSendStatus(socket, ctx.media.MediaSendStatus.Inactive)
    await session.send(frames[0])
    result["after_inactive"] = {"sent_frames": len(ctx.Platform.SentFrames),
                                "send_not_active": session.stats.send_not_active}
    await engine.stop()
    return result


async def failure_and_shutdown(ctx: Ctx) -> dict[str, Any]:
    engine = await ctx.engine()
    failing = await engine.create_session("call-fails")
    other = await engine.create_session("call-other")
    closing = await engine.create_session("call-closed")
    feeder = ctx.Feeder.Start(ctx.socket("call-fails"), ctx.uints([1, 2]), 40, 0, True, True)
    got = [tick async for tick in failing.frames()]  # ends: MediaStreamFailure
    await ctx.join(feeder)
    result: dict[str, Any] = {"failed_call": {"ticks": len(got), "ended": True, "reason": failing.end_reason}}
    ctx.Platform.RaiseHealth(ctx.media.MediaPlatformHealthStatus.HeavilyLoaded)
    await asyncio.sleep(0.05)
    result["health_after_event"] = engine.health()["platform_health"]

    # Closing a call while the library is still raising its buffers.
    closing_socket = ctx.socket("call-closed")
    long_feed = ctx.Feeder.Start(closing_socket, ctx.uints([3, 4, 5]), 2000, 1, True, False)
    await take(closing, 30)
    await closing.close()
    await asyncio.wait_for(queued(closing), 10)  # what was queued, then the end
    ended = closing.closed and closing.end_reason == "closed"
    await ctx.join(long_feed)
    result["closed_mid_feed"] = {"error": long_feed.Error, "raised": long_feed.Raised, "frames_ended": ended,
                                 "handlers_left": ctx.Platform.Handlers(closing_socket),
                                 "left_undisposed": long_feed.LeftUndisposed}
    engine.forget("call-closed")

    other_ended = asyncio.ensure_future(take(other, 1, seconds=10))
    await engine.stop()
    with contextlib.suppress(TimeoutError):
        await other_ended
    p = ctx.Platform
    result["after_stop"] = {
        "sockets_disposed": p.SocketsDisposed,
        "handlers_left": sum(p.Handlers(s) for s in p.Sockets), "health_handlers_left": p.HealthHandlers(),
        "shutdowns": p.Shutdowns, "initialized": bool(p.IsInitialized), "outstanding": p.Outstanding,
        "started": engine.health()["started"], "other_call_ended": other_ended.done() and other.closed,
        "sessions": engine.health()["sessions"],
    }
    return result


async def errors(ctx: Ctx) -> dict[str, Any]:
    from mediavm.windows import MediaLibraryError, WindowsEngine

    result: dict[str, Any] = {}
    ctx.bind()  # .NET up, the platform not initialised yet
    before = sys.getswitchinterval()
    ctx.Platform.FailInitialize = "certificate not found"
    failing = WindowsEngine(ctx.settings)
    try:
        await failing.start()
        result["initialize"] = "started"
    except MediaLibraryError as exc:
        result["initialize"] = str(exc)
    result["switch_interval_restored"] = sys.getswitchinterval() == before
    try:
        await failing.create_session("call-x")
    except RuntimeError as exc:
        result["not_started"] = type(exc).__name__
    ctx.Platform.FailInitialize = None
    engine = await ctx.engine()

    ctx.Platform.Overloaded = True
    try:
        await engine.create_session("call-overloaded")
        result["overloaded"] = "created"
    except MediaLibraryError as exc:
        result["overloaded"] = str(exc)
    result["overloaded_socket_disposed"] = bool(ctx.Platform.IsDisposed(ctx.socket("call-overloaded")))
    ctx.Platform.Overloaded = False

    session = await engine.create_session("call-raising")

    def boom(frames: list[AudioFrame]) -> None:
        raise RuntimeError("the sink broke")

    session.deliver = boom
    feeder = ctx.Feeder.Start(ctx.socket("call-raising"), ctx.uints([1]), 20, 0, True, False)
    await ctx.join(feeder)
    await asyncio.sleep(0.05)
    result["raising_sink"] = {"error": feeder.Error, "left_undisposed": feeder.LeftUndisposed,
                              "outstanding": ctx.Platform.Outstanding, "handler_errors": session.stats.handler_errors,
                              "raised": feeder.Raised}
    await engine.stop()
    return result


SCENARIOS: dict[str, Callable[[Ctx], Awaitable[dict[str, Any]]]] = {
    "meeting": meeting, "slow": slow, "one_to_one": one_to_one, "send": send,
    "failure_and_shutdown": failure_and_shutdown, "errors": errors,
}


def child(argv: list[str]) -> int:
    """`python -m tests.test_windows_engine <scenario> [<stand-in dir>]`: without a folder it compiles one."""
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m tests.test_windows_engine {{{','.join(SCENARIOS)}}} [stand-in dir]", file=sys.stderr)
        return 2
    name = argv[0]
    library_dir = argv[1] if len(argv) > 1 else str(build(Path(tempfile.mkdtemp(prefix="dotnet-standin-"))))
    try:
        result = asyncio.run(SCENARIOS[name](Ctx(library_dir)))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
