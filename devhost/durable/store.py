"""Where orchestration state lives: instances, history per execution, entities, and each queue of messages.

The engine changes state one episode at a time and hands every change of that episode to `commit` at once,
so a SQLite file never holds half an episode: a host that stops (or crashes) between episodes restarts from
a consistent state. An entity batch is committed the same way: its new state, the requests it consumed and
the responses it sends, in one transaction. Entities share the message queue, keyed by their scheduler id
(`@name@key`, which no orchestration id may start with). `MemoryStore` keeps the same model in dictionaries
for hosts that need no file.
"""

from __future__ import annotations

import copy
import itertools
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from devhost.durable.history import Event

Message = dict[str, Any]

#: Runtime statuses after which an instance takes no more events.
TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


@dataclass
class InstanceRecord:
    instance_id: str
    name: str
    execution_id: str
    status: str  # OrchestrationRuntimeStatus name: Pending, Running, Completed, ...
    input: str | None  # payloads as stored JSON text (see payloads.py)
    created_time: datetime
    last_updated_time: datetime
    output: str | None = None
    custom_status: str | None = None
    parent: dict[str, Any] | None = None  # DurableTask.Core's ParentInstance
    state: dict[str, Any] = field(default_factory=dict)  # the engine's bookkeeping for the current execution


@dataclass
class EntityRecord:
    """A Durable entity's persisted state (the extension's SchedulerState: `exists` and `state`)."""

    entity_id: str  # the scheduler id, @name@key
    name: str  # lower-cased, as EntityId keeps it
    key: str
    exists: bool
    state: str | None  # the entity state as the worker returned it: JSON text
    last_operation_time: datetime


@dataclass
class Batch:
    """Everything one step changes, applied atomically."""

    instances: list[InstanceRecord] = field(default_factory=list)
    history: list[tuple[str, str, list[Event]]] = field(default_factory=list)  # (instance, execution, events)
    consumed: list[int] = field(default_factory=list)  # message sequence numbers
    messages: list[tuple[str, Message, int]] = field(default_factory=list)  # (instance, message, priority)
    entities: list[EntityRecord] = field(default_factory=list)


class Store(Protocol):
    def get(self, instance_id: str) -> InstanceRecord | None: ...

    def instances(self) -> list[InstanceRecord]: ...

    def history(self, instance_id: str, execution_id: str) -> list[Event]: ...

    def messages(self, instance_id: str) -> list[tuple[int, Message]]:
        """Queued messages of one instance, lowest priority number first, then in arrival order."""

    def queued_instances(self) -> list[str]:
        """Every instance (or entity) with queued messages."""

    def entity(self, entity_id: str) -> EntityRecord | None: ...

    def entities(self) -> list[EntityRecord]: ...

    def commit(self, batch: Batch) -> None: ...

    def delete(self, instance_id: str) -> bool:
        """Remove an instance with its histories and queue; False when there was none."""

    def close(self) -> None: ...


class MemoryStore:
    """Dictionaries; records are copied in and out so callers never share mutable state with the store."""

    def __init__(self) -> None:
        self._instances: dict[str, InstanceRecord] = {}
        self._history: dict[tuple[str, str], list[Event]] = {}
        self._messages: dict[int, tuple[str, Message, int]] = {}
        self._entities: dict[str, EntityRecord] = {}
        self._seq = itertools.count(1)

    def get(self, instance_id: str) -> InstanceRecord | None:
        record = self._instances.get(instance_id)
        return copy.deepcopy(record) if record else None

    def instances(self) -> list[InstanceRecord]:
        return [copy.deepcopy(r) for r in self._instances.values()]

    def history(self, instance_id: str, execution_id: str) -> list[Event]:
        return copy.deepcopy(self._history.get((instance_id, execution_id), []))

    def messages(self, instance_id: str) -> list[tuple[int, Message]]:
        mine = [(priority, seq, message) for seq, (owner, message, priority) in self._messages.items()
                if owner == instance_id]
        return [(seq, copy.deepcopy(message)) for _, seq, message in sorted(mine, key=lambda m: (m[0], m[1]))]

    def queued_instances(self) -> list[str]:
        return sorted({owner for owner, _, _ in self._messages.values()})

    def entity(self, entity_id: str) -> EntityRecord | None:
        record = self._entities.get(entity_id)
        return copy.deepcopy(record) if record else None

    def entities(self) -> list[EntityRecord]:
        return [copy.deepcopy(r) for r in sorted(self._entities.values(), key=lambda r: r.entity_id)]

    def commit(self, batch: Batch) -> None:
        for record in batch.instances:
            self._instances[record.instance_id] = copy.deepcopy(record)
        for entity in batch.entities:
            self._entities[entity.entity_id] = copy.deepcopy(entity)
        for instance_id, execution_id, events in batch.history:
            self._history.setdefault((instance_id, execution_id), []).extend(copy.deepcopy(events))
        for seq in batch.consumed:
            self._messages.pop(seq, None)
        for instance_id, message, priority in batch.messages:
            self._messages[next(self._seq)] = (instance_id, copy.deepcopy(message), priority)

    def delete(self, instance_id: str) -> bool:
        existed = self._instances.pop(instance_id, None) is not None
        for key in [k for k in self._history if k[0] == instance_id]:
            del self._history[key]
        for seq in [s for s, (owner, _, _) in self._messages.items() if owner == instance_id]:
            del self._messages[seq]
        return existed

    def close(self) -> None:
        """Nothing to release: the histories live in this object."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY, name TEXT NOT NULL, execution_id TEXT NOT NULL, status TEXT NOT NULL,
    input TEXT, output TEXT, custom_status TEXT, created_time TEXT NOT NULL, last_updated_time TEXT NOT NULL,
    parent TEXT, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, execution_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, execution_id, seq));
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, priority INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages (instance_id, priority, seq);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY, name TEXT NOT NULL, entity_key TEXT NOT NULL, entity_exists INTEGER NOT NULL,
    state TEXT, last_operation_time TEXT NOT NULL);
"""


