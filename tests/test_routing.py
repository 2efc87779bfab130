"""Incoming-call routing: decisions from policy data, and policy files with FILE:LINE:COLUMN errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calling.events import IncomingCall
from calling.notifications import parse_notification
from calling.routing import (
    Answer,
    HandOff,
    Redirect,
    Reject,
    Router,
    default_policy,
    load_policy,
    parse_policy,
)
from calling.yamlsource import SourceErrors
from tests.stubs import APP_ID, OTHER_TENANT, TENANT_ID, incoming_call

BOT_TARGET = [{"identity": {"application": {"id": APP_ID}}}]
SALES_INSTANCE = [{"identity": {"applicationInstance": {"id": "SALES-INSTANCE", "tenantId": TENANT_ID}}}]


def call(source: dict[str, Any] | None = None, targets: list[dict[str, Any]] | None = None,
         tenant: str = TENANT_ID, bot_data: dict[str, Any] | None = None) -> IncomingCall:
    [event] = parse_notification(incoming_call("c1", source=source, targets=targets, tenant=tenant, bot_data=bot_data))
    assert isinstance(event, IncomingCall)
    return event


def from_phone(number: str) -> dict[str, Any]:
    return {"phone": {"id": number}}


def from_user(oid: str, tenant: str = TENANT_ID) -> dict[str, Any]:
    return {"user": {"id": oid, "tenantId": tenant, "displayName": "Someone"}}


POLICY = f"""
version: 1
rules:
  - name: blocked-numbers
    match:
      caller: {{phone: ["+1900*", "+1976*"]}}
    action: reject
    reason: forbidden
  - name: anonymous
    match: {{caller: {{anonymous: true}}}}
    action: reject
    reason: busy
  - name: sales-line
    match:
      target: {{application_instance: sales-instance}}
    action: answer
    flow: sales
  - name: vip
    match:
      caller: {{user: [VIP-OID]}}
    action: redirect
    targets: ["user:assistant-oid", "+14255550199"]
    timeout: 20
  - name: partner-tenant
    match:
      caller: {{tenant: [{OTHER_TENANT}], kind: [user]}}
    action: handoff
    reason: transcription
  - name: direct-to-bot-from-phone
    match:
      caller: {{kind: phone}}
      target: {{bot: true}}
    action: answer
    flow: direct
default:
  action: answer
  flow: main
