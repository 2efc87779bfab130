"""Durable entities as the Durable extension (v2.x) runs them for an out-of-process (Python) worker.

Every JSON shape here follows azure-functions-durable-extension v2.13 (github.com/Azure/
azure-functions-durable-extension, `src/WebJobs.Extensions.DurableTask/`) field for field:

- An entity instance is the scheduler id `@<name>@<key>` (`EntityScheduler/EntityId.cs`): the name lower-cased
  (`ToLowerInvariant`), the key as given and case-sensitive; the key is everything after the second `@`.
- An operation travels as an `EventRaised` named `op` whose input is a `RequestMessage`
  (`EntityScheduler/RequestMessage.cs`): `op`, `signal` (only when true), `input` (the operation input as JSON
  text, omitted when there is none), `id` (a GUID), `parent` / `parentExecution` (the calling orchestration,
  omitted for clients), and `Timestamp` / `Predecessor` (`MessageSorter.LabelOutgoingMessage`; a client sends
  neither label, so both are `DateTime` defaults).
- An orchestration's call or signal goes through `DurableOrchestrationContext.CallDurableTaskFunctionAsync`
  (`ContextImplementations/DurableOrchestrationContext.cs`): `SendEvent` records `EventSent` with the next
  sequence number, `InstanceId` the scheduler id, `Name` `op` and the request as `Input`; the request id is
  `NewGuid()`, a name-based (v5) UUID of `<instanceId>_<CurrentUtcDateTime:o>_<counter>`. A call then waits for
  the external event named after that id (`WaitForEntityResponse`).
- The worker gets one batch per invocation (`Bindings/EntityTriggerAttributeBindingProvider.cs`,
  `EntityContextToString`): `{"self": {"name", "key"}, "exists", "state", "batch": [{"name", "input",
  "isSignal"}]}`, and answers `TaskEntityShim.OutOfProcResult` (`Listener/TaskEntityShim.cs`): `entityExists`,
  `entityState`, `results` (one per operation: `result`, `isError`, `duration`) and `signals` (`target`,
  `name`, `input`). `ExecuteOutOfProcBatch` stores state and existence as returned, and answers each call with
  a `ResponseMessage` (`EntityScheduler/ResponseMessage.cs`): `{"result": ...}`, plus `"exceptionType":
  "Error"` when the operation failed. That arrives at the caller as `EventRaised` named after the request id.
- azure-functions-durable 1.7.0 reads exactly this: `TaskOrchestrationExecutor` moves a `CallEntityAction`
  task from the `EventSent`'s `EventId` to the `id` in its input, and `ResponseMessage.from_dict` turns a
  response with `exceptionType` into an exception thrown into the orchestrator.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devhost.durable import payloads

#: The extension's batch limit on a Consumption plan (AzureStorageDurabilityProviderFactory: 50, else 5000).
MAX_BATCH = 50
#: Name of the EventRaised that carries a request to an entity (EntityMessageEventNames.RequestMessageEventName).
REQUEST_EVENT = "op"
#: The namespace of DurableOrchestrationContext.NewGuid (GuidManager.UrlNamespaceValue).
GUID_NAMESPACE = uuid.UUID("9e952959-5e33-4daf-827f-2fa12937b875")
#: EntityMessageReorderWindowInMinutes: how long an orchestration remembers what it last sent to an entity.
REORDER_WINDOW = timedelta(minutes=30)

_TICKS_PER_SECOND = 10_000_000
_YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)
#: `default(DateTime)` as Newtonsoft writes it (DateTimeKind.Unspecified: no zone designator).
NO_TIME = "0001-01-01T00:00:00"


class InvalidResult(ValueError):
    """The worker's answer is not an OutOfProcResult for this batch (the extension aborts and retries it)."""


def scheduler_id(name: str, key: str) -> str:
    return f"@{name.lower()}@{key}"


def parse_scheduler_id(text: str) -> tuple[str, str]:
    """(name, key) of `@name@key`, as EntityId.GetEntityIdFromSchedulerId reads it."""
    position = text.find("@", 1)
    if not text.startswith("@") or position < 0:
        raise ValueError(f"'{text}' is not an entity instance id (@name@key)")
    name = text[1:position]
    if not name:
        raise ValueError("Invalid entity id: entity name must not be a null or empty string.")
    return name.lower(), text[position + 1:]


def is_entity(instance_id: str) -> bool:
    return instance_id.startswith("@")


def invalid_key(key: str) -> bool:
    """DurableClient refuses keys with /, \\, #, ? or control characters."""
    return any(c in "/\\#?" or ord(c) < 32 or 127 <= ord(c) < 160 for c in key)


# ------------------------------------------------------------------------------------------- times and ids

def ticks(at: datetime) -> int:
    """A UTC instant as .NET ticks (100 ns since 0001-01-01)."""
    delta = at.astimezone(UTC) - _YEAR_ONE
    return (delta.days * 86400 + delta.seconds) * _TICKS_PER_SECOND + delta.microseconds * 10


