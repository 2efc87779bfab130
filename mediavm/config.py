"""The media worker's settings: the app's (calling/config.py, without flows) and the worker's own.

Read and checked at once, like the app's: every problem is named in one ConfigError.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from calling.config import ConfigError, Settings, is_loopback_url

EngineKind = Literal["loopback", "windows"]
ENGINES: tuple[EngineKind, ...] = ("loopback", "windows")
DotNetRuntime = Literal["coreclr", "mono"]


@dataclass(frozen=True)
class WindowsMediaSettings:
    """What the Windows engine (mediavm/windows/) needs to initialise Microsoft's media platform: its
    MediaPlatformSettings and MediaPlatformInstanceSettings, and where the library and .NET are."""

    #: MediaPlatformSettings.ApplicationId: the bot's app id (BOT_APP_ID).
    application_id: str
    #: MediaPlatformInstanceSettings.CertificateThumbprint: a certificate for `service_fqdn` in LocalMachine\My.
    certificate_thumbprint: str
    #: MediaPlatformInstanceSettings.InstancePublicPort: this instance's public media control port (its NAT port).
    public_port: int
    #: MediaPlatformInstanceSettings.InstancePublicIPAddress.
    public_ip: str
    #: MediaPlatformInstanceSettings.ServiceFqdn: this instance's public DNS name (the certificate's name).
    service_fqdn: str
    #: The folder holding Microsoft.Skype.Bots.Media.dll and what it needs (the NuGet packages, published).
    library_dir: str
    #: MediaPlatformInstanceSettings.InstanceInternalPort: the media control port on the VM (TCP 8445 in the infra).
    internal_port: int = 8445
    #: The .NET runtime pythonnet hosts: coreclr (.NET 8 on the VM), or mono (the tests' stand-in on Linux only).
    runtime: DotNetRuntime = "coreclr"
    #: The .NET version (major.minor) of the runtime config coreclr starts with.
    dotnet_version: str = "8.0"

    @classmethod
    def from_env(cls, env: Mapping[str, str], application_id: str) -> WindowsMediaSettings:
        """The Windows engine's settings, or ConfigError naming every problem. Read only for MEDIA_ENGINE=windows
        (by `python -m mediavm`: only the service builds that engine)."""
        problems: list[str] = []

        def text(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        def port(name: str, default: int | None, why: str) -> int:
            raw = text(name)
            if not raw:
                if default is None:
                    problems.append(f"MEDIA_ENGINE=windows needs {name}: {why}")
                return default or 0
            if not raw.isdigit() or not 1 <= int(raw) <= 65535:
                problems.append(f"{name} must be a port number (1-65535), got {raw!r}")
                return 0
            return int(raw)

        # Windows shows thumbprints in groups, and a copy from the certificate dialog can bring an invisible U+200E.
        raw_thumbprint = text("MEDIA_CERTIFICATE_THUMBPRINT")
        thumbprint = re.sub(r"[\s:\u200e\u200f]", "", raw_thumbprint).upper()
        if not thumbprint:
            problems.append("MEDIA_ENGINE=windows needs MEDIA_CERTIFICATE_THUMBPRINT: the SHA-1 thumbprint of the "
                            "media certificate for MEDIA_SERVICE_FQDN in the LocalMachine\\My store")
        elif not re.fullmatch(r"[0-9A-F]{40}", thumbprint):
            problems.append("MEDIA_CERTIFICATE_THUMBPRINT must be 40 hex digits (a SHA-1 thumbprint), "
                            f"got {raw_thumbprint!r}")
        public_port = port("MEDIA_INSTANCE_PUBLIC_PORT", None, "this instance's public media control port (its "
                           "inbound NAT port to MEDIA_INSTANCE_INTERNAL_PORT)")
        internal_port = port("MEDIA_INSTANCE_INTERNAL_PORT", 8445, "")
        public_ip = text("MEDIA_INSTANCE_PUBLIC_IP")
        if not public_ip:
            problems.append("MEDIA_ENGINE=windows needs MEDIA_INSTANCE_PUBLIC_IP: this instance's public IP address")
        else:
            try:
                ipaddress.ip_address(public_ip)
            except ValueError:
                problems.append(f"MEDIA_INSTANCE_PUBLIC_IP must be an IP address, got {public_ip!r}")
        fqdn = text("MEDIA_SERVICE_FQDN").rstrip(".")
        if not fqdn:
            problems.append("MEDIA_ENGINE=windows needs MEDIA_SERVICE_FQDN: this instance's public DNS name, the "
                            "media certificate's name")
        elif not _HOSTNAME.fullmatch(fqdn) or fqdn.replace(".", "").isdigit():
            problems.append(f"MEDIA_SERVICE_FQDN must be a DNS name like media-0.example.com, got {fqdn!r}")
        library_dir = text("MEDIA_LIBRARY_DIR")
        if not library_dir:
            problems.append("MEDIA_ENGINE=windows needs MEDIA_LIBRARY_DIR: the folder with "
                            "Microsoft.Skype.Bots.Media.dll and its dependencies (docs/media.md, The Windows engine)")
        runtime = text("MEDIA_DOTNET_RUNTIME", "coreclr")
        if runtime not in ("coreclr", "mono"):
            problems.append(f"MEDIA_DOTNET_RUNTIME must be coreclr (or mono, for the tests' stand-in), got {runtime!r}")
        version = text("MEDIA_DOTNET_VERSION", "8.0")
        if not re.fullmatch(r"\d+\.\d+", version):
            problems.append(f"MEDIA_DOTNET_VERSION must be major.minor like 8.0, got {version!r}")
        if problems:
            raise ConfigError(problems)
        return cls(application_id=application_id, certificate_thumbprint=thumbprint, public_port=public_port,
                   public_ip=public_ip, service_fqdn=fqdn, library_dir=library_dir, internal_port=internal_port,
                   runtime="mono" if runtime == "mono" else "coreclr", dotnet_version=version)


_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+")


@dataclass(frozen=True)
class WorkerSettings:
    app: Settings
    #: This instance's own public base URL: its calls' notifications come to {public_url}/api/calls.
    public_url: str
    #: Calls this worker takes at once; it takes no hand-off while full.
    capacity: int = 20
    #: Where its HTTP endpoint listens (the VM maps the per-instance public port to it).
    listen_host: str = "0.0.0.0"  # noqa: S104 (the VM's NSG and NAT decide who reaches it)
    listen_port: int = 9441
    engine: EngineKind = "loopback"
    #: On shutdown, how long live calls may go on before the worker ends them (recordings kept as partial).
    drain_seconds: float = 900.0
    #: The most participants one recording answer takes (participantCapacity); more go to another worker.
    participant_capacity: int = 10
    #: The Windows engine's settings; read (and required) only with MEDIA_ENGINE=windows.
    windows: WindowsMediaSettings | None = None

    @property
    def callback_uri(self) -> str:
        return self.public_url + "/api/calls"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        problems: list[str] = []
        try:
            app = Settings.from_env(env, flows=False)
        except ConfigError as exc:
            problems.extend(exc.problems)
            app = None

        def text(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        def number(name: str, default: float, low: float, high: float, *, whole: bool = False) -> float:
            raw = text(name)
            if not raw:
                return default
            try:
                value = int(raw) if whole else float(raw)
            except ValueError:
                problems.append(f"{name} must be a {'whole ' if whole else ''}number, got {raw!r}")
                return default
            if not low <= value <= high:
                problems.append(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
            return value

        public = text("MEDIA_WORKER_PUBLIC_URL").rstrip("/")
        parts = urlsplit(public)
        if not public:
            problems.append("MEDIA_WORKER_PUBLIC_URL is not set (this worker's public https base URL: Graph posts "
                            "its calls' notifications there)")
        elif parts.scheme not in ("https", "http") or not parts.netloc:
            problems.append(f"MEDIA_WORKER_PUBLIC_URL must be an absolute https URL, got {public!r}")
        elif parts.scheme == "http" and not is_loopback_url(public):
            problems.append(f"MEDIA_WORKER_PUBLIC_URL must use https (plain http only on loopback), got {public!r}")
        engine = text("MEDIA_ENGINE", "loopback")
        if engine not in ENGINES:
            problems.append(f"MEDIA_ENGINE must be one of {', '.join(ENGINES)}, got {engine!r}")
        listen = text("MEDIA_WORKER_LISTEN", "0.0.0.0:9441")
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            problems.append(f"MEDIA_WORKER_LISTEN must be host:port, got {listen!r}")
        capacity = int(number("MEDIA_WORKER_CAPACITY", 20, 1, 1000, whole=True))
        drain = number("MEDIA_WORKER_DRAIN_SECONDS", 900.0, 0, 86_400)
        joiners = int(number("MEDIA_PARTICIPANT_CAPACITY", 10, 1, 200, whole=True))
        if problems or app is None:
            raise ConfigError(problems)
        kind: EngineKind = "windows" if engine == "windows" else "loopback"
        return cls(app, public, capacity, host.strip("[]"), int(port), kind, drain, joiners)

