"""IVR flows as code: YAML flow files, their checks, and the pure engine that runs them.

`load_bundle(path)` reads and checks a flow with its sub-flows and prompts; `step(bundle, state, event)`
runs it one event at a time. See docs/flows.md.
"""

from calling.flows.engine import step
from calling.flows.load import load_bundle, load_flow, parse_flow
from calling.flows.model import Bundle, Flow
from calling.flows.state import State

__all__ = ["Bundle", "Flow", "State", "load_bundle", "load_flow", "parse_flow", "step"]