def net_time(value: int, *, utc: bool = True) -> str:
    """Ticks as Newtonsoft writes a DateTime (`yyyy-MM-ddTHH:mm:ss.FFFFFFFK`)."""
    seconds, fraction = divmod(value, _TICKS_PER_SECOND)
    at = _YEAR_ONE + timedelta(seconds=seconds)
    text = f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}"
    digits = f"{fraction:07d}".rstrip("0")
    return text + (f".{digits}" if digits else "") + ("Z" if utc else "")


def round_trip(at: datetime) -> str:
    """DateTime.ToString("o") of a UTC instant: always seven fraction digits."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S") + f".{at.microsecond * 10:07d}Z"


def request_guid(instance_id: str, now: datetime, counter: int) -> str:
    """DurableOrchestrationContext.NewGuid: deterministic, so a replay produces the same request id."""
    return str(uuid.uuid5(GUID_NAMESPACE, f"{instance_id}_{round_trip(now)}_{counter}"))


def label(sends: dict[str, list[Any]], destination: str, now: datetime) -> tuple[str, str]:
    """(Timestamp, Predecessor) of MessageSorter.LabelOutgoingMessage; `sends` is updated in place.

    `sends` maps a destination to [ticks, utc] of the last message sent there. Timestamps to one destination
    are kept strictly increasing (a tick apart; .NET's `new DateTime(ticks)` then loses the UTC kind).
    """
    current, utc = ticks(now), True
    horizon = ticks(now - REORDER_WINDOW)
    for target in [t for t, (at, _) in sends.items() if at < horizon]:
        del sends[target]
    predecessor = NO_TIME
    if destination.casefold() in sends:
        last, last_utc = sends[destination.casefold()]
        predecessor = net_time(int(last), utc=bool(last_utc))
        if current <= int(last):
            current, utc = int(last) + 1, False
    sends[destination.casefold()] = [current, utc]
    return net_time(current, utc=utc), predecessor


# ---------------------------------------------------------------------------------------------- requests

def request(operation: str, *, signal: bool, input_text: str | None, request_id: str, parent: str | None = None,
            parent_execution: str | None = None, timestamp: str = NO_TIME, predecessor: str = NO_TIME) -> str:
    """A RequestMessage as Newtonsoft serialises it (declaration order; defaults omitted where ignored)."""
    message: dict[str, Any] = {"op": operation}
    if signal:
        message["signal"] = True
    if input_text is not None:
        message["input"] = input_text
    message["id"] = request_id
    if parent is not None:
        message["parent"] = parent
    if parent_execution is not None:
        message["parentExecution"] = parent_execution
    message["Timestamp"] = timestamp
    message["Predecessor"] = predecessor
    return payloads.text_of(message)


def action_input(value: Any) -> str | None:
    """RequestMessage.SetInput of an orchestrator action's `input` (the SDK's JSON text, as a JSON string)."""
    return None if value is None else payloads.text_of(value)


# ------------------------------------------------------------------------------------------------ batches

@dataclass(frozen=True)
class Operation:
    """One queued request: the message's sequence number and the RequestMessage."""

    seq: int
    request: dict[str, Any]

    @property
    def is_signal(self) -> bool:
        return bool(self.request.get("signal"))


def batch_request(name: str, key: str, exists: bool, state: str | None, operations: list[Operation]) -> str:
    """EntityContextToString: JObject.ToString(), which Newtonsoft indents."""
    return json.dumps({
        "self": {"name": name, "key": key},
        "exists": exists,
        "state": state,
        "batch": [{"name": o.request.get("op"), "input": o.request.get("input"), "isSignal": o.is_signal}
                  for o in operations],
    }, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class BatchResult:
    exists: bool
    state: str | None
    results: list[dict[str, Any]]
    signals: list[dict[str, Any]]


def parse_result(value: Any, count: int) -> BatchResult:
    """The worker's return value (JSON text or an object) as OutOfProcResult; InvalidResult when it is not."""
    try:
        raw = json.loads(value) if isinstance(value, (str, bytes)) else value
    except ValueError as exc:
        raise InvalidResult(f"Out of proc orchestrators must return a valid JSON schema: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidResult("Out of proc orchestrators must return a valid JSON schema.")
    results = raw.get("results")
    if not isinstance(results, list) or len(results) != count or not all(isinstance(r, dict) for r in results):
        raise InvalidResult(f"the entity returned {len(results) if isinstance(results, list) else 'no'} results "
                            f"for a batch of {count} operations")
    state = raw.get("entityState")
    signals = raw.get("signals") or []
    if (state is not None and not isinstance(state, str)) or not isinstance(signals, list):
        raise InvalidResult("Out of proc orchestrators must return a valid JSON schema.")
    return BatchResult(exists=bool(raw.get("entityExists")), state=state, results=results, signals=signals)


def response(result: dict[str, Any]) -> str:
    """The ResponseMessage ExecuteOutOfProcBatch sends a caller for one operation result."""
    message: dict[str, Any] = {"result": result.get("result")}
    if result.get("isError"):
        message["exceptionType"] = "Error"
    return payloads.text_of(message)
