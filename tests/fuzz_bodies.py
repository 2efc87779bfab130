"""Fuzzed calling-webhook bodies, and what every answer to one must look like.

Bodies start from Graph's documented notifications (tests/graph_examples.py) and this suite's builders
(tests/stubs.py) and are mutated: keys deleted, duplicated and added; any field's value swapped for a number,
string, list, object, null or boolean; odd text (lone surrogates escaped in JSON, RTL and bidi marks, NUL, emoji,
strings of tens of kilobytes); deep nesting; changeType, resourceUrl and resourceData of the wrong shape;
resourceUrls naming call ids Graph never sends; batches up to and just past the body limit; and bytes that are
not JSON at all (truncated, non-UTF-8, UTF-16, a BOM, garbage after the document).

A body is drawn as a JSON document and written by `encode`, which can do what json.dumps cannot: repeat a key
(`Dup`), write a token verbatim (`Raw`: a number past Python's digit limit, nesting past the recursion limit),
and emit a lone surrogate as raw, invalid UTF-8.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from calling.notifications import REJECTED_KEPT
from simulator.harness import Reply
from tests import graph_examples
from tests.stubs import APP_ID, TENANT_ID, call_update, incoming_call

#: Every status docs/troubleshooting.md ("What the webhook answers") lists for a signed body.
DOCUMENTED_STATUSES = frozenset({200, 202, 204, 400, 413})
ERROR_KINDS = {400: "bad_request", 413: "payload_too_large"}


class Dup(dict[str, Any]):
    """An object written with `extra` pairs after its own: a key may appear twice (the last one wins in Python)."""

    def __init__(self, items: dict[str, Any], extra: list[tuple[str, Any]]) -> None:
        super().__init__(items)
        self.extra = extra


class Raw:
    """A JSON token written as it is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''}, {len(self.text)} chars)"


def _write(value: Any, out: list[str], ascii_only: bool) -> None:
    if isinstance(value, Raw):
        out.append(value.text)
    elif isinstance(value, dict):
        pairs = [*value.items(), *(value.extra if isinstance(value, Dup) else [])]
        out.append("{")
        for i, (key, item) in enumerate(pairs):
            out.append(("," if i else "") + json.dumps(key, ensure_ascii=ascii_only) + ":")
            _write(item, out, ascii_only)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, ascii_only)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=ascii_only))  # NaN and Infinity as Python writes them


def encode(doc: Any, how: str = "ascii") -> bytes:
    """The document as bytes: `ascii` (lone surrogates as \\ud800 escapes), `utf8` (raw, lone surrogates as
    invalid UTF-8), `bom` (UTF-8 with a byte-order mark) or `utf16`."""
    out: list[str] = []
    _write(doc, out, ascii_only=how == "ascii")
    text = "".join(out)
    if how == "utf16":
        return text.encode("utf-16", "surrogatepass")
    data = text.encode("utf-8", "surrogatepass")
    return b"\xef\xbb\xbf" + data if how == "bom" else data


# --- values ---------------------------------------------------------------------------------------------

