"""`python -m calling.flows check [--render] FILE... | render FILE | schema`: the flow tools for authors and CI.

`check --render` first renders the say prompts that have no file yet (calling/flows/speech.py), with
`--renderer` or SAY_RENDERER's renderer; plain `check` reports them as not rendered.

`check` prints one `FILE:LINE:COLUMN: field: message` line per problem and exits 1, or a summary per
file and exits 0. Nothing here prints a traceback: a missing file, bad YAML or a wrong encoding is a
positioned error like any other, and an unexpected failure is one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from calling.flows.speech import RENDERERS
from calling.yamlsource import SourceErrors


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m calling.flows", description="Check, draw and describe "
                                     "IVR flow files (docs/flows.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check flows, their sub-flows and prompt files")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--folder", help="the folder flow ids and prompt keys are relative to (default: each "
                                        "file's folder)")
    check.add_argument("--render", action="store_true", help="render say prompts that have no file yet into "
                                                              "the folder's .rendered/")
    check.add_argument("--renderer", choices=RENDERERS, help="what renders and names say prompts (default: "
                                                             "SAY_RENDERER, else espeak-ng)")
    render = commands.add_parser("render", help="print a Mermaid flowchart of a flow")
    render.add_argument("file", metavar="FILE")
    commands.add_parser("schema", help="print the flow files' JSON Schema")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.files, args.folder, out, err, render=args.render, renderer=args.renderer)
        if args.command == "render":
            return _render(args.file, out, err)
        from calling.flows.schema import schema_text

        out.write(schema_text())
        return 0
    except Exception as exc:  # a bug must still be one line, not a traceback
        err.write(f"internal error: {type(exc).__name__}: {exc}\n")
        return 2


def _check(files: Sequence[str], folder: str | None, out: TextIO, err: TextIO, *, render: bool = False,
           renderer: str | None = None) -> int:
    from calling.flows.load import load_bundle

    printed: set[str] = set()
    failed = False
    for file in files:
        try:
            bundle = load_bundle(file, folder=folder, render=render, renderer=renderer)
        except SourceErrors as exc:
            failed = True
            for error in exc.errors:
                line = str(error)
                if line not in printed:
                    printed.add(line)
                    err.write(line + "\n")
            continue
        nodes = sum(len(f.nodes) for f in bundle.flows.values())
        audio = sum(p.duration for p in bundle.prompts.values())
        subs = len(bundle.flows) - 1
        says = len({k for f in bundle.flows.values() for k in f.says})
        out.write(f"{file}: ok ({nodes} nodes{f', {subs} sub-flow(s)' if subs else ''}, "
                  f"{len(bundle.prompts)} prompts{f' ({says} say)' if says else ''}, {audio:.1f} s of audio)\n")
    return 1 if failed else 0


def _render(file: str, out: TextIO, err: TextIO) -> int:
    from calling.flows.load import load_flow
    from calling.flows.mermaid import render

    try:
        flow = load_flow(file)
    except SourceErrors as exc:
        for error in exc.errors:
            err.write(f"{error}\n")
        return 1
    out.write(render(flow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
