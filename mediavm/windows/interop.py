"""The .NET side of the Windows engine: the only module that touches pythonnet and Microsoft's media library.

Members used, all from the library's public API reference (docs/media.md, "The Windows engine", has the sources):
- Microsoft.Skype.Bots.Media: MediaPlatform.Initialize(MediaPlatformSettings), .Shutdown(),
  .CreateMediaConfiguration(IAudioSocket) -> JObject, .GetCurrentTimestamp(), event .MediaPlatformHealthChanged;
  MediaPlatformSettings {ApplicationId, MediaPlatformInstanceSettings}; MediaPlatformInstanceSettings
  {CertificateThumbprint, InstanceInternalPort, InstancePublicPort, InstancePublicIPAddress (System.Net.IPAddress),
  ServiceFqdn}; AudioSocket(AudioSocketSettings {CallId, StreamDirections, SupportedAudioFormat,
  ReceiveUnmixedMeetingAudio}), .Send(AudioMediaBuffer), .Dispose(), events AudioMediaReceived,
  AudioSendStatusChanged, DominantSpeakerChanged, MediaStreamFailure; AudioMediaBuffer {Data (IntPtr), Length,
  Timestamp, IsSilence, ActiveSpeakers, UnmixedAudioBuffers, Dispose()}; UnmixedAudioBuffer {Data, Length,
  ActiveSpeakerId}; AudioFormat.Pcm16K; StreamDirection.Recvonly/.Sendrecv; MediaSendStatus.Active;
  DominantSpeakerChangedEventArgs.CurrentDominantSpeaker (None = 0xFFFFFFFF).
- Microsoft.Graph.Communications.Calls.Media: AudioSendBuffer(IntPtr, long, AudioFormat, long), only to send: the
  library's AudioMediaBuffer is abstract with a protected abstract Dispose(bool), which a Python class cannot override
  under pythonnet 3.2 ("Failed to create Python type"), so the SDK's concrete buffer is used.
- Newtonsoft.Json: JToken.ToString(Formatting.None), the configuration blob's text.

pythonnet objects are untyped (Any) here; what leaves this module is typed: str, bytes, AudioFrame, and the handles
the engine's Protocols describe.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediavm.config import WindowsMediaSettings
from mediavm.engine import AudioFrame
from mediavm.windows.engine import MediaLibraryError, MediaSink

MEDIA_ASSEMBLY = "Microsoft.Skype.Bots.Media"
CALLS_MEDIA_ASSEMBLY = "Microsoft.Graph.Communications.Calls.Media"
JSON_ASSEMBLY = "Newtonsoft.Json"
#: What `dotnet publish` of mediavm/windows/MediaLibrary.csproj writes beside the library: the frameworks the
#: packages need, as the .NET SDK resolved them. Without it the engine writes its own (runtime_config()).
PUBLISHED_RUNTIME_CONFIG = "MediavmMediaLibrary.runtimeconfig.json"
#: DominantSpeakerChangedEventArgs.None: no dominant speaker.
NO_SPEAKER = 0xFFFFFFFF
#: A received buffer longer than this is not read (20 ms of 16 kHz mono PCM is 640 bytes; 44.1 kHz stereo 3,528).
MAX_BUFFER_BYTES = 1 << 16

_lock = threading.Lock()
_loaded: dict[str, str] = {}  # "dir" and "runtime" once .NET is up: pythonnet loads one runtime per process
_dll_directories: list[object] = []  # kept: closing one would take its folder off the DLL search path


def _namespace(name: str) -> Any:
    """A .NET namespace as pythonnet imports it (after its assembly is referenced)."""
    return importlib.import_module(name)


def describe(exc: BaseException) -> str:
    """A .NET exception as `Type: message` (pythonnet raises them as Python exceptions of the .NET type)."""
    message = getattr(exc, "Message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"


def runtime_config(library_dir: Path, version: str) -> Path:
    """The runtimeconfig.json coreclr starts with: the published one beside the library, else one written here.

    The media library of the .NET (Core) generations runs ASP.NET Core inside (its media processor's HTTP endpoint:
    issues 841 and 868 of microsoft-graph-comms-samples show Kestrel and HstsMiddleware in its stack), so the written
    one asks for Microsoft.AspNetCore.App beside Microsoft.NETCore.App; the VM needs the ASP.NET Core Runtime."""
    published = library_dir / PUBLISHED_RUNTIME_CONFIG
    if published.is_file():
        return published
    config = {"runtimeOptions": {"tfm": f"net{version}", "frameworks": [
        {"name": "Microsoft.NETCore.App", "version": f"{version}.0"},
        {"name": "Microsoft.AspNetCore.App", "version": f"{version}.0"},
    ]}}
    path = Path(tempfile.gettempdir()) / f"mediavm-net{version}.runtimeconfig.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def load_runtime(settings: WindowsMediaSettings) -> str:
    """Start .NET (once per process) and reference the library's assemblies; returns the runtime's description."""
    directory = Path(settings.library_dir).resolve()
    with _lock:
        if _loaded:
            if _loaded["dir"] != str(directory):
                raise MediaLibraryError(f".NET is already loaded with the media library from {_loaded['dir']}; "
                                        f"one process hosts one (asked for {directory})")
            return _loaded["runtime"]
        if not (directory / f"{MEDIA_ASSEMBLY}.dll").is_file():
            raise MediaLibraryError(f"MEDIA_LIBRARY_DIR {directory} has no {MEDIA_ASSEMBLY}.dll (publish the NuGet "
                                    "packages there: docs/media.md, \"The Windows engine\")")
        try:
            pythonnet = importlib.import_module("pythonnet")
        except ImportError as exc:
            raise MediaLibraryError("pythonnet is not installed (pip install -e .[windows]: pyproject.toml)") from exc
        try:
            if settings.runtime == "mono":
                with warnings.catch_warnings():  # clr_loader warns on Mono before 6.12; the tests' Debian has 6.8
                    warnings.filterwarnings("ignore", message="Hosting Mono versions", category=UserWarning)
                    pythonnet.load("mono")
            else:
                pythonnet.load("coreclr", runtime_config=str(runtime_config(directory, settings.dotnet_version)))
        except Exception as exc:
            cause = f" ({describe(exc.__cause__)})" if exc.__cause__ is not None else ""
            raise MediaLibraryError(f"could not start .NET ({settings.runtime} {settings.dotnet_version}): "
                                    f"{describe(exc)}{cause}") from exc
        if sys.platform == "win32":  # the library's native media stack lives beside it
            _dll_directories.append(os.add_dll_directory(str(directory)))
            os.environ["PATH"] = str(directory) + os.pathsep + os.environ.get("PATH", "")
        if str(directory) not in sys.path:
            sys.path.append(str(directory))  # pythonnet resolves the assemblies' own references on sys.path
        clr = importlib.import_module("clr")
        for name in (JSON_ASSEMBLY, MEDIA_ASSEMBLY):
            path = directory / f"{name}.dll"
            try:
                clr.AddReference(str(path) if path.is_file() else name)
            except Exception as exc:
                raise MediaLibraryError(f"could not load {name} from {directory}: {describe(exc)}") from exc
        framework = _namespace("System.Runtime.InteropServices").RuntimeInformation.FrameworkDescription
        _loaded.update(dir=str(directory), runtime=f"{settings.runtime}: {framework}")
        return _loaded["runtime"]


def _copy(pointer: Any, length: Any) -> bytes:
    """The bytes of an unmanaged buffer (IntPtr, length), copied once, straight into Python (no .NET array)."""
    size = int(length)
    address = int(pointer.ToInt64())
    if size <= 0 or address == 0:
        return b""
    return ctypes.string_at(address, min(size, MAX_BUFFER_BYTES))


class DotNetLibrary:
    """MediaPlatform and its AudioSockets through pythonnet (engine.MediaLibrary)."""

    def __init__(self, settings: WindowsMediaSettings) -> None:
        self._settings = settings
        self.runtime = load_runtime(settings)
        self._media = _namespace(MEDIA_ASSEMBLY)
        self._net = _namespace("System.Net")
        self._marshal = _namespace("System.Runtime.InteropServices").Marshal
        self._formatting_none = getattr(_namespace("Newtonsoft.Json").Formatting, "None")  # None: a Python keyword
        self._send_buffer: Any = None
        self._on_health: Callable[[Any, Any], None] | None = None

    def initialize(self, on_health: Callable[[str], None]) -> None:
        media, s = self._media, self._settings
        instance = media.MediaPlatformInstanceSettings()
        instance.CertificateThumbprint = s.certificate_thumbprint
        instance.InstanceInternalPort = s.internal_port
        instance.InstancePublicPort = s.public_port
        instance.InstancePublicIPAddress = self._net.IPAddress.Parse(s.public_ip)
        instance.ServiceFqdn = s.service_fqdn
        platform = media.MediaPlatformSettings()
        platform.ApplicationId = s.application_id
        platform.MediaPlatformInstanceSettings = instance

        def health_changed(sender: Any, args: Any) -> None:  # on a library thread
            with contextlib.suppress(Exception):
                on_health(str(args.CurrentHealth))

        media.MediaPlatform.MediaPlatformHealthChanged += health_changed
        self._on_health = health_changed
        try:
            media.MediaPlatform.Initialize(platform)
        except Exception as exc:
            self._unsubscribe_health()
            raise MediaLibraryError(f"MediaPlatform.Initialize failed: {describe(exc)}") from exc

    def open_socket(self, call_id: str, *, unmixed: bool, send: bool, sink: MediaSink) -> DotNetSocket:
        media = self._media
        if send:
            self._load_send_buffer()
        settings = media.AudioSocketSettings()
        settings.CallId = call_id
        settings.StreamDirections = media.StreamDirection.Sendrecv if send else media.StreamDirection.Recvonly
        settings.SupportedAudioFormat = media.AudioFormat.Pcm16K
        settings.ReceiveUnmixedMeetingAudio = unmixed
        try:
            socket = media.AudioSocket(settings)
        except Exception as exc:
            raise MediaLibraryError(f"new AudioSocket for call {call_id} failed: {describe(exc)}") from exc
        handle = DotNetSocket(self, socket, sink)
        try:
            configuration = media.MediaPlatform.CreateMediaConfiguration(socket)
            handle.configuration = str(configuration.ToString(self._formatting_none))
        except Exception as exc:
            handle.close()
            raise MediaLibraryError(f"MediaPlatform.CreateMediaConfiguration for call {call_id} failed: "
                                    f"{describe(exc)}") from exc
        return handle

    def shutdown(self) -> None:
        self._unsubscribe_health()
        try:
            self._media.MediaPlatform.Shutdown()
        except Exception as exc:
            raise MediaLibraryError(f"MediaPlatform.Shutdown failed: {describe(exc)}") from exc

    def send_buffer(self, pcm: bytes) -> Any:
        """An AudioSendBuffer holding a copy of `pcm` in unmanaged memory, which its Dispose frees."""
        length = len(pcm)
        pointer = self._marshal.AllocHGlobal(length)
        try:
            ctypes.memmove(int(pointer.ToInt64()), pcm, length)
            return self._send_buffer(pointer, length, self._media.AudioFormat.Pcm16K,
                                     self._media.MediaPlatform.GetCurrentTimestamp())
        except BaseException:
            self._marshal.FreeHGlobal(pointer)
            raise

    def _load_send_buffer(self) -> None:
        if self._send_buffer is not None:
            return
        directory = Path(self._settings.library_dir).resolve()
        path = directory / f"{CALLS_MEDIA_ASSEMBLY}.dll"
        if not path.is_file():
            raise MediaLibraryError(f"sending audio needs {CALLS_MEDIA_ASSEMBLY}.dll (its AudioSendBuffer) in "
                                    f"MEDIA_LIBRARY_DIR {directory}")
        try:
            importlib.import_module("clr").AddReference(str(path))
            self._send_buffer = _namespace(CALLS_MEDIA_ASSEMBLY).AudioSendBuffer
        except Exception as exc:
            raise MediaLibraryError(f"could not load {CALLS_MEDIA_ASSEMBLY}: {describe(exc)}") from exc

    def _unsubscribe_health(self) -> None:
        if self._on_health is not None:
            with contextlib.suppress(Exception):
                self._media.MediaPlatform.MediaPlatformHealthChanged -= self._on_health
            self._on_health = None


class DotNetSocket:
    """One call's AudioSocket and its event handlers (engine.SocketHandle).

    The handlers run on the library's threads, which call them one at a time per socket. Each holds the GIL only
    while it runs, never waits for the event loop, and never lets an exception out into the library."""

    def __init__(self, library: DotNetLibrary, socket: Any, sink: MediaSink) -> None:
        self.configuration = ""
        self._library = library
        self._socket = socket
        self._sink = sink
        self._dominant: int | None = None
        self._closed = False
        self._handlers: list[tuple[str, Callable[[Any, Any], None]]] = [
            ("AudioMediaReceived", self._on_audio),
            ("AudioSendStatusChanged", self._on_send_status),
            ("DominantSpeakerChanged", self._on_dominant_speaker),
            ("MediaStreamFailure", self._on_failure),
        ]
        self._active = library._media.MediaSendStatus.Active
        for event, handler in self._handlers:
            binding = getattr(socket, event)
            binding += handler
            # `binding += handler` subscribed: pythonnet's EventBinding adds the handler in __iadd__.

    # --- the library's threads ---------------------------------------------------------------------------

    def _on_audio(self, sender: Any, args: Any) -> None:
        began = time.perf_counter_ns()
        sink = self._sink
        frames: list[AudioFrame] | None = None
        buffer = None
        try:
            buffer = args.Buffer
            timestamp = int(buffer.Timestamp)
            unmixed = buffer.UnmixedAudioBuffers
            if unmixed is not None:  # meetings, ReceiveUnmixedMeetingAudio: one buffer per active speaker, up to four
                frames = [AudioFrame(int(part.ActiveSpeakerId), timestamp, _copy(part.Data, part.Length))
                          for part in unmixed]
            elif buffer.IsSilence:
                frames = []
            else:  # mixed audio (a 1:1 call): one frame, labelled with who is speaking
                frames = [AudioFrame(self._speaker(buffer.ActiveSpeakers), timestamp,
                                     _copy(buffer.Data, buffer.Length))]
        except Exception as exc:
            sink.handler_error("reading the buffer", exc)
        finally:
            if buffer is not None:  # at once, copied or not: the library wants every buffer back
                try:
                    buffer.Dispose()
                except Exception as exc:
                    sink.handler_error("disposing the buffer", exc)
        if frames is not None:
            try:
                sink.deliver(frames)
            except Exception as exc:
                sink.handler_error("queueing the frames", exc)
        sink.handled(time.perf_counter_ns() - began)

    def _speaker(self, active: Any) -> int:
        """Mixed audio goes to the first active speaker, else the dominant speaker, else MSI 0 (unknown)."""
        if active is not None and len(active) > 0:
            return int(active[0])
        return self._dominant if self._dominant is not None else 0

    def _on_dominant_speaker(self, sender: Any, args: Any) -> None:
        try:
            msi = int(args.CurrentDominantSpeaker)
            self._dominant = None if msi == NO_SPEAKER else msi
        except Exception as exc:
            self._sink.handler_error("the dominant speaker", exc)

    def _on_send_status(self, sender: Any, args: Any) -> None:
        try:
            self._sink.send_status(bool(args.MediaSendStatus == self._active))
        except Exception as exc:
            self._sink.handler_error("the send status", exc)

    def _on_failure(self, sender: Any, args: Any) -> None:
        try:
            self._sink.failed("MediaStreamFailure")
        except Exception as exc:
            self._sink.handler_error("the stream failure", exc)

    # --- the event loop and its worker threads ---------------------------------------------------------

    def send(self, pcm: bytes) -> None:
        if self._closed:
            return
        buffer = self._library.send_buffer(pcm)
        try:
            self._socket.Send(buffer)  # the library disposes the buffer (freeing its data) when it is done with it
        except Exception as exc:
            buffer.Dispose()
            raise MediaLibraryError(f"AudioSocket.Send failed: {describe(exc)}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for event, handler in self._handlers:
            with contextlib.suppress(Exception):
                binding = getattr(self._socket, event)
                binding -= handler
        self._socket.Dispose()