ODD_TEXT = [
    "", " ", "\ud800", "\udfff", "a\ud83dz", "\udc00\ud800", "\u202e", "\u200f", "\u2066x\u2069", "\u061c",
    "\x00", "nul\x00byte", "\x7f", "\x1b[31m", "line\r\nbreak", "\t", "\ufeff", "\ufffe", "\uffff", "\U0010ffff",
    "📞", "\U0001f9d1\u200d\U0001f4bb", "\U0001f1fa\U0001f1f8", "e\u0301", "İ", "ß", "\uff43\uff41\uff4c\uff4c", "١٢٣",
    "%00", "%2F..%2F", "../../etc/passwd", "a/b?c#d", "\\", "${jndi:ldap://x/a}", "<script>", "' OR 1=1 --",
    "null", "true", "0", "-1", "1e999", "NaN", "@odata.type", "#microsoft.graph.call",
]
# Call ids Graph never sends, and a few it could.
ODD_IDS = [
    "", " ", "call 1", "call%00", "%2e%2e", "..", ".", "a/b", "a?b", "a#b", "a\\b", "\x00", "call\x00",
    "\ud800", "call\udfffx", "📞", "\u202ecall", "\u200f", "١٢٣", "\uff43\uff41\uff4c\uff4c", "a" * 64, "a" * 65,
    "-leading", "_x", ":", "a:b", "a.b", "@x", "x" * 5000, "İ", "\ufeffcall", "call\n", "call\t", "null", "0",
    "57DAB8B1894C409AB240BD8BEAE78896", "491f0b00-ffff-4bc9-a43e-b226498ec22a",
]
KNOWN_KEYS = [
    "@odata.type", "@odata.id", "@odata.etag", "value", "changeType", "resourceUrl", "resource", "resourceData",
    "id", "state", "toneInfo", "tone", "sequenceId", "resultInfo", "code", "subcode", "subCode", "message",
    "mediaState", "audio", "source", "targets", "identity", "user", "phone", "guest", "application",
    "applicationInstance", "encrypted", "displayName", "tenantId", "applicationMetadata", "botData",
    "inviteReasons", "incomingContext", "chatInfo", "meetingInfo", "requestedModalities", "status",
    "clientContext", "recordingLocation", "recordingAccessToken", "completionReason", "info", "isMuted",
    "isInLobby", "recordingInfo", "recordingStatus", "call", "terminationReason", "direction", "callbackUri",
    "callChainId", "myParticipantId", "callState", "links", "appState", "",
]
CHANGE_TYPES = ["created", "updated", "deleted", "Created", "DELETED", "created ", "unknownFutureValue",
                "\x00", "💥", "c" * 3000]
STATES = ["incoming", "establishing", "established", "ringing", "hold", "transferring", "transferAccepted",
          "redirecting", "terminating", "terminated", "Terminated", "unknownFutureValue", "brandNew"]

ids = st.uuids().map(str) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
odd_ids = st.sampled_from(ODD_IDS) | st.text(max_size=12) | st.text(st.characters(categories=["Cs", "Cc", "Cf"]),
                                                                     min_size=1, max_size=4)
long_text = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\u202e", "📞", "\ud800", "\x00", "\\"]),
                      st.integers(256, 20_000))
odd_text = (st.sampled_from(ODD_TEXT) | st.text(max_size=20)
            | st.text(st.characters(categories=["Cs", "Cc", "Cf", "Co", "Zl", "Zp"]), min_size=1, max_size=6)
            | long_text)
numbers = (st.integers() | st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**30]) | st.floats()
           | st.sampled_from([Raw("1" * 5000), Raw("1e999"), Raw("-0"), Raw("1E+2"), Raw("0.000000000000001")]))
scalars = st.none() | st.booleans() | numbers | odd_text


def _nest(kind: str, depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = [inner] if kind == "list" else {"a": inner}
    return inner


# Nesting past the parser's recursion limit is raw text; up to a few hundred levels, a document the parser reads.
deep = (st.builds(lambda n: Raw("[" * n + "]" * n), st.integers(50, 30_000))
        | st.builds(lambda n: Raw('{"a":' * n + "1" + "}" * n), st.integers(50, 12_000))
        | st.builds(_nest, st.sampled_from(["list", "dict"]), st.integers(20, 400), scalars))
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KNOWN_KEYS) | odd_text,
                                                                      children, max_size=4),
    max_leaves=12,
)
any_value = st.one_of(json_values, json_values, json_values, deep)


def _urls(call_id: str, odd: str) -> list[str]:
    return [
        f"/communications/calls/{call_id}", f"communications/calls/{call_id}", f"/app/calls/{call_id}",
        f"https://graph.microsoft.com/v1.0/communications/calls/{call_id}",
        f"/communications/calls/{call_id}/operations/{odd}", f"/communications/calls/{call_id}/participants",
        f"/communications/calls/{call_id}/contentsharingsessions/{odd}", f"/communications/calls/{call_id}/",
        f"/communications/calls/{call_id}?x={odd}", f"/communications/calls/{call_id}#{odd}",
        f"/COMMUNICATIONS/CALLS/{call_id}", f"/communications/calls/{call_id}/../../{odd}",
        f"/communications/calls/{odd}/communications/calls/{call_id}", f"/communications/calls/{odd}{call_id}",
        "/communications/calls/", "/communications/calls//x", f"/elsewhere/{call_id}", odd,
    ]


