"""docs/flows.md stays true: every node's keys are documented, and every YAML example loads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from calling.flows import model as m
from calling.flows.load import load_bundle, parse_flow

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "flows.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.DOTALL)


def section(title: str) -> str:
    start = DOC.index(f"### `{title}`\n")
    end = DOC.find("\n## ", start)
    nxt = DOC.find("\n### ", start + 1)
    return DOC[start:min(x for x in (end, nxt) if x != -1)]


@pytest.mark.parametrize("name", list(m.NODE_TYPES))
def test_every_key_of_every_node_is_documented(name: str) -> None:
    text = section(name)
    for spec in m.specs(m.NODE_TYPES[name]):
        if spec.key != "description":
            assert f"`{spec.key}`" in text, f"{name}.{spec.key} is not in docs/flows.md"


def test_every_flow_key_is_documented() -> None:
    text = DOC[DOC.index("## File format"):DOC.index("## Nodes")]
    for spec in m.specs(m.Flow):
        assert f"`{spec.key}`" in text


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example {i + 1}" for i in range(len(BLOCKS))])
def test_every_yaml_example_loads(block: str) -> None:
    text = block if block.lstrip().startswith(("#", "version", "nodes", "start")) else "nodes:\n" + block
    parse_flow(text, "example.yaml")


def test_the_first_example_passes_every_check(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "flows" / "prompts", tmp_path / "prompts")
    (tmp_path / "first.yaml").write_text(BLOCKS[0], encoding="utf-8")
    bundle = load_bundle(tmp_path / "first.yaml")
    assert bundle.flow.start == "office-hours"
