"""Who the simulated Teams tenant knows and how each party behaves when the bot calls, transfers or invites.

Parties are keyed by the same target syntax the routing policy and flows use: `+E164` for a phone,
`user:<id>` for a Teams user, `instance:<id>` for an application instance (resource account).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["answer", "decline", "busy", "no_answer", "fail"]
OUTCOMES: tuple[Outcome, ...] = ("answer", "decline", "busy", "no_answer", "fail")


@dataclass(frozen=True)
class Behaviour:
    """What a party does when it rings: `outcome` after `after` seconds of ringing."""

    outcome: Outcome = "answer"
    after: float = 3.0

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}; expected one of {', '.join(OUTCOMES)}")
        if self.after < 0:
            raise ValueError("ring time must not be negative")


#: How long an unanswered party rings before the platform gives up, when no behaviour says otherwise.
NO_ANSWER_AFTER = 30.0


@dataclass
class Directory:
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)

    def set(self, target: str, outcome: Outcome = "answer", after: float | None = None) -> None:
        default_after = NO_ANSWER_AFTER if outcome == "no_answer" else 3.0
        self.behaviours[target] = Behaviour(outcome, default_after if after is None else after)

    def behaviour(self, target: str) -> Behaviour:
        return self.behaviours.get(target, self.default)


def target_of(identity: dict[str, Any] | None) -> str:
    """An identitySet as target syntax: `+E164`, `user:<id>`, `instance:<id>`, `app:<id>`, `guest:<id>`."""
    identity = identity or {}
    for key, prefix in (("phone", ""), ("user", "user:"), ("applicationInstance", "instance:"),
                        ("application", "app:"), ("guest", "guest:")):
        value = identity.get(key)
        if isinstance(value, dict) and value.get("id"):
            return f"{prefix}{value['id']}"
    return "unknown"


def identity_of(target: str, *, tenant_id: str | None = None, display_name: str | None = None) -> dict[str, Any]:
    """Target syntax as a Graph identitySet (the inverse of target_of)."""
    kind, _, ident = target.partition(":")
    if target.startswith("+"):
        key, ident = "phone", target
    elif kind == "user":
        key = "user"
    elif kind == "instance":
        key = "applicationInstance"
    elif kind == "app":
        key = "application"
    elif kind == "guest":
        key = "guest"
    else:
        raise ValueError(f"not a target: {target!r} (expected +E164, user:<id>, instance:<id>, app:<id>)")
    inner: dict[str, Any] = {"@odata.type": "#microsoft.graph.identity", "id": ident}
    if display_name:
        inner["displayName"] = display_name
    if tenant_id and key in ("user", "applicationInstance"):
        inner["tenantId"] = tenant_id
    return {"@odata.type": "#microsoft.graph.identitySet", key: inner}