resource_urls = st.builds(_urls, ids | odd_ids, odd_text).flatmap(st.sampled_from)
resource_data_shapes = st.sampled_from([[], [1], ["x"], [[]], [{}], [None], {}, "x", 1, True, [{"id": 1}],
                                        {"@odata.type": 1}, {"@odata.type": "#microsoft.graph.call", "state": []},
                                        {"@odata.type": "#microsoft.graph.participant"},
                                        {"@odata.type": "#microsoft.graph.participantJoiningNotification",
                                         "call": "x"}]).map(copy.deepcopy) | any_value


# --- seeds ------------------------------------------------------------------------------------------------

ANONYMOUS = {"@odata.type": "#microsoft.graph.identitySet",
             "encrypted": {"@odata.type": "#microsoft.graph.identity", "id": "opaque"}}
USER = {"user": {"id": "8A34A46B-3D17-4ADC-8DCE-DC4E7D572698", "displayName": "Test User", "tenantId": TENANT_ID}}
OVERFLOW = {"phone": {"@odata.type": "#microsoft.graph.identity", "id": "+14255550123"}}
GUEST = {"guest": {"id": "guest-1", "displayName": "A guest"}}
TO_THE_APP = [{"identity": {"application": {"id": APP_ID, "displayName": "the bot"}}}]
TO_A_NUMBER = [{"identity": {"phone": {"id": "+14255550199"}}}]
RECORDING = {"inviteReasons": ["PolicyBasedRecording"], "policyIdentifier": "Test Policy"}
DOCUMENTED_IDS = ("57DAB8B1894C409AB240BD8BEAE78896", "421f4c00-4436-4c3a-9d9a-c4924cf98e67",
                  "481f3600-983e-4276-9b59-c1b30ec8d125")
DOCUMENTED = [graph_examples.ANSWER_INCOMING, graph_examples.ANSWER_ESTABLISHED,
              graph_examples.CONTENT_SHARING_STARTED, graph_examples.CONTENT_SHARING_ENDED,
              graph_examples.PLAY_PROMPT_COMPLETED, graph_examples.RECORD_COMPLETED, graph_examples.RECORD_CANCELED,
              graph_examples.DTMF_SUCCESS, graph_examples.DTMF_ERROR_1, graph_examples.DTMF_ERROR_2]


def _renamed(value: Any, call_id: str) -> Any:
    if isinstance(value, str):
        for known in DOCUMENTED_IDS:
            value = value.replace(known, call_id)
        return value
    if isinstance(value, dict):
        return {k: _renamed(v, call_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, call_id) for v in value]
    return value


def _documented(text: str) -> Callable[[str], dict[str, Any]]:
    """The documented notification, its call id replaced by the one drawn."""
    def build(call_id: str) -> dict[str, Any]:
        notification: dict[str, Any] = _renamed(graph_examples.example(text)["value"][0], call_id)
        return notification

    return build


def _tone(call_id: str) -> dict[str, Any]:
    return call_update(call_id, "established", toneInfo={"tone": "tone1", "sequenceId": 1})


def _roster(call_id: str) -> dict[str, Any]:
    return {"changeType": "updated", "resourceUrl": f"/communications/calls/{call_id}/participants",
            "resourceData": [{"@odata.type": "#microsoft.graph.participant", "id": "p-1", "isMuted": False,
                              "isInLobby": False, "info": {"identity": USER},
                              "recordingInfo": {"recordingStatus": "notRecording"}}]}


def _joining(call_id: str) -> dict[str, Any]:
    return {"changeType": "created", "resourceUrl": f"/communications/calls/{call_id}",
            "resourceData": {"@odata.type": "#microsoft.graph.participantJoiningNotification",
                             "call": {"@odata.type": "#microsoft.graph.call", "id": call_id}}}


def _operation(call_id: str) -> dict[str, Any]:
    return {"changeType": "deleted", "resourceUrl": f"/communications/calls/{call_id}/operations/op-1",
            "resourceData": {"@odata.type": "#microsoft.graph.playPromptOperation", "id": "op-1",
                             "status": "completed", "clientContext": "node:welcome",
                             "resultInfo": {"code": "200", "subCode": "0", "message": "ok"}}}


