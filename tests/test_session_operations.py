"""How an operation's completion notification becomes the engine event a flow sees (calling.session.translate).

Inputs are Graph's published notifications (tests/graph_examples.py names each doc page): a `completed`
status is not enough for a success when the completionReason or the resultInfo says the operation failed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from calling.flows import State
from calling.flows import events as e
from calling.session import translate
from tests import graph_examples
from tests.graph_examples import example

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
REF = "d45324c1-fcb5-430a-902c-f20af696537c"  # the examples' clientContext: the engine's command ref


def notifications(text: str, **changes: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = example(text)["value"]
    items[0]["resourceData"].update(changes)
    return items


def test_a_prompt_that_completed_is_finished() -> None:
    assert translate(notifications(graph_examples.PLAY_PROMPT_COMPLETED), State(), NOW) == \
        [e.PromptFinished(at=NOW, ref=REF)]


def test_a_prompt_completed_but_cancelled_is_failed() -> None:
    events = translate(notifications(graph_examples.PLAY_PROMPT_COMPLETED, completionReason="mediaOperationCanceled"),
                       State(), NOW)
    assert events == [e.PromptFailed(at=NOW, ref=REF, code=200, subcode=0)]


def test_a_prompt_completed_with_a_failing_result_is_failed() -> None:
    result = {"@odata.type": "#microsoft.graph.resultInfo", "code": 500, "subcode": 1005, "message": "Server error."}
    events = translate(notifications(graph_examples.PLAY_PROMPT_COMPLETED, resultInfo=result), State(), NOW)
    assert events == [e.PromptFailed(at=NOW, ref=REF, code=500, subcode=1005)]


def test_a_recording_that_reached_its_maximum_duration_is_a_recording() -> None:
    (event,) = translate(notifications(graph_examples.RECORD_COMPLETED), State(), NOW)
    assert isinstance(event, e.RecordFinished)
    assert (event.ok, event.location, event.code, event.subcode) == \
        (True, "https://file.location/17e3b46c-f61d-4f4d-9635-c626ef18e6ad", 200, 8515)


def test_a_recording_completed_on_an_error_reason_is_not_a_recording() -> None:
    (event,) = translate(notifications(graph_examples.RECORD_COMPLETED, completionReason="playBeepFailed"),
                         State(), NOW)
    assert isinstance(event, e.RecordFinished)
    assert not event.ok


def test_a_cancelled_recording_is_not_a_recording() -> None:
    (event,) = translate(notifications(graph_examples.RECORD_CANCELED), State(), NOW)
    assert isinstance(event, e.RecordFinished)
    assert (event.ok, event.code, event.subcode) == (False, 400, 8508)
