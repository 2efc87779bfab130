"""A local host for function_app.py: HTTP triggers, Durable orchestrations and entities without Core Tools."""

from devhost.durable.store import MemoryStore, SqliteStore
from devhost.host import DevHost, PortInUse

__all__ = ["DevHost", "MemoryStore", "PortInUse", "SqliteStore"]