SEEDS: list[Callable[[str], dict[str, Any]]] = [
    # Incoming calls that the fuzzing policy (tests/test_fuzz_webhook.py) answers, redirects, rejects, hands off.
    incoming_call, lambda c: incoming_call(c, source=ANONYMOUS), lambda c: incoming_call(c, source=USER),
    lambda c: incoming_call(c, source=OVERFLOW), lambda c: incoming_call(c, source=GUEST),
    lambda c: incoming_call(c, source=GUEST, targets=TO_A_NUMBER),
    lambda c: incoming_call(c, targets=TO_THE_APP), lambda c: incoming_call(c, bot_data=RECORDING),
    *[lambda c, s=s: call_update(c, s, resultInfo={"code": 200, "subcode": 5001, "message": "ended"}) for s in STATES],
    _tone, _roster, _joining, _operation, *[_documented(t) for t in DOCUMENTED],
]

_fresh = itertools.count()


def _seeded(seed: Callable[[str], dict[str, Any]], call_id: str, fresh: bool) -> dict[str, Any]:
    """A deep copy (a mutation must never reach a seed's shared parts), its call id made unique when `fresh`:
    drawn ids repeat, and the webhook acts on an incoming call only the first time it sees its id."""
    return copy.deepcopy(seed(f"{call_id[:40]}-{next(_fresh)}" if fresh else call_id))


notifications = st.builds(_seeded, st.sampled_from(SEEDS), ids | odd_ids, st.booleans())


def envelope(items: list[Any]) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.commsNotifications", "value": items}


# --- mutation ---------------------------------------------------------------------------------------------

def _slots(root: list[Any]) -> list[tuple[Any, Any, int]]:
    """Every place a value sits in the document (as container, key, depth), the document itself first."""
    found: list[tuple[Any, Any, int]] = []
    stack: list[tuple[Any, Any, int]] = [(root, 0, 0)]
    while stack:
        container, key, depth = stack.pop()
        found.append((container, key, depth))
        value = container[key]
        if isinstance(value, dict) and not isinstance(value, Dup):
            stack.extend((value, k, depth + 1) for k in reversed(list(value)))
        elif isinstance(value, list):
            stack.extend((value, i, depth + 1) for i in reversed(range(len(value))))
    return found