class SqliteStore:
    """The embedded default: one SQLite file (or ":memory:"), one transaction per commit."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)  # one loop uses it
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self._db.executescript(_SCHEMA)

    @staticmethod
    def _record(row: sqlite3.Row) -> InstanceRecord:
        return InstanceRecord(
            instance_id=row["instance_id"], name=row["name"], execution_id=row["execution_id"], status=row["status"],
            input=row["input"], output=row["output"], custom_status=row["custom_status"],
            created_time=datetime.fromisoformat(row["created_time"]),
            last_updated_time=datetime.fromisoformat(row["last_updated_time"]),
            parent=json.loads(row["parent"]) if row["parent"] else None, state=json.loads(row["state"]))

    def get(self, instance_id: str) -> InstanceRecord | None:
        row = self._db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        return self._record(row) if row else None

    def instances(self) -> list[InstanceRecord]:
        return [self._record(r) for r in self._db.execute("SELECT * FROM instances ORDER BY created_time")]

    def history(self, instance_id: str, execution_id: str) -> list[Event]:
        rows = self._db.execute("SELECT event FROM history WHERE instance_id = ? AND execution_id = ? ORDER BY seq",
                                (instance_id, execution_id))
        return [json.loads(r["event"]) for r in rows]

    def messages(self, instance_id: str) -> list[tuple[int, Message]]:
        rows = self._db.execute("SELECT seq, body FROM messages WHERE instance_id = ? ORDER BY priority, seq",
                                (instance_id,))
        return [(int(r["seq"]), json.loads(r["body"])) for r in rows]

    def queued_instances(self) -> list[str]:
        return [r["instance_id"] for r in self._db.execute("SELECT DISTINCT instance_id FROM messages ORDER BY 1")]

    @staticmethod
    def _entity(row: sqlite3.Row) -> EntityRecord:
        return EntityRecord(entity_id=row["entity_id"], name=row["name"], key=row["entity_key"],
                            exists=bool(row["entity_exists"]), state=row["state"],
                            last_operation_time=datetime.fromisoformat(row["last_operation_time"]))

    def entity(self, entity_id: str) -> EntityRecord | None:
        row = self._db.execute("SELECT * FROM entities WHERE entity_id = ?", (entity_id,)).fetchone()
        return self._entity(row) if row else None

    def entities(self) -> list[EntityRecord]:
        return [self._entity(r) for r in self._db.execute("SELECT * FROM entities ORDER BY entity_id")]

    def commit(self, batch: Batch) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for r in batch.instances:
                db.execute(
                    "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.instance_id, r.name, r.execution_id, r.status, r.input, r.output, r.custom_status,
                     r.created_time.isoformat(), r.last_updated_time.isoformat(),
                     json.dumps(r.parent) if r.parent else None, json.dumps(r.state)))
            for instance_id, execution_id, events in batch.history:
                (last,) = db.execute("SELECT COALESCE(MAX(seq), -1) FROM history WHERE instance_id = ? "
                                     "AND execution_id = ?", (instance_id, execution_id)).fetchone()
                db.executemany("INSERT INTO history VALUES (?, ?, ?, ?)",
                               [(instance_id, execution_id, last + 1 + i, json.dumps(e)) for i, e in enumerate(events)])
            db.executemany("INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?, ?)",
                           [(e.entity_id, e.name, e.key, int(e.exists), e.state, e.last_operation_time.isoformat())
                            for e in batch.entities])
            db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in batch.consumed])
            db.executemany("INSERT INTO messages (instance_id, priority, body) VALUES (?, ?, ?)",
                           [(i, p, json.dumps(m)) for i, m, p in batch.messages])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def delete(self, instance_id: str) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount
            db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
            db.execute("DELETE FROM messages WHERE instance_id = ?", (instance_id,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return deleted > 0

    def close(self) -> None:
        self._db.close()


def open_store(store: Store | str | Path | None) -> Store:
    """`None` is an in-memory SQLite database; a path is a SQLite file (":memory:" for none)."""
    if store is None:
        return SqliteStore(":memory:")
    if isinstance(store, (str, Path)):
        return SqliteStore(store)
    return store
