"""A flow as a call started it: what the call's session carries, so a deployment mid-call cannot change it.

A call's orchestration replays on whatever instance runs it, maybe after a deployment replaced the flow
files; loading the flow by name there would run another flow from the middle of this one (or none at
all). So the session carries the bundle's file texts and prompt facts (a few KB) and the orchestrator
rebuilds the bundle from them with the same checks. `version` (a digest of both) lets a process that
still has the same files skip the rebuild.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from calling.flows import model as m

SNAPSHOT_VERSION = 1


def version(root: str, sources: Mapping[str, str], prompts: Mapping[str, m.PromptFile]) -> str:
    """The content digest of a bundle: its root, every flow text and every prompt's hash."""
    canonical = json.dumps({"root": root, "sources": dict(sources),
                            "prompts": {k: p.sha256 for k, p in prompts.items()}}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def snapshot(bundle: m.Bundle) -> dict[str, Any]:
    """The bundle as JSON for the session's input."""
    return {"v": SNAPSHOT_VERSION, "root": bundle.root, "version": bundle.version, "folder": bundle.folder,
            "sources": dict(bundle.sources),
            "prompts": {k: [p.sha256, p.duration, p.size] for k, p in bundle.prompts.items()}}


def restore(data: Any) -> m.Bundle:
    """The bundle a snapshot describes. ValueError when it is not one; SourceErrors when it no longer loads
    (this code's flow language refuses it); ValueError when its content does not match its version."""
    from calling.flows.load import bundle_from_sources

    if not isinstance(data, Mapping) or data.get("v") != SNAPSHOT_VERSION:
        raise ValueError(f"not a flow snapshot of version {SNAPSHOT_VERSION}")
    root, sources, prompts = data.get("root"), data.get("sources"), data.get("prompts")
    if not isinstance(root, str) or not isinstance(sources, Mapping) or not isinstance(prompts, Mapping):
        raise ValueError("a flow snapshot needs root, sources and prompts")
    try:
        files = {str(k): m.PromptFile(str(k), str(v[0]), float(v[1]), int(v[2])) for k, v in prompts.items()}
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"a flow snapshot's prompts are malformed: {exc}") from None
    texts = {str(k): str(v) for k, v in sources.items()}
    bundle = bundle_from_sources(root, texts, files, str(data.get("folder") or ""))
    if bundle.version != data.get("version"):
        raise ValueError(f"the flow snapshot of {root} does not match its version")
    return bundle