def mutate(draw: st.DrawFn, root: list[Any]) -> None:
    """One mutation anywhere in root[0]; half the time inside a notification's resourceData (depth 4 and more),
    so that more mutated notifications get past the envelope to the router and the sink."""
    slots = _slots(root)
    where = draw(st.sampled_from(["resourceData"] * 8 + ["anywhere"] * 7 + ["document"]))
    if where == "resourceData":
        slots = [s for s in slots if s[2] >= 4] or slots
    elif where == "anywhere":
        slots = slots[1:] or slots
    else:
        slots = slots[:1]
    container, key, _ = slots[draw(st.integers(0, len(slots) - 1))]
    value = container[key]
    op = draw(st.sampled_from(["delete", "swap", "swap", "duplicate", "insert", "wrap", "odd_text", "notification"]))
    if op == "delete" and container is not root:
        del container[key]
    elif op == "duplicate" and isinstance(value, dict) and not isinstance(value, Dup):
        name = draw(st.sampled_from(sorted(value))) if value else draw(st.sampled_from(KNOWN_KEYS))
        again = draw(st.just(value.get(name)) | any_value)
        container[key] = Dup(value, [(name, again)])
    elif op == "insert" and isinstance(value, dict) and not isinstance(value, Dup):
        value[draw(st.sampled_from(KNOWN_KEYS) | odd_text)] = draw(any_value)
    elif op == "wrap":
        container[key] = draw(st.sampled_from(["list", "object", "deep"])
                              .map(lambda how: [value] if how == "list" else {"value": value} if how == "object"
                                   else _nest("list", 300, value)))
    elif op == "odd_text" and isinstance(value, str):
        odd = draw(odd_text)
        container[key] = draw(st.sampled_from([odd, value + odd, odd + value, value.replace("-", odd)]))
    elif op == "notification" and isinstance(value, dict) and "changeType" in value:
        field = draw(st.sampled_from(["changeType", "resourceUrl", "resource", "resourceData"]))
        if field == "changeType":
            value[field] = draw(st.sampled_from(CHANGE_TYPES) | scalars)
        elif field == "resourceData":
            value[field] = draw(resource_data_shapes)
        else:
            value[field] = draw(resource_urls)
    else:
        container[key] = draw(any_value)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """An envelope of seeded notifications (or one documented envelope, or a legacy body), mutated 0-6 times."""
    kind = draw(st.sampled_from(["batch"] * 7 + ["documented"] * 2 + ["legacy"]))
    if kind == "documented":
        doc: Any = graph_examples.example(draw(st.sampled_from(DOCUMENTED)))
    elif kind == "legacy":
        doc = {"id": draw(ids), "callState": draw(st.sampled_from(STATES)), "participants": []}
    else:
        doc = envelope(draw(st.lists(notifications, min_size=1, max_size=6)))
    root = [doc]
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 2, 3, 4, 6]))):
        mutate(draw, root)
    return root[0]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A mutated document in one of the encodings, sometimes cut short or followed by garbage."""
    data = encode(draw(documents()), draw(st.sampled_from(["ascii", "ascii", "ascii", "utf8", "bom", "utf16"])))
    damage = draw(st.sampled_from(["none"] * 18 + ["truncate", "garbage"]))
    if damage == "truncate" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if damage == "garbage":
        return data + draw(st.sampled_from([b"x", b"}", b"\x00", b"\xff\xfe", b" {}", b"\n" * 3]))
    return data


@st.composite
def huge_batches(draw: st.DrawFn, limit: int) -> bytes:
    """A batch of a few (mutated) notifications repeated, padded to a size around the body limit: exactly at it,
    one byte past it, or anywhere from half of it to a little beyond."""
    target = draw(st.sampled_from([limit, limit + 1]) | st.integers(limit // 2, limit + 4096))
    root: list[Any] = [draw(st.lists(notifications, min_size=1, max_size=4))]
    for _ in range(draw(st.integers(0, 3))):
        mutate(draw, root)
    unit = root[0] if isinstance(root[0], list) and root[0] else [root[0]]
    empty = len(encode({**envelope([]), "pad": ""}))
    per_copy = len(encode(envelope(unit))) - len(encode(envelope([]))) + 1  # and the comma before it
    items = unit * max(1, (target - empty) // per_copy)
    unpadded = len(encode({**envelope(items), "pad": ""}))
    return encode({**envelope(items), "pad": "x" * max(0, target - unpadded)})


def fuzzed(limit: int) -> st.SearchStrategy[bytes]:
    """What the fuzzers post: mostly mutated documents, one in four a batch around the body limit."""
    return st.one_of(bodies(), bodies(), bodies(), huge_batches(limit))


# --- what every answer must look like ---------------------------------------------------------------------

def check_reply(reply: Reply, sent: bytes, limit: int, invite_uri: str) -> None:
    """The documented answer to a signed POST of `sent`: a listed status, never a traceback, a JSON body of the
    documented shape (nothing for 204) and of a few kilobytes at most, 413 exactly when the body is past the limit."""
    where = f"status {reply.status}, body {reply.body[:300]!r}"
    assert reply.status in DOCUMENTED_STATUSES, where
    assert b"Traceback" not in reply.body and b'File "' not in reply.body, where
    assert (reply.status == 413) is (len(sent) > limit), f"{len(sent)} bytes sent, limit {limit}: {where}"
    assert len(reply.body) <= 16 * 1024, f"an answer of {len(reply.body)} bytes: {where}"
    if reply.status == 204:
        assert reply.body == b"", where
        return
    assert reply.content_type == "application/json", where
    payload = json.loads(reply.body.decode("utf-8"))  # strict UTF-8: nothing unencodable leaks out
    assert isinstance(payload, dict), where
    if reply.status == 202:
        assert payload["status"] == "accepted", where
        assert set(payload) <= {"status", "events", "rejected", "rejected_total"}, where
        assert isinstance(payload["events"], int) and payload["events"] >= 0, where
        listed = payload.get("rejected", [])
        assert len(listed) <= REJECTED_KEPT and payload.get("rejected_total", len(listed)) >= len(listed), where
        for bad in listed:
            assert set(bad) == {"index", "reason"} and isinstance(bad["index"], int), where
            assert isinstance(bad["reason"], str) and bad["reason"], where
    elif reply.status == 200:
        assert payload == {"@odata.type": "#microsoft.graph.inviteNewBotResponse", "inviteUri": invite_uri}, where
    else:
        assert set(payload) == {"error", "reason"} and payload["error"] == ERROR_KINDS[reply.status], where
        assert isinstance(payload["reason"], str) and payload["reason"], where