"""


@pytest.fixture
def router() -> Router:
    return Router(parse_policy(POLICY), bot_app_id=APP_ID)


@pytest.mark.parametrize(("source", "targets", "expected"), [
    (from_phone("+19005551234"), None, Reject("forbidden", rule="blocked-numbers")),
    (from_phone("+14255550100"), None, Answer("main")),
    ({"encrypted": {"id": "x"}}, None, Reject("busy", rule="anonymous")),
    ({"@odata.type": "#microsoft.graph.identitySet"}, None, Reject("busy", rule="anonymous")),
    (from_phone("anonymous"), None, Reject("busy", rule="anonymous")),
    (from_phone("+14255550100"), SALES_INSTANCE, Answer("sales", rule="sales-line")),
    (from_user("vip-oid"), BOT_TARGET, None),  # checked below: a redirect
    (from_user("someone", tenant=OTHER_TENANT), BOT_TARGET, HandOff("transcription", rule="partner-tenant")),
    (from_user("someone"), BOT_TARGET, Answer("main")),
    (from_phone("+14255550100"), BOT_TARGET, Answer("direct", rule="direct-to-bot-from-phone")),
])
def test_first_matching_rule_decides(router: Router, source: dict[str, Any], targets: Any, expected: Any) -> None:
    decision = router.decide(call(source, targets))
    if expected is None:
        assert isinstance(decision, Redirect)
        assert [(t.kind, t.id) for t in decision.targets] == [("user", "assistant-oid"), ("phone", "+14255550199")]
        assert (decision.timeout, decision.rule) == (20, "vip")
    else:
        assert decision == expected


def test_blocked_number_wins_over_a_later_rule(router: Router) -> None:
    assert router.decide(call(from_phone("+19765550000"), SALES_INSTANCE)).rule == "blocked-numbers"


def test_policy_recording_always_hands_off(router: Router) -> None:
    recording = call(from_phone("+19005551234"), bot_data={"inviteReasons": ["PolicyBasedRecording"]})
    assert router.decide(recording) == HandOff("policy_recording", rule="policy-recording")


def test_default_policy_answers_with_the_default_flow() -> None:
    router = Router(default_policy("welcome"), bot_app_id=APP_ID)
    assert router.decide(call()) == Answer("welcome")
    assert isinstance(router.decide(call(bot_data={"inviteReasons": ["PolicyBasedRecording"]})), HandOff)


def test_tenant_condition() -> None:
    router = Router(parse_policy(f"rules:\n  - match: {{tenant: ['{OTHER_TENANT}']}}\n    action: reject\n"),
                    bot_app_id=APP_ID)
    assert router.decide(call(tenant=OTHER_TENANT)) == Reject("none", rule="rule 1")
    assert router.decide(call()) == Answer("main")


def test_empty_file_is_the_default_policy() -> None:
    assert parse_policy("", default_flow="x").default == Answer("x")


@pytest.mark.parametrize(("text", "expected"), [
    ("rules:\n  - name: a\n    action: dance\n", "routing.yaml:3:5: rules[0].action: must be one of"),
    ("rules:\n  - name: a\n    action: answer\n", "routing.yaml:2:5: rules[0].flow: answer needs the name of a flow"),
    ("rules:\n  - action: reject\n    reason: later\n", "routing.yaml:3:5: rules[0].reason: must be one of none, busy"),
    ("rules:\n  - action: redirect\n    targets: ['+1425555', 'bob']\n",
     "routing.yaml:3:27: rules[0].targets[1]: a target is +E164"),
    ("rules:\n  - action: redirect\n    targets: []\n", "rules[0].targets: redirect needs a list of 1 to 25"),
    ("rules:\n  - action: redirect\n    targets: ['+14255550100']\n    timeout: 5\n",
     "routing.yaml:4:5: rules[0].timeout: must be a whole number of seconds, 15 to 90"),
    ("rules:\n  - action: answer\n    flow: x\n    match: {caller: {phone: +14255550100}}\n",
     "routing.yaml:4:22: rules[0].match.caller.phone: must be a string or a list of strings (quote +numbers)"),
    ("rules:\n  - action: answer\n    flow: x\n    match: {callr: {}}\n",
     "routing.yaml:4:13: rules[0].match.callr: unknown key"),
    ("rules:\n  - action: answer\n    flow: x\n    match: {caller: {anonymous: maybe}}\n",
     "rules[0].match.caller.anonymous: must be true or false"),
    ("rulez: []\n", "routing.yaml:1:1: rulez: unknown key"),
    ("version: 2\n", "routing.yaml:1:1: version: only version 1 is supported"),
    ("rules: {}\n", "rules: must be a list of rules"),
    ("- just a list\n", "a routing policy is a mapping"),
    ("rules:\n  - action: answer\n    flow: a\n    flow: b\n", "routing.yaml:4:5: rules[0].flow: duplicate key"),
    ("rules: [\n", "routing.yaml:2:1: YAML syntax"),
])
def test_policy_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    with pytest.raises(SourceErrors) as info:
        load_policy(path)
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert expected in message


def test_every_error_is_reported_at_once() -> None:
    text = "rules:\n  - action: dance\n  - action: answer\ndefault: {action: reject, reason: x}\n"
    with pytest.raises(SourceErrors) as info:
        parse_policy(text, file="p.yaml")
    assert [(e.line, e.field) for e in info.value.errors] == [
        (2, "rules[0].action"), (3, "rules[1].flow"), (4, "default.reason")]


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceErrors, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")
