"""The orchestration service: what the Durable extension and DurableTask.Core do around the SDK's replay.

Each instance has a queue of messages (start, events, activity and timer results, terminate ...). One task per
instance drains it in order, one message per episode: append OrchestratorStarted and the new event, replay the
orchestrator over the whole history (replay.py), check the actions it returns against those already
recorded, and record what is new: TaskScheduled / TimerCreated / SubOrchestrationInstanceCreated with
sequence numbers, completion, custom status. Activities run as tasks of their own; timers wait on the clock.
Every piece of work holds `clock.busy()`, so a virtual clock never moves while something is in flight.

Durable entities (entities.py) have a queue too, keyed by their scheduler id `@name@key`. One task per entity
takes every request queued (up to the extension's batch size) in arrival order, invokes the entity function
once for the batch as the worker would, and commits the new state, the consumed requests and the responses
to calling orchestrations together: one batch at a time per entity, at least once across a host restart.

Sequence numbers follow DurableTask.Core: each scheduled activity, timer, sub-orchestration or entity message
takes the next one in the order the shim meets them, and the retry interceptor takes one for each retry timer
and each new attempt, when the failure or the timer is processed. Delivering one event per episode keeps those
two kinds of numbering from interleaving in ways the SDK could not reproduce.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from azure.durable_functions.models.history import HistoryEventType
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter, EnitityTriggerConverter

from devhost import invocation
from devhost.durable import actions, entities, history, payloads, replay, retries
from devhost.durable.step import (
    EVENT_PRIORITY,
    START_PRIORITY,
    Step,
    entity_message,
    fresh_state,
    start_message,
    unknown_activity,
    unknown_entity,
    unknown_orchestrator,
)
from devhost.durable.store import TERMINAL, Batch, EntityRecord, InstanceRecord, Message, Store
from devhost.functions import AppIndex
from simulator.clock import Clock, TimerHandle

log = logging.getLogger("devhost.durable")

#: Statuses DurableTask.Core refuses to overwrite when overridableExistingInstanceStates is NonRunningStates.
RUNNING = frozenset({"Running", "Pending", "ContinuedAsNew", "Suspended"})
#: Seconds before an aborted entity batch (the worker's answer was unusable) is tried again. DurableTask
#: abandons the work item and hands it out again after a back-end-specific backoff; this is an approximation.
#: The entity's queue waits until then: new requests do not start it early.
ENTITY_RETRY_SECONDS = 10.0


class UnknownFunction(ValueError):
    """The extension's ArgumentException for an orchestrator or activity name it does not know."""


class InstanceExists(RuntimeError):
    """DurableTask.Core's OrchestrationAlreadyExistsException (only with NonRunningStates)."""


