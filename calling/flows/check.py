"""Graph checks: the mistakes that would otherwise surface as a stuck or dropped call.

Per flow: transitions to nodes that do not exist, nodes no path reaches, nodes from which the call can
never end, and loops a caller who presses nothing would go round forever (every loop must need a key).
Across a flow and its sub-flows: sub-flows that run themselves, and redirect or hand-off nodes that
can be reached after the call was answered (Graph redirects and hands off only unanswered calls).
Together these make the engine's promise provable: any caller ends the call within bounded steps.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from calling.flows import model as m
from calling.flows.load import error
from calling.yamlsource import PathKey, SourceError


def check_flows(flows: Mapping[str, m.Flow], root: str) -> list[SourceError]:
    """Every graph problem of `root` and the loaded sub-flows (sub-flows that failed to load are skipped)."""
    errors: list[SourceError] = []
    for flow in flows.values():
        errors.extend(check_flow(flow))
    errors.extend(_recursion(flows, root))
    if not errors:
        errors.extend(_before_answer(flows, root))
    return errors


def unknown_targets(nodes: Mapping[str, m.Node], names: Collection[str]) -> Iterator[tuple[PathKey, str]]:
    """Transitions to nodes that do not exist, as (path under `nodes`, message)."""
    for node in nodes.values():
        for edge in node.edges():
            if edge.target not in names:
                yield (node.id, *edge.path), f"no node named {edge.target!r}{hint(edge.target, names)}"


def check_flow(flow: m.Flow) -> list[SourceError]:
    """Graph problems of one flow. A transition to a missing node is reported and otherwise treated as a
    way out, so one typo does not also make its node look stuck."""
    errors: list[SourceError] = []
    nodes = flow.nodes
    if flow.start not in nodes:
        errors.append(error(flow, ("start",), f"no node named {flow.start!r}{hint(flow.start, nodes)}"))
        return errors
    for path, message in unknown_targets(nodes, list(nodes)):
        errors.append(error(flow, ("nodes", *path), message))
    known = {n: [e for e in nodes[n].edges() if e.target in nodes] for n in nodes}
    reachable = _reach(flow.start, lambda n: [e.target for e in known[n]])
    for name in nodes:
        if name not in reachable:
            errors.append(error(flow, ("nodes", name), f"unreachable: no transition from the start node "
                                                       f"{flow.start!r} leads here"))
    incoming: dict[str, list[str]] = {n: [] for n in nodes}
    for name, edges in known.items():
        for edge in edges:
            incoming[edge.target].append(name)
    exits = [n.id for n in nodes.values() if _can_leave(n) or any(e.target not in nodes for e in n.edges())]
    can_end = _reach_all(exits, lambda n: incoming[n])
    stuck = [n for n in nodes if n in reachable and n not in can_end]
    for name in stuck:
        errors.append(error(flow, ("nodes", name), "no way out: from here the call can never end or leave the "
                                                   "flow (every path loops back)"))
    idle = {n: [e.target for e in known[n] if e.idle] for n in nodes}
    for cycle in _cycles(idle):
        if cycle[0] in reachable and not set(cycle) & set(stuck):
            loop = " -> ".join([*cycle, cycle[0]])
            errors.append(error(flow, ("nodes", cycle[0]), f"a caller who presses nothing would loop forever: "
                                                           f"{loop}; every loop needs a key press"))
    return errors


def _can_leave(node: m.Node) -> bool:
    """The call can end or leave this flow here: ending nodes, returns, a completed transfer or queue call,
    a sub-flow."""
    return node.ENDS or isinstance(node, m.Return | m.Transfer | m.Queue | m.SubFlow)


def _recursion(flows: Mapping[str, m.Flow], root: str) -> list[SourceError]:
    errors: list[SourceError] = []
    reported: set[tuple[str, str]] = set()
    done: set[str] = set()  # fully explored: any loop through them was found already

    def visit(flow_id: str, chain: tuple[str, ...]) -> None:
        flow = flows.get(flow_id)
        if flow is None or flow_id in done:
            return
        for node in flow.nodes.values():
            if not isinstance(node, m.SubFlow):
                continue
            path = (*chain, flow_id)
            if node.flow in path:
                if (flow_id, node.id) not in reported:
                    reported.add((flow_id, node.id))
                    loop = " -> ".join((*path[path.index(node.flow):], node.flow))
                    errors.append(error(flow, ("nodes", node.id, "flow"), f"sub-flows run each other forever: {loop}"))
            else:
                visit(node.flow, path)
        done.add(flow_id)

    visit(root, ())
    return errors


def _before_answer(flows: Mapping[str, m.Flow], root: str) -> list[SourceError]:
    """Redirect and hand-off nodes must be reached from the start only through non-media nodes."""
    media_cache: dict[str, bool] = {}

    def has_media(flow_id: str, seen: frozenset[str] = frozenset()) -> bool:
        if flow_id not in media_cache:
            flow = flows[flow_id]
            media_cache[flow_id] = any(n.MEDIA for n in flow.nodes.values()) or any(
                has_media(n.flow, seen | {flow_id}) for n in flow.nodes.values()
                if isinstance(n, m.SubFlow) and n.flow not in seen and n.flow in flows)
        return media_cache[flow_id]

    errors: list[SourceError] = []
    seen: set[tuple[str, str, bool]] = set()
    todo = [(root, flows[root].start, False)]
    while todo:
        state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        flow_id, name, answered = state
        flow = flows[flow_id]
        node = flow.nodes[name]
        if node.BEFORE_ANSWER and answered:
            errors.append(error(flow, ("nodes", name), f"{node.TYPE} works only before the call is answered, but this "
                                                       "node can be reached after media was played or recorded; reach "
                                                       "it from the start through hours, condition and subflow nodes"))
        after = answered or node.MEDIA
        if isinstance(node, m.SubFlow) and node.flow in flows:
            todo.append((node.flow, flows[node.flow].start, answered))
            after = answered or has_media(node.flow)
        todo.extend((flow_id, e.target, after) for e in node.edges())
    return list(dict.fromkeys(errors))


def hint(name: str, nodes: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(nodes), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _reach(start: str, follow: Callable[[str], Iterable[str]]) -> set[str]:
    return _reach_all([start], follow)


def _reach_all(starts: Iterable[str], follow: Callable[[str], Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(follow(name))
    return seen


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan), nodes in file order."""
    order = {n: i for i, n in enumerate(graph)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(component)

    for v in graph:
        if v not in index:
            strongconnect(v)
    cycles = []
    for component in sorted(components, key=lambda c: min(order[n] for n in c)):
        members = set(component)
        first = min(component, key=order.__getitem__)
        cycles.append(_path_back(first, graph, members))
    return cycles


def _path_back(first: str, graph: Mapping[str, list[str]], members: set[str]) -> list[str]:
    """A shortest path from `first` round to itself within its component, for the message."""
    previous: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in graph[v]:
                if w == first:
                    path = [v]
                    while path[-1] != first:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                if w in members and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return [first]
