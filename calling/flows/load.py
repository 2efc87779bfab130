"""Flow files to models: every problem reported at once, each as `FILE:LINE:COLUMN: field: message`.

One generic reader walks the FieldSpecs of the model classes, so what the loader accepts is exactly
what the JSON Schema and the docs describe. `load_flow` reads one file; `load_bundle` reads a flow with
every sub-flow it runs, checks the graph and the prompt files, and is what the engine runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from calling.flows import model as m
from calling.flows import speech
from calling.flows.snapshot import version
from calling.flows.wav import WavError, check_file
from calling.yamlsource import Document, PathKey, SourceError, SourceErrors, format_path, load_file, load_text

_BAD: Any = object()  # a value that could not be read; its error is already recorded
_OPTION = re.compile(r"^[0-9*#]+$")
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAY_NAMES = {**{d: i for i, d in enumerate(m.DAYS)},
              **{n: i for i, n in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                              "sunday"))}}
_HOLIDAY = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")
_LINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:-]{0,99}")
_SAY_KEYS = ("say", "voice", "language")


def load_flow(path: str | Path, *, folder: str | Path | None = None, renderer: str | None = None) -> m.Flow:
    """Read one flow file (no sub-flows, no prompt files). Raises SourceErrors."""
    path = Path(path)
    base = Path(folder) if folder is not None else path.parent
    doc = load_file(path, scalar_keys=True)
    return _Reader(doc, _relative(path, base) or path.name, renderer).flow()


def parse_flow(text: str, file: str = "flow.yaml", *, flow_id: str | None = None, renderer: str | None = None
               ) -> m.Flow:
    """Read a flow from text; prompt and sub-flow paths are relative to the folder `file` is in.

    A say prompt becomes the key of its rendered file for `renderer` (default: speech.renderer_name())."""
    doc = load_text(text, file, scalar_keys=True)
    return _Reader(doc, flow_id or PurePosixPath(file).name, renderer).flow()


def load_bundle(path: str | Path, *, folder: str | Path | None = None, render: bool = False,
                renderer: str | None = None) -> m.Bundle:
    """A flow, every sub-flow it can run and every prompt, all checked. Raises SourceErrors with all problems.

    `folder` is where flow ids and prompt keys are relative to (default: the flow file's folder); nothing
    may reach outside it, because that folder is what gets deployed and served. A say prompt's file
    (`.rendered/say-<digest>.wav`) must exist; with `render`, a missing one is rendered first (by
    `renderer`, default speech.renderer_name()). A say prompt that cannot be rendered is an error at it.
    """
    path = Path(path)
    base = Path(folder) if folder is not None else path.parent
    root = _relative(path, base)
    if root is None:
        raise SourceErrors([SourceError(str(path), 1, 1, "", f"is outside the flows folder {base}")])

    def read(flow_id: str) -> str | None:
        file = base / flow_id
        if flow_id != root and not file.is_file():
            return None  # a sub-flow that is not there: reported at the node that runs it
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceErrors([SourceError(str(file), 1, 1, "", f"cannot read: {exc}")]) from None

    def prompt(key: str, say: speech.Say | None) -> m.PromptFile:
        file = base / key
        if say is not None and not file.is_file():
            if not render:
                raise WavError(f"not rendered yet ({key}): python -m calling.flows check --render {path}")
            data = speech.renderer(renderer or speech.renderer_name())(say)
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(file)  # never a half-written prompt under the final name
        info, data = check_file(file)
        return m.PromptFile(key, hashlib.sha256(data).hexdigest(), info.duration, len(data))

    return _assemble(root, read, prompt, str(base), renderer)


def bundle_from_sources(root: str, sources: Mapping[str, str], prompts: Mapping[str, m.PromptFile],
                        folder: str = "", renderer: str | None = None) -> m.Bundle:
    """A bundle from the texts and prompt facts a call's session carries (no files): the same checks.

    A call keeps the flow it started with although a deployment may replace the files meanwhile
    (calling/flows/snapshot.py). A prompt not among `prompts` is an error, as a missing file would be.
    """
    def read(flow_id: str) -> str | None:
        return sources.get(flow_id)

    def prompt(key: str, _: speech.Say | None) -> m.PromptFile:
        if key not in prompts:
            raise WavError("not among the prompts the session carries")
        return prompts[key]

    return _assemble(root, read, prompt, folder, renderer)


_PromptLookup = Callable[[str, speech.Say | None], m.PromptFile]


def _assemble(root: str, read: Callable[[str], str | None], prompt: _PromptLookup, folder: str,
              renderer: str | None = None) -> m.Bundle:
    """Read the root flow and every sub-flow it reaches (`read` gives a flow's text, None when there is no
    such file), check them together and look up each prompt (`prompt` raises WavError for a bad one)."""
    from calling.flows.check import check_flows

    errors: list[SourceError] = []
    flows: dict[str, m.Flow] = {}
    sources: dict[str, str] = {}
    seen = {root}
    queue = [root]
    while queue:
        flow_id = queue.pop(0)
        file = posixpath.join(folder, flow_id) if folder else flow_id
        try:
            text = read(flow_id)
            if text is None:
                raise SourceErrors([SourceError(file, 1, 1, "", "cannot read: no such flow file")])
            flow = parse_flow(text, file, flow_id=flow_id, renderer=renderer)
        except SourceErrors as exc:
            errors.extend(exc.errors)
            continue
        flows[flow_id], sources[flow_id] = flow, text
        for node in flow.nodes.values():
            if not isinstance(node, m.SubFlow) or node.flow in seen:
                continue
            if read(node.flow) is None:
                errors.append(error(flow, ("nodes", node.id, "flow"), f"no such flow file: {node.flow}"))
                continue
            seen.add(node.flow)
            queue.append(node.flow)
    if root in flows:
        errors.extend(check_flows(flows, root))
    prompts = _check_prompts(flows, prompt, errors)
    if errors:
        raise SourceErrors(_ordered(errors))
    return m.Bundle(root, flows, prompts, folder, sources, version(root, sources, prompts))


def error(flow: m.Flow, path: PathKey, message: str) -> SourceError:
    return SourceError(flow.file, *flow.where(path), format_path(path), message)


def _ordered(errors: list[SourceError]) -> list[SourceError]:
    """Without repeats, file by file (in the order first reported), then by position."""
    unique = list(dict.fromkeys(errors))
    order = {f: i for i, f in enumerate(dict.fromkeys(e.file for e in unique))}
    return sorted(unique, key=lambda e: (order[e.file], e.line, e.column))


def _check_prompts(flows: Mapping[str, m.Flow], prompt: _PromptLookup,
                   errors: list[SourceError]) -> dict[str, m.PromptFile]:
    """Each prompt file once; a bad one is reported at its first reference in each flow that plays it."""
    found: dict[str, m.PromptFile] = {}
    bad: dict[str, str] = {}
    for flow in flows.values():
        reported: set[str] = set()
        for node in flow.nodes.values():
            for where, key in node.prompts():
                say = flow.says.get(key)
                if key not in found and key not in bad:
                    try:
                        found[key] = prompt(key, say)
                    except WavError as exc:
                        bad[key] = str(exc)
                if key in bad and key not in reported:
                    reported.add(key)
                    path = ("nodes", node.id, *where)
                    if path not in flow.positions:  # one prompt written as a string, not a list
                        path = path[:-1]
                    what = f"say prompt {_quote(say.text)}" if say is not None else f"prompt {key}"
                    errors.append(error(flow, path, f"{what}: {bad[key]}"))
    return found


def _quote(text: str, most: int = 40) -> str:
    return repr(text if len(text) <= most else text[: most - 1] + "…")


def _relative(path: Path, base: Path) -> str | None:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return None


class _Reader:
    """Reads one document into models, collecting errors instead of stopping at the first."""

    def __init__(self, doc: Document, flow_id: str, renderer: str | None = None) -> None:
        self.doc = doc
        self.flow_id = flow_id
        self.renderer = renderer
        self.says: dict[str, speech.Say] = {}  # the say prompts' keys (their rendered files) to what they say
        self.folder = posixpath.dirname(flow_id)
        self.errors: list[SourceError] = []
        self.parsed: dict[str, m.Node] = {}  # the nodes that loaded, also when others did not

    def fail(self, path: PathKey, message: str) -> Any:
        self.errors.append(self.doc.error(path, message))
        return _BAD

    def flow(self) -> m.Flow:
        data = self.doc.data
        if not isinstance(data, Mapping):
            raise SourceErrors([self.doc.error((), "a flow is a mapping with version, start and nodes")])
        values = self.fields(m.Flow, data, ())
        if self.errors or values is None:
            self.partial_targets(data)
            raise SourceErrors(sorted(self.errors, key=lambda e: (e.line, e.column)))
        nodes: Mapping[str, m.Node] = values["nodes"]
        if not values.get("name"):
            values["name"] = PurePosixPath(self.flow_id).stem
        if not values.get("start"):
            values["start"] = next(iter(nodes))
        return m.Flow(**values, id=self.flow_id, file=self.doc.file, positions=self.doc.positions, says=self.says)

    def partial_targets(self, data: Mapping[str, Any]) -> None:
        """With other errors present, still name transitions to nodes that do not exist (of nodes that loaded)."""
        from calling.flows.check import hint, unknown_targets

        raw_nodes = data.get("nodes")
        names = list(raw_nodes) if isinstance(raw_nodes, Mapping) else []
        if not names:
            return
        start = data.get("start")
        if isinstance(start, str) and start and start not in names:
            self.fail(("start",), f"no node named {start!r}{hint(start, names)}")
        for path, message in unknown_targets(self.parsed, names):
            self.fail(("nodes", *path), message)

    def fields(self, cls: type[Any], raw: Any, path: PathKey, *, extra: frozenset[str] = frozenset()
               ) -> dict[str, Any] | None:
        """The values of `cls`'s written fields from the mapping `raw`; None if any is wrong."""
        if not isinstance(raw, Mapping):
            self.fail(path, "must be a mapping")
            return None
        declared = m.specs(cls)
        allowed = {s.key for s in declared} | extra
        ok = True
        for key in raw:
            if key not in allowed:
                self.fail((*path, key), f"unknown key (expected one of {', '.join(sorted(allowed))})")
                ok = False
        values: dict[str, Any] = {}
        for s in declared:
            if s.key not in raw:
                if s.required:
                    self.fail((*path, s.key), f"required: {_lower_first(s.spec.doc)}")
                    ok = False
                continue
            value = raw[s.key]
            if value is None and s.spec.nullable:
                values[s.name] = None
                continue
            parsed = self.value(s.spec.kind, value, (*path, s.key))
            if parsed is _BAD:
                ok = False
            else:
                values[s.name] = parsed
        return values if ok else None

    def value(self, kind: m.Kind, raw: Any, path: PathKey) -> Any:
        reader: Callable[[Any, Any, PathKey], Any] = getattr(self, f"_{type(kind).__name__.lower()}")
        return reader(kind, raw, path)

    # --- one method per kind ----------------------------------------------------------------------

    def _text(self, _: m.Text, raw: Any, path: PathKey) -> Any:
        return raw if isinstance(raw, str) else self.fail(path, "must be a string")

    def _integer(self, kind: m.Integer, raw: Any, path: PathKey) -> Any:
        if type(raw) is int and kind.minimum <= raw <= kind.maximum:
            return raw
        return self.fail(path, f"must be a whole number from {kind.minimum} to {kind.maximum}")

    def _boolean(self, _: m.Boolean, raw: Any, path: PathKey) -> Any:
        return raw if isinstance(raw, bool) else self.fail(path, "must be true or false")

    def _choice(self, kind: m.Choice, raw: Any, path: PathKey) -> Any:
        if raw in kind.values:
            return raw
        return self.fail(path, f"must be one of {', '.join(kind.values)}, got {raw!r}")

    def _version(self, _: m.Version, raw: Any, path: PathKey) -> Any:
        return raw if type(raw) is int and raw == m.VERSION else self.fail(path, "only version 1 is supported")

    def _noderef(self, _: m.NodeRef, raw: Any, path: PathKey) -> Any:
        if isinstance(raw, str) and raw:
            return raw
        return self.fail(path, f"must be the name of a node, got {raw!r}")

    def _prompt(self, kind: m.Prompt, raw: Any, path: PathKey) -> Any:
        if not kind.many:
            return self._prompt_path(raw, path)
        if isinstance(raw, str):
            key = self._prompt_path(raw, path)
            return _BAD if key is _BAD else (key,)
        if isinstance(raw, Mapping):
            key = self._prompt_path(raw, path)
            return _BAD if key is _BAD else (key,)
        if not isinstance(raw, list) or not 1 <= len(raw) <= m.MAX_PROMPTS:
            return self.fail(path, f"must be a prompt (a .wav path or {{say: text}}) or a list of 1 to "
                                   f"{m.MAX_PROMPTS} of them")
        keys = [self._prompt_path(item, (*path, i)) for i, item in enumerate(raw)]
        return _BAD if _BAD in keys else tuple(keys)

    def _prompt_path(self, raw: Any, path: PathKey) -> Any:
        if isinstance(raw, Mapping):
            return self._say(raw, path)
        if not isinstance(raw, str) or not raw.lower().endswith(".wav"):
            return self.fail(path, "a prompt is the path of a .wav file, relative to the flow file, or "
                                   f"{{say: text}}, got {raw!r}")
        return self._inside(raw, path, "prompt")

    def _say(self, raw: Mapping[str, Any], path: PathKey) -> Any:
        """`{say: text, voice?: name, language?: BCP-47}`: the key of its rendered file (speech.key)."""
        before = len(self.errors)
        for name in raw:
            if name not in _SAY_KEYS:
                self.fail((*path, name), f"unknown key (expected one of {', '.join(_SAY_KEYS)})")
        text = raw.get("say")
        if "say" not in raw:
            self.fail(path, "a prompt given as a mapping needs `say`: the text to speak")
        elif not isinstance(text, str) or not text.strip():
            self.fail((*path, "say"), f"must be the text to speak, got {text!r}")
        elif len(text) > speech.MAX_TEXT:
            self.fail((*path, "say"), f"is {len(text)} characters; at most {speech.MAX_TEXT} (about two minutes "
                                      "of speech): split it or record a .wav")
        voice = raw.get("voice", "")
        if not isinstance(voice, str) or ("voice" in raw and not speech.VOICE.match(voice)):
            self.fail((*path, "voice"), "must be a voice name such as en-us (espeak-ng) or "
                                        f"en-US-AvaMultilingualNeural (Azure AI Speech), got {voice!r}")
        language = raw.get("language", "")
        if not isinstance(language, str) or ("language" in raw and not speech.LANGUAGE.match(language)):
            self.fail((*path, "language"), f"must be a BCP-47 language tag such as en-US or fr-CA, got {language!r}")
        if len(self.errors) > before:
            return _BAD
        try:
            renderer = self.renderer or speech.renderer_name()
        except speech.SpeechError as exc:
            return self.fail(path, str(exc))
        say = speech.Say(" ".join(str(text).split()), voice, language)
        key = speech.key(say, renderer)
        self.says[key] = say
        return key

    def _inside(self, raw: str, path: PathKey, what: str) -> Any:
        """A path relative to this flow file, as a key relative to the bundle's folder (no escaping it)."""
        if raw.startswith("/") or "\\" in raw or re.match(r"^[A-Za-z]:", raw):
            return self.fail(path, f"a {what} path is relative, with /, got {raw!r}")
        key = posixpath.normpath(posixpath.join(self.folder, raw))
        if key == ".." or key.startswith("../"):
            return self.fail(path, f"the {what} {raw!r} is outside the flows folder")
        return key

    def _target(self, kind: m.Target, raw: Any, path: PathKey) -> Any:
        if not kind.many:
            return self._one_target(raw, path)
        if not isinstance(raw, list) or not 1 <= len(raw) <= kind.max_items:
            return self.fail(path, f"must be a list of 1 to {kind.max_items} targets")
        targets = [self._one_target(item, (*path, i)) for i, item in enumerate(raw)]
        return _BAD if _BAD in targets else tuple(targets)

    def _one_target(self, raw: Any, path: PathKey) -> Any:
        from calling.routing import parse_target  # the routing policy's target syntax, shared

        try:
            parse_target(raw)
        except ValueError as exc:
            return self.fail(path, str(exc))
        return raw

    def _keys(self, kind: m.Keys, raw: Any, path: PathKey) -> Any:
        if not kind.many:
            return self._key(raw, path)
        items = raw if isinstance(raw, list) else [raw]
        keys = [self._key(item, (*path, i) if isinstance(raw, list) else path) for i, item in enumerate(items)]
        return _BAD if _BAD in keys else tuple(keys)

    def _key(self, raw: Any, path: PathKey) -> Any:
        key = str(raw) if type(raw) is int else raw
        if isinstance(key, str) and len(key) == 1 and key in m.KEYS:
            return key
        return self.fail(path, f"a key is one of 0-9, \"*\" or \"#\" (quote * and #), got {raw!r}")

    def _options(self, _: m.Options, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, Mapping) or not raw:
            return self.fail(path, "must map keys to nodes, like 1: sales")
        out: dict[str, str] = {}
        for key, target in raw.items():
            if not _OPTION.match(key) or len(key) > m.MAX_DIGITS:
                self.fail((*path, key), f"an option is 1 to {m.MAX_DIGITS} of the keys 0-9 * #, got {key!r}")
            elif self._noderef(m.NodeRef(), target, (*path, key)) is not _BAD:
                out[key] = target
        return out if len(out) == len(raw) else _BAD

    def _timezone(self, _: m.TimeZone, raw: Any, path: PathKey) -> Any:
        if isinstance(raw, str) and raw and _is_zone(raw):
            return raw
        return self.fail(path, f"must be an IANA time zone such as Europe/London, got {raw!r}")

    def _weekly(self, _: m.Weekly, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, Mapping) or not raw:
            return self.fail(path, 'must map days to hours, like mon-fri: "08:30-17:30"')
        out: list[m.OpenHours] = []
        ok = True
        for spec, hours in raw.items():
            days = self._day_spec(spec, (*path, spec))
            ranges = self._timeranges(m.TimeRanges(), hours, (*path, spec))
            if days is _BAD or ranges is _BAD:
                ok = False
                continue
            out.extend(m.OpenHours(days, r) for r in ranges)
        return tuple(out) if ok else _BAD

    def _timeranges(self, _: m.TimeRanges, raw: Any, path: PathKey) -> Any:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            return self.fail(path, 'must be a time range like "09:00-17:00" or a list of them')
        ranges = [self._time_range(item, (*path, i) if isinstance(raw, list) else path)
                  for i, item in enumerate(items)]
        return _BAD if _BAD in ranges else tuple(ranges)

    def _time_range(self, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, str):
            return self.fail(path, f'a time range is a quoted string like "09:00-17:00", got {raw!r}')
        match = _TIME.match(raw)
        if match:
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if h1 < 24 and m1 < 60 and m2 < 60 and (h2 < 24 or end == 1440) and start != end and start < 1440:
                return m.TimeRange(start, end, raw.strip())
        return self.fail(path, f'a time range is "HH:MM-HH:MM" with different times (24:00 ends a day), got {raw!r}')

    def _days(self, _: m.Days, raw: Any, path: PathKey) -> Any:
        items = raw if isinstance(raw, list) else [raw]
        days: list[int] = []
        for i, item in enumerate(items):
            parsed = self._day_spec(item, (*path, i) if isinstance(raw, list) else path)
            if parsed is _BAD:
                return _BAD
            days.extend(d for d in parsed if d not in days)
        return tuple(sorted(days)) if days else self.fail(path, "must name at least one day")

    def _day_spec(self, raw: Any, path: PathKey) -> Any:
        """`mon`, `mon-fri`, `fri-mon` (wraps), `sat,sun`."""
        days: list[int] = []
        for part in raw.replace(" ", "").split(",") if isinstance(raw, str) else [None]:
            first, _, last = (part or "").partition("-")
            if first not in _DAY_NAMES or (last and last not in _DAY_NAMES):
                return self.fail(path, f"days are mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or "
                                       f"lists like sat,sun, got {raw!r}")
            a = _DAY_NAMES[first]
            b = _DAY_NAMES[last] if last else a
            days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
        return tuple(sorted(set(days)))

    def _holidays(self, _: m.Holidays, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, list):
            return self.fail(path, "must be a list of dates")
        out = [self._holiday(item, (*path, i)) for i, item in enumerate(raw)]
        return _BAD if _BAD in out else tuple(out)

    def _holiday(self, raw: Any, path: PathKey) -> Any:
        if isinstance(raw, date) and not isinstance(raw, datetime):
            return m.Holiday(raw, raw)
        text = raw if isinstance(raw, str) else ""
        first, _, last = text.partition("..")
        a, b = _holiday_day(first), _holiday_day(last or first)
        if a is None or b is None or a[1] != b[1] or a[0] > b[0]:
            return self.fail(path, "a holiday is YYYY-MM-DD, a range YYYY-MM-DD..YYYY-MM-DD, or MM-DD (every "
                                   f"year), in order and not across the new year, got {raw!r}")
        return m.Holiday(a[0], b[0], annual=a[1])

    def _globs(self, _: m.Globs, raw: Any, path: PathKey) -> Any:
        items = raw if isinstance(raw, list) else [raw]
        if not items or not all(isinstance(v, str) and v for v in items):
            return self.fail(path, "must be a string or a list of strings (quote +numbers)")
        return tuple(items)

    def _flowpath(self, _: m.FlowPath, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, str) or not raw.endswith((".yaml", ".yml")):
            return self.fail(path, f"must be the path of a .yaml flow file, relative to this one, got {raw!r}")
        return self._inside(raw, path, "flow")

    def _object(self, kind: m.Object, raw: Any, path: PathKey) -> Any:
        values = self.fields(kind.cls, raw, path)
        return _BAD if values is None else kind.cls(**values)

    def _items(self, kind: m.Items, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, list) or len(raw) < kind.min_items:
            return self.fail(path, f"must be a list of at least {kind.min_items}")
        out = [self._object(m.Object(kind.cls), item, (*path, i)) for i, item in enumerate(raw)]
        return _BAD if _BAD in out else tuple(out)

    def _nodemap(self, _: m.NodeMap, raw: Any, path: PathKey) -> Any:
        if not isinstance(raw, Mapping) or not raw:
            return self.fail(path, "must map node names to nodes (at least one)")
        nodes: dict[str, m.Node] = {}
        for name, body in raw.items():
            node = self._node(name, body, (*path, name))
            if node is not _BAD:
                nodes[name] = node
        self.parsed = nodes
        return nodes if len(nodes) == len(raw) else _BAD

    def _node(self, name: str, raw: Any, path: PathKey) -> Any:
        types = ", ".join(m.NODE_TYPES)
        if not isinstance(raw, Mapping):
            return self.fail(path, f"a node is a mapping with a type ({types})")
        kind = raw.get("type")
        if "type" not in raw:
            return self.fail((*path, "type"), f"required: one of {types}")
        cls = m.NODE_TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            return self.fail((*path, "type"), f"must be one of {types}, got {kind!r}")
        values = self.fields(cls, raw, path, extra=frozenset({"type"}))
        if values is None:
            return _BAD
        node = cls(id=name, **values)
        if isinstance(node, m.Menu) and not self._menu_ok(node, path):
            return _BAD
        if isinstance(node, m.Record) and not node.mailbox:
            node = dataclasses.replace(node, mailbox=name)
        if isinstance(node, m.Queue) and not self._queue_ok(node, path):
            return _BAD
        return node

    def _queue_ok(self, queue: m.Queue, path: PathKey) -> bool:
        before = len(self.errors)
        seen = [a.lower() for a in queue.agents]  # object ids are GUIDs: case does not tell two apart
        for i, agent in enumerate(queue.agents):
            if agent.lower() in seen[:i]:
                self.fail((*path, "agents", i), f"{agent} is listed twice; each agent once")
        if queue.queue and not _LINE_NAME.fullmatch(queue.queue):
            self.fail((*path, "queue"), f"must be 1 to 100 letters, digits, spaces or . _ : - (it names the "
                                        f"line's Durable entity), got {queue.queue!r}")
        return len(self.errors) == before

    def _menu_ok(self, menu: m.Menu, path: PathKey) -> bool:
        before = len(self.errors)
        if menu.max_digits is not None and menu.min_digits > menu.max_digits:
            self.fail((*path, "min_digits"), f"is more than max_digits ({menu.max_digits})")
        for key in menu.options:
            if not menu.min_digits <= len(key) <= menu.digits_max:
                self.fail((*path, "options", key), f"{key!r} can never be entered: inputs are "
                          f"{menu.min_digits} to {menu.digits_max} keys (min_digits, max_digits)")
            elif menu.terminator and menu.terminator in key:
                self.fail((*path, "options", key), f"{key!r} contains the terminator "
                          f"{menu.terminator!r}; set terminator to another key or null")
        return len(self.errors) == before


def _holiday_day(text: str) -> tuple[date, bool] | None:
    match = _HOLIDAY.match(text.strip())
    if not match:
        return None
    year, month, day = match.groups()
    try:
        return date(int(year or 2000), int(month), int(day)), year is None
    except ValueError:
        return None


def _lower_first(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