class Engine:
    """Instances, their queues and the work they set off; shared by the management API and the host."""

    def __init__(self, index: AppIndex, store: Store, clock: Clock, *, replay_check: bool,
                 binding: Callable[[], str], overridable_existing_instance_states: str = "AnyState") -> None:
        self._index = index
        self._store = store
        self._clock = clock
        self._replay_check = replay_check
        self._binding = binding
        self._dedupe_running = overridable_existing_instance_states == "NonRunningStates"
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[tuple[str, str, int], TimerHandle] = {}
        self._entity_retries: dict[str, TimerHandle] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._closing = False

    # ----------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Pick up where a previous host over the same store stopped: rerun, re-arm, redeliver."""
        async with self._clock.busy():
            for record in self._store.instances():
                if record.status not in TERMINAL:
                    self._recover(record)
            for instance_id in self._store.queued_instances():
                self._kick(instance_id)

    async def stop(self) -> None:
        self._closing = True
        for handle in [*self._timers.values(), *self._entity_retries.values()]:
            handle.cancel()
        self._timers.clear()
        self._entity_retries.clear()
        pending = [*self._drains.values(), *self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._drains.clear()
        self._tasks.clear()

    # ------------------------------------------------------------------------------------ client requests

    def get(self, instance_id: str) -> InstanceRecord | None:
        return self._store.get(instance_id)

    def instances(self) -> list[InstanceRecord]:
        return self._store.instances()

    def events(self, instance_id: str) -> list[history.Event]:
        """The current execution's history."""
        record = self._store.get(instance_id)
        return self._store.history(instance_id, record.execution_id) if record else []

    def start_new(self, name: str, instance_id: str | None, input_text: str | None) -> str:
        """Create (or replace) an instance and queue its start, as DurableClient.StartNewAsync does."""
        function = self._index.orchestrator(name)
        if function is None:
            raise UnknownFunction(unknown_orchestrator(name, self._index))
        if not instance_id:
            instance_id = uuid.uuid4().hex
        elif instance_id.startswith("@"):
            raise ValueError("Orchestration instance ids must not start with @.")
        elif any(c in "/\\#?" or ord(c) < 32 for c in instance_id):
            raise ValueError("Orchestration instance ids must not contain /, \\, #, ?, or control characters.")
        existing = self._store.get(instance_id)
        if existing is not None and self._dedupe_running and existing.status in RUNNING:
            raise InstanceExists(f"An Orchestration instance with the status {existing.status} already exists.")
        now = self._clock.now()
        record = InstanceRecord(instance_id=instance_id, name=function.name, execution_id=uuid.uuid4().hex,
                                status="Pending", input=input_text, created_time=now, last_updated_time=now,
                                state=fresh_state())
        self._cancel_timers(instance_id)
        self._store.commit(Batch(instances=[record], messages=[(instance_id, start_message(record, now),
                                                                 START_PRIORITY)]))
        self._kick(instance_id)
        return instance_id

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> bool:
        """Queue an EventRaised for the current execution; False when the instance is missing or finished."""
        record = self._store.get(instance_id)
        if record is None or record.status in TERMINAL:
            return False
        event = history.event_raised(self._clock.now(), name, input_text)
        return self._enqueue(instance_id, {"kind": "event", "execution_id": None, "event": event})

    def control(self, instance_id: str, kind: str, reason: str | None) -> bool:
        """Queue terminate / suspend / resume; False when the instance is missing or finished."""
        record = self._store.get(instance_id)
        if record is None or record.status in TERMINAL:
            return False
        return self._enqueue(instance_id, {"kind": kind, "reason": reason})

    def signal_entity(self, name: str, key: str, operation: str, input_text: str | None) -> None:
        """DurableClient.SignalEntityAsync: queue a signal from a client (no parent, labels left at default)."""
        if entities.invalid_key(key):
            raise ValueError("Entity keys must not contain /, \\, #, ?, or control characters.")
        if self._index.entity(name) is None:
            raise UnknownFunction(unknown_entity(name, self._index))
        text = entities.request(operation, signal=True, input_text=input_text, request_id=str(uuid.uuid4()))
        entity_id = entities.scheduler_id(name, key)
        self._store.commit(Batch(messages=[(entity_id, entity_message(self._clock.now(), text), EVENT_PRIORITY)]))
        self._kick(entity_id)

    def entity(self, name: str, key: str) -> EntityRecord | None:
        """The entity's last committed state (what ReadEntityStateAsync reads: never a batch in progress)."""
        return self._store.entity(entities.scheduler_id(name, key))

    def entity_records(self) -> list[EntityRecord]:
        return self._store.entities()

    def purge(self, instance_id: str) -> bool:
        self._cancel_timers(instance_id)
        self._finished.pop(instance_id, None)
        return self._store.delete(instance_id)

    async def wait(self, instance_id: str, seconds: float) -> InstanceRecord | None:
        """The instance once it is finished, or as it is after `seconds` of wall time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            record = self._store.get(instance_id)
            if record is None or record.status in TERMINAL or loop.time() >= deadline:
                return record
            event = self._finished.setdefault(instance_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), deadline - loop.time())
            except TimeoutError:
                return self._store.get(instance_id)

    # ----------------------------------------------------------------------------------------- plumbing

    def _enqueue(self, instance_id: str, message: Message, priority: int = EVENT_PRIORITY) -> bool:
        if self._store.get(instance_id) is None:
            log.debug("dropping a message for %s: no such instance", instance_id)
            return False
        self._store.commit(Batch(messages=[(instance_id, message, priority)]))
        self._kick(instance_id)
        return True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kick(self, instance_id: str) -> None:
        if self._closing or instance_id in self._entity_retries:
            return  # an entity waiting to retry an aborted batch runs its queue when the retry is due
        task = self._drains.get(instance_id)
        if task is None or task.done():
            work = self._drain_entity(instance_id) if entities.is_entity(instance_id) else self._drain(instance_id)
            self._drains[instance_id] = asyncio.get_running_loop().create_task(work)

    async def _drain(self, instance_id: str) -> None:
        """Process the instance's queue in order until nothing in it can be processed now."""
        async with self._clock.busy():
            try:
                while not self._closing:
                    progressed = False
                    for seq, message in self._store.messages(instance_id):
                        try:
                            done = self._process(instance_id, seq, message)
                        except Exception:
                            log.exception("devhost failed to process a %s message for %s; dropping it",
                                          message.get("kind"), instance_id)
                            self._store.commit(Batch(consumed=[seq]))
                            done = True
                        if done:
                            progressed = True
                            break
                    if not progressed:
                        break
                    await asyncio.sleep(0)
            finally:
                if self._drains.get(instance_id) is asyncio.current_task():
                    del self._drains[instance_id]

    def _process(self, instance_id: str, seq: int, message: Message) -> bool:
        """Handle one message; False leaves it queued (a suspended instance holds its events)."""
        record = self._store.get(instance_id)
        kind = message.get("kind")
        if record is None:
            self._store.commit(Batch(consumed=[seq]))
            return True
        if kind == "start":
            if message["event"]["OrchestrationInstance"]["ExecutionId"] != record.execution_id:
                self._store.commit(Batch(consumed=[seq]))  # superseded by a later start
            else:
                record.status = "Running"
                self._episode(record, seq, [message["event"]])
            return True
        target = message.get("execution_id")
        if record.status in TERMINAL or (target is not None and target != record.execution_id):
            log.debug("dropping a %s message for %s: the execution it was meant for has ended", kind, instance_id)
            self._store.commit(Batch(consumed=[seq]))
            return True
        if record.status == "Suspended" and kind not in ("resume", "terminate"):
            return False
        if kind == "terminate":
            self._terminate(record, seq, message.get("reason"))
        elif kind in ("suspend", "resume"):
            self._suspend_or_resume(record, seq, kind, message.get("reason"))
        else:
            self._episode(record, seq, [message["event"]])
        return True

    def _commit(self, step: Step, seq: int, events: list[history.Event]) -> None:
        """Persist an episode, then start its side effects."""
        record, execution_id = step.record, step.execution_id
        record.state = step.state
        record.last_updated_time = step.now
        self._store.commit(Batch(instances=[record, *step.children],
                                 history=[(record.instance_id, execution_id, events)] if events else [],
                                 consumed=[seq], messages=step.messages))
        self._cancel_timers(record.instance_id, execution_id, step.cancel_timers)
        if record.status in TERMINAL or record.execution_id != execution_id:
            self._cancel_timers(record.instance_id, execution_id)
        if record.status in TERMINAL:
            finished = self._finished.pop(record.instance_id, None)
            if finished is not None:
                finished.set()
        for child in step.children:
            self._cancel_timers(child.instance_id)
        for task_id, name, input_text in step.activities:
            self._spawn(self._run_activity(record.instance_id, execution_id, task_id, name, input_text))
        for timer_id, fire_at in step.timers:
            self._arm(record.instance_id, execution_id, timer_id, fire_at)
        for instance_id in {m[0] for m in step.messages}:
            self._kick(instance_id)

    # ------------------------------------------------------------------------------------------ episodes

    def _episode(self, record: InstanceRecord, seq: int, new_events: list[history.Event]) -> None:
        now = self._clock.now()
        for event in new_events:
            if history.kind(event) == HistoryEventType.TIMER_FIRED:
                now = max(now, history.parse_time(event["FireAt"]))  # an episode never starts before its timer
        past = self._store.history(record.instance_id, record.execution_id)
        started = [history.orchestrator_started(now), *new_events]
        step = Step.of(record, now, self._index)
        function = self._index.orchestrator(record.name)
        failure: str | None = None
        state: actions.OrchestratorState | None = None
        sent: tuple[list[history.Event], list[tuple[str, Message, int]]] = ([], [])
        if function is None:
            failure = unknown_orchestrator(record.name, self._index)
        else:
            for event in new_events:
                retries.advance(step, event)
            parent_id = (record.parent or {}).get("OrchestrationInstance", {}).get("InstanceId")
            state = replay.run(function.handle, replay.context_json(
                instance_id=record.instance_id, parent_instance_id=parent_id, events=past + started,
                new_from=len(past)))
            recorded: list[list[Any]] = step.state["scheduled"]
            if state.raw:
                failure = actions.prefix_mismatch(recorded, state.actions, strict=self._replay_check)
            if failure is None:
                if state.error is None:
                    step.cancel_recorded_timers(state.actions[:len(recorded)])
                for action in state.actions[len(recorded):]:
                    failure = step.schedule(action)
                    if failure:
                        break
                if failure is not None or state.error is not None:
                    # The shim replays the actions before it throws, and DurableTask.Core still sends the
                    # messages an orchestration scheduled before it failed.
                    sent = step.entity_sends()
            if failure is None and state.error is None and self._replay_check:
                again = replay.run(function.handle, replay.context_json(
                    instance_id=record.instance_id, parent_instance_id=parent_id,
                    events=past + started + step.scheduling + [history.orchestrator_completed(now)], new_from=None))
                difference = actions.replay_mismatch(state, again)
                if difference:
                    failure = (f"Non-deterministic orchestrator: {difference}. Orchestrator code must give the "
                               "same actions on every replay: use context.current_utc_datetime, context.new_uuid() "
                               "and activities instead of clocks, random numbers, global state or I/O.")
        if state is not None and failure is None and state.has_custom_status and state.custom_status is not None:
            record.custom_status = payloads.text_of(state.custom_status)
        if failure is not None:
            # The extension reports its own refusals (unknown function, nondeterminism) as orchestrator failures.
            log.error("orchestration %s (%s) failed: %s", record.instance_id, record.name, failure)
            step = Step.of(record, now, self._index)
            step.keep_sends(*sent)
            step.complete("Failed", f"Orchestrator function '{record.name}' failed: {failure}", details=failure)
        elif state is not None and state.error is not None:
            message = f"Orchestrator function '{record.name}' failed: {state.error}"
            log.warning("orchestration %s (%s) failed: %s", record.instance_id, record.name, state.error)
            step = Step.of(record, now, self._index)
            step.keep_sends(*sent)
            step.complete("Failed", message, details=state.error)
        elif state is not None and state.is_done:
            if step.continues:
                step.complete("ContinuedAsNew", step.continue_input)
            else:
                step.complete("Completed", None if state.output is None else payloads.text_of(state.output))
        self._commit(step, seq, [*started, *step.scheduling, *step.completion, history.orchestrator_completed(now)])

    def _terminate(self, record: InstanceRecord, seq: int, reason: str | None) -> None:
        now = self._clock.now()
        step = Step.of(record, now, self._index)
        step.complete("Terminated", reason)
        self._commit(step, seq, [history.orchestrator_started(now), history.execution_terminated(now, reason),
                                 *step.completion, history.orchestrator_completed(now)])

    def _suspend_or_resume(self, record: InstanceRecord, seq: int, kind: str, reason: str | None) -> None:
        now = self._clock.now()
        step = Step.of(record, now, self._index)
        if kind == "suspend" and record.status != "Suspended":
            record.status = "Suspended"
            events = [history.execution_suspended(now, reason)]
        elif kind == "resume" and record.status == "Suspended":
            record.status = "Running"
            events = [history.execution_resumed(now, reason)]
        else:
            events = []
        self._commit(step, seq, events)

    # ------------------------------------------------------------------------------------ timers, tasks

    def _arm(self, instance_id: str, execution_id: str, timer_id: int, fire_at: str) -> None:
        key = (instance_id, execution_id, timer_id)
        if self._closing or key in self._timers:
            return

        def fire() -> None:
            self._timers.pop(key, None)
            event = history.timer_fired(self._clock.now(), timer_id, fire_at)
            self._enqueue(instance_id, {"kind": "event", "execution_id": execution_id, "event": event})

        self._timers[key] = self._clock.call_at(history.parse_time(fire_at), fire)

    def _cancel_timers(self, instance_id: str, execution_id: str | None = None,
                       timer_ids: list[int] | None = None) -> None:
        for key in [k for k in self._timers if k[0] == instance_id]:
            if (execution_id is None or key[1] == execution_id) and (timer_ids is None or key[2] in timer_ids):
                self._timers.pop(key).cancel()

    async def _run_activity(self, instance_id: str, execution_id: str, task_id: int, name: str,
                            input_text: str | None) -> None:
        """Invoke the activity as the worker does and queue TaskCompleted / TaskFailed for its orchestration."""
        async with self._clock.busy():
            activity = self._index.activity(name)
            try:
                if activity is None:
                    raise LookupError(unknown_activity(name, self._index))
                value = None if input_text is None else ActivityTriggerConverter.decode(
                    meta.Datum(input_text, "json"), trigger_metadata=None)
                kwargs: dict[str, Any] = {activity.input_param: value}
                kwargs.update({param: self._binding() for param in activity.client_params})
                if activity.wants_context:
                    kwargs["context"] = invocation.Context(activity.name)
                result = await invocation.call(activity.function, kwargs)
                output = ActivityTriggerConverter.encode(result, expected_type=None).value
                event = history.task_completed(self._clock.now(), task_id, output)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("activity %s failed for orchestration %s", name, instance_id, exc_info=True)
                event = history.task_failed(self._clock.now(), task_id,
                                            reason=f"Activity function '{name}' failed: {type(exc).__name__}: {exc}",
                                            details="".join(traceback.format_exception(exc)))
            self._enqueue(instance_id, {"kind": "event", "execution_id": execution_id, "event": event})

    # ------------------------------------------------------------------------------------------- entities

    async def _drain_entity(self, entity_id: str) -> None:
        """Run the entity's queued requests, one batch at a time, until none is left (or a batch is aborted)."""
        async with self._clock.busy():
            try:
                while not self._closing:
                    queued = self._store.messages(entity_id)
                    if not queued or not await self._entity_batch(entity_id, queued[:entities.MAX_BATCH]):
                        break
                    await asyncio.sleep(0)
            finally:
                if self._drains.get(entity_id) is asyncio.current_task():
                    del self._drains[entity_id]

    async def _entity_batch(self, entity_id: str, queued: list[tuple[int, Message]]) -> bool:
        """Invoke the entity function once for `queued` and commit the outcome; False when nothing was done."""
        name, key = entities.parse_scheduler_id(entity_id)
        function = self._index.entity(name)
        if function is None:  # only from a store written by an app that had this entity
            log.error("entity %s has queued requests but %s", entity_id, unknown_entity(name, self._index))
            return False
        operations: list[entities.Operation] = []
        unusable: list[int] = []
        for seq, message in queued:
            event = message.get("event") or {}
            try:
                request = json.loads(event["Input"]) if event.get("Name") == entities.REQUEST_EVENT else None
            except (KeyError, TypeError, ValueError):
                request = None
            if isinstance(request, dict):
                operations.append(entities.Operation(seq, request))
            else:
                log.warning("dropping a message for entity %s that is not an operation request", entity_id)
                unusable.append(seq)
        now = self._clock.now()
        record = self._store.entity(entity_id) or EntityRecord(entity_id=entity_id, name=name, key=key, exists=False,
                                                               state=None, last_operation_time=now)
        if not operations:
            self._store.commit(Batch(consumed=unusable))
            return True
        context = entities.batch_request(name, key, record.exists, record.state, operations)
        try:
            kwargs: dict[str, Any] = {function.context_param: EnitityTriggerConverter.decode(
                meta.Datum(context, "json"), trigger_metadata=None)}
            kwargs.update({param: self._binding() for param in function.client_params})
            if function.wants_context:
                kwargs["context"] = invocation.Context(function.name)
            returned = await invocation.call(function.function, kwargs)
            result = entities.parse_result(EnitityTriggerConverter.encode(returned, expected_type=None).value,
                                           len(operations))
        except asyncio.CancelledError:
            raise
        except Exception:
            # The extension records an internal error, aborts the batch and DurableTask retries the work item.
            log.exception("entity %s: the batch of %d operation(s) was aborted and will be retried in %g s",
                          entity_id, len(operations), ENTITY_RETRY_SECONDS)
            self._retry_entity(entity_id)
            return False
        now = self._clock.now()
        record.exists, record.state, record.last_operation_time = result.exists, result.state, now
        messages: list[tuple[str, Message, int]] = []
        for operation, outcome in zip(operations, result.results, strict=True):
            request = operation.request
            if outcome.get("isError"):
                log.warning("entity %s: operation '%s' failed: %s", entity_id, request.get("op"), outcome.get("result"))
            if not operation.is_signal and request.get("parent"):
                event = history.event_raised(now, str(request["id"]), entities.response(outcome))
                answer = {"kind": "event", "execution_id": request.get("parentExecution"), "event": event}
                messages.append((str(request["parent"]), answer, EVENT_PRIORITY))
        for signal in result.signals:  # this SDK's entities cannot signal, but the protocol allows it
            target = signal.get("target") or {}
            text = entities.request(str(signal.get("name")), signal=True, input_text=signal.get("input"),
                                    request_id=str(uuid.uuid4()), parent=entity_id)
            messages.append((entities.scheduler_id(str(target.get("name")), str(target.get("key"))),
                             entity_message(now, text), EVENT_PRIORITY))
        self._store.commit(Batch(entities=[record], consumed=[o.seq for o in operations] + unusable,
                                 messages=messages))
        for instance_id in {m[0] for m in messages}:
            self._kick(instance_id)
        return True

    def _retry_entity(self, entity_id: str) -> None:
        if self._closing or entity_id in self._entity_retries:
            return

        def again() -> None:
            self._entity_retries.pop(entity_id, None)
            self._kick(entity_id)

        self._entity_retries[entity_id] = self._clock.call_later(ENTITY_RETRY_SECONDS, again)

    def _recover(self, record: InstanceRecord) -> None:
        """Restart the work an execution was waiting for when the previous host stopped."""
        events = self._store.history(record.instance_id, record.execution_id)
        queued = [m["event"] for _, m in self._store.messages(record.instance_id)
                  if m.get("kind") == "event" and m.get("execution_id") == record.execution_id]
        answered = {e.get("TaskScheduledId") for e in events + queued
                    if history.kind(e) in (HistoryEventType.TASK_COMPLETED, HistoryEventType.TASK_FAILED,
                                           HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                                           HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED)}
        fired = {e.get("TimerId") for e in events + queued if history.kind(e) == HistoryEventType.TIMER_FIRED}
        for event in events:
            kind, event_id = history.kind(event), int(event.get("EventId", -1))
            if event_id in answered:
                continue
            if kind == HistoryEventType.TASK_SCHEDULED:
                raw = event.get("Input")
                self._spawn(self._run_activity(record.instance_id, record.execution_id, event_id,
                                               str(event["Name"]), None if raw is None else payloads.value_of(raw)))
            elif kind == HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED:
                self._redeliver_child_result(record, str(event["InstanceId"]))
        for timer_id, fire_at in record.state.get("timers", {}).items():
            if int(timer_id) not in fired:
                self._arm(record.instance_id, record.execution_id, int(timer_id), fire_at)

    def _redeliver_child_result(self, record: InstanceRecord, child_id: str) -> None:
        """A child that finished while no host ran never got to tell its parent; tell it now."""
        child = self._store.get(child_id)
        if child is None or child.status not in TERMINAL or not child.parent \
                or child.parent["OrchestrationInstance"]["ExecutionId"] != record.execution_id:
            return
        step = Step.of(child, self._clock.now(), self._index)
        step.notify_parent(child.status, child.output, None)
        for instance_id, message, priority in step.messages:
            self._enqueue(instance_id, message, priority)
