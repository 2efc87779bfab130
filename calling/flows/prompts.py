"""Every prompt a flow can play, and the Graph prompts (URI + resource id) they become.

The answer's preFetchMedia should list exactly what the flow may play, so Graph has it cached before
the first playPrompt; listing it from the bundle keeps the two from drifting. Where prompts are served
from is configuration (a Blob container in Azure, the local host locally): `base_url` + the key. The
URI carries the file's content hash, so a changed recording gets a new URI and therefore a new
resource id (`calling.graph.prompt_resource_id`) instead of Graph's stale cached copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from calling.flows import model as m

if TYPE_CHECKING:
    from calling.graph import Prompt, ServiceHostedMedia

DIGEST_CHARS = 16


def flow_prompts(bundle: m.Bundle) -> tuple[m.PromptFile, ...]:
    """Every prompt the flow and its sub-flows can play, each once, in the order the flows name them."""
    keys: dict[str, None] = {}
    for flow in bundle.flows.values():
        for node in flow.nodes.values():
            for _, key in node.prompts():
                keys.setdefault(key)
    return tuple(bundle.prompts[k] for k in keys if k in bundle.prompts)


def prompt_uri(base_url: str, prompt: m.PromptFile) -> str:
    """`base_url`/key?v=<content hash>; a query already in `base_url` (a SAS token) is kept."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/") + "/" + quote(prompt.key)
    version = f"v={prompt.sha256[:DIGEST_CHARS]}"
    query = f"{parts.query}&{version}" if parts.query else version
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _prompt(base_url: str, prompt: m.PromptFile) -> Prompt:
    """The resource id (Graph's cache key) comes from the URI without base_url's own query (a SAS), so a
    renewed SAS is the same cached prompt; the content hash in `v=` still changes it when the file does."""
    from calling.graph import Prompt, prompt_resource_id

    parts = urlsplit(base_url)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return Prompt(prompt_uri(base_url, prompt), resource_id=prompt_resource_id(prompt_uri(bare, prompt)))


def graph_prompt(bundle: m.Bundle, key: str, base_url: str) -> Prompt:
    """The Graph prompt for a key in a Play command."""
    return _prompt(base_url, bundle.prompts[key])


def graph_prompt_of(key: str, sha256: str, base_url: str) -> Prompt:
    """The Graph prompt for a key whose content hash the command carries (calling.session.Session.action)."""
    return _prompt(base_url, m.PromptFile(key, sha256, 0.0, 0))


def prefetch(bundle: m.Bundle, base_url: str) -> ServiceHostedMedia:
    """Service-hosted media for answering a call that runs this flow, with every prompt prefetched."""
    from calling.graph import ServiceHostedMedia

    return ServiceHostedMedia(prefetch=tuple(_prompt(base_url, p) for p in flow_prompts(bundle)))
