"""calling/consult.py: the steps of a consultative transfer between the engine's Transfer and its outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from calling import consult
from calling.consult import HANDING_OVER, RINGING, Consult
from calling.flows import events as e

AT = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
SECOND = Consult(ref="transfer-7", target="user:abc", call_id="call-second")


def update(call_id: str, state: str, **data: Any) -> dict[str, Any]:
    return {"changeType": "deleted" if state == "terminated" else "updated",
            "resourceUrl": f"/communications/calls/{call_id}",
            "resourceData": {"@odata.type": "#microsoft.graph.call", "state": state, **data}}


def test_split_keeps_the_order_of_each_call() -> None:
    a1, b1, a2 = update("call-caller", "established"), update("call-second", "establishing"), \
        update("call-caller", "terminated")
    legacy = {"changeType": "updated", "resource": "/app/calls/call-second", "resourceData": {}}
    mine, second, others = consult.split([a1, b1, a2, legacy], "call-caller", SECOND)
    assert mine == [a1, a2] and second == [b1, legacy] and others == []


def test_a_finished_second_calls_late_notifications_are_not_the_callers() -> None:
    """The bot hung up its second call on a ring timeout; its terminating/terminated come afterwards."""
    late = [update("call-second", "terminating"), update("call-second", "terminated")]
    own = update("call-caller", "established")
    assert consult.split([*late, own], "call-caller", None) == ([own], [], late)
    assert consult.strays_to_end(late, ended=()) == []  # ended: nothing to hang up


def test_only_a_new_call_still_up_is_taken_for_a_second_call_placed_without_an_answer() -> None:
    placing = Consult(ref="transfer-9", target="user:abc", call_id="", stage=consult.PLACING)
    old_end = update("call-second", "terminating")  # the session's earlier second call, on its way out
    old_alive = update("call-second", "established")
    new = update("call-third", "establishing")
    assert consult.adopt(placing, [old_end], known=["call-second"])[0] == placing
    assert consult.adopt(placing, [old_alive], known=["call-second"])[0] == placing  # known: never adopted
    adopted, mine, rest = consult.adopt(placing, [old_end, new], known=["call-second"])
    assert adopted.call_id == "call-third" and adopted.stage == consult.RINGING
    assert mine == [new] and rest == [old_end]


def test_the_target_answering_hands_the_caller_over() -> None:
    step = consult.on_notifications(SECOND, [update("call-second", "establishing"),
                                             update("call-second", "established")], AT)
    assert step.hand_over and not step.hang_up and step.outcome is None
    assert step.consult is not None and step.consult.stage == HANDING_OVER


@pytest.mark.parametrize(("code", "subcode", "message", "outcome"), [
    (408, 10057, "No signaling from callee endpoints (no answer).", "no_answer"),
    (603, 0, "The callee declined the call.", "declined"),
    (486, 0, "The callee is busy.", "declined"),
    (480, 10076, "The callee could not be reached.", "failed"),
])
def test_the_second_call_ending_unanswered_is_the_transfers_outcome(code: int, subcode: int, message: str,
                                                                    outcome: str) -> None:
    ended = update("call-second", "terminated", resultInfo={"code": code, "subcode": subcode, "message": message})
    step = consult.on_notifications(SECOND, [ended], AT)
    assert step.consult is None and not step.hang_up and not step.hand_over
    assert step.outcome == e.TransferOutcome(at=AT, ref="transfer-7", outcome=outcome, code=code, subcode=subcode)


def test_the_second_call_ending_after_the_hand_over_reports_nothing() -> None:
    handing = Consult("transfer-7", "user:abc", "call-second", HANDING_OVER)
    ended = update("call-second", "terminated", resultInfo={"code": 0, "subcode": 7015},
                   terminationReason="AppTransferred")
    step = consult.on_notifications(handing, [ended], AT)
    assert step == consult.Step(None)


def test_the_ring_timeout_hangs_up_and_reports_no_answer() -> None:
    step = consult.on_ring_timeout(SECOND, AT)
    assert step.consult is None and step.hang_up
    assert step.outcome is not None and step.outcome.outcome == "no_answer" and step.outcome.ref == "transfer-7"
    handing = Consult("transfer-7", "user:abc", "call-second", HANDING_OVER)
    assert consult.on_ring_timeout(handing, AT) == consult.Step(handing)


@pytest.mark.parametrize(("awaiting", "left", "hang_up", "kept"), [
    ("transfer-7", "", False, True),  # still waiting for this transfer
    ("", "transfer", False, False),  # completed: Graph ended the second call
    ("", "hangup", True, False),  # the caller hung up, or the flow moved on
    ("record-9", "", True, False),
])
def test_the_engine_moving_on_ends_the_second_call_unless_transferred(awaiting: str, left: str, hang_up: bool,
                                                                      kept: bool) -> None:
    step = consult.on_engine(SECOND, awaiting, left)
    assert step.hang_up is hang_up and (step.consult is SECOND) is kept


def test_consult_crosses_continue_as_new() -> None:
    assert Consult.from_json(SECOND.to_json()) == SECOND
    assert Consult.from_json({"ref": "t", "target": "+1", "call_id": "c"}).stage == RINGING
