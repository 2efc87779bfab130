"""A flow as a Mermaid flowchart, so a reviewer sees the call paths next to the YAML diff.

Node shapes follow what a node does: prompts are rounded, menus hexagons, decisions rhombi, records
cylinders, sub-flows subroutines, and the nodes where a call ends or leaves are stadiums. Edges with the
same target are merged into one labelled with every outcome (`no_answer / declined / failed`).
"""

from __future__ import annotations

from calling.flows import model as m

_SHAPES = {
    "play": ("(", ")"), "menu": ("{{", "}}"), "hours": ("{", "}"), "condition": ("{", "}"),
    "record": ("[(", ")]"), "subflow": ("[[", "]]"), "transfer": ("[/", "/]"), "invite": ("[/", "/]"),
    "queue": ("[/", "\\]"),
    "redirect": ("([", "])"), "handoff": ("([", "])"), "hangup": ("([", "])"), "return": ("([", "])"),
}


def render(flow: m.Flow) -> str:
    ids = {name: f"n{i}" for i, name in enumerate(flow.nodes)}
    lines = ["flowchart TD", f"    start((\"start\")) --> {ids.get(flow.start, 'missing')}"]
    for name, node in flow.nodes.items():
        opening, closing = _SHAPES[node.TYPE]
        lines.append(f'    {ids[name]}{opening}"{_label(node)}"{closing}')
    for name, node in flow.nodes.items():
        targets: dict[str, list[str]] = {}
        for edge in _edges(node):
            targets.setdefault(edge.target, []).append(edge.label)
        for target, labels in targets.items():
            to = ids.get(target) or f'missing_{len(lines)}["{_escape(target)} (missing)"]'
            lines.append(f'    {ids[name]} -- "{_escape(" / ".join(labels))}" --> {to}')
    return "\n".join(lines) + "\n"


def _edges(node: m.Node) -> list[m.Edge]:
    """Edges with defaulted branches spelled out, so a diagram shows every outcome."""
    edges = [e for e in node.edges() if e.label not in ("no_answer", "declined", "holiday")]
    if isinstance(node, m.Transfer):
        edges[:0] = [m.Edge(o, node.branch(o), True, ()) for o in ("no_answer", "declined")]
    if isinstance(node, m.Hours):
        edges.append(m.Edge("holiday", node.holiday or node.closed, True, ()))
    if isinstance(node, m.Queue):
        edges = [e for e in edges if e.label not in ("overflow", "no_agents")]
        edges += [m.Edge(o, getattr(node, o) or node.timeout, True, ()) for o in ("overflow", "no_agents")]
    return edges


def _label(node: m.Node) -> str:
    text = f"{node.id}<br/><i>{node.TYPE}</i>"
    detail = _detail(node)
    return f"{text}<br/>{_escape(detail)}" if detail else text


def _detail(node: m.Node) -> str:
    if isinstance(node, m.Play | m.Menu):
        return ", ".join(node.prompt)
    if isinstance(node, m.Record):
        return f"mailbox {node.mailbox}"
    if isinstance(node, m.Transfer):
        return f"{node.mode} to {node.target}"
    if isinstance(node, m.Queue):
        count = len(node.agents)
        return f"{node.queue or node.id}: {count} agent{'s' if count > 1 else ''}, {node.routing.replace('_', ' ')}"
    if isinstance(node, m.Redirect | m.Invite):
        return ", ".join(node.targets)
    if isinstance(node, m.Hours):
        return node.timezone
    if isinstance(node, m.SubFlow):
        return node.flow
    if isinstance(node, m.HangUp):
        return node.reason
    return ""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "#quot;").replace("<", "&lt;").replace(">", "&gt;")
