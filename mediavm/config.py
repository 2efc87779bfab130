"""The media worker's settings: the app's (calling/config.py, without flows) and the worker's own.

Read and checked at once, like the app's: every problem is named in one ConfigError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from calling.config import ConfigError, Settings, is_loopback_url

EngineKind = Literal["loopback", "windows"]
ENGINES: tuple[EngineKind, ...] = ("loopback", "windows")


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
