"""Stage what the media VM's setup downloads: `python mediavm/setup/stage.py --out DIR` (the azd hooks run it).

DIR then holds, under the blob names the media-artifacts container gets (`az storage blob upload-batch --source
DIR`), the paths the setup script and infra/main.bicep use:

    mediavm/setup/setup.ps1                     the Custom Script Extension's fileUris (mediaVmSetupScript)
    mediavm/setup/manifest.json                 what setup.ps1 reads first: every file below with its SHA-256
    mediavm/setup/requirements-worker.txt       the worker's pinned packages for Windows
    mediavm/setup/MediaWorkerService.cs         the Windows service wrapper, compiled on the VM
    mediavm/setup/vmtool.py                     PFX -> PEM and the local health check, run on the VM
    mediavm/dist/teams_calling-<v>-py3-none-any.whl   the worker (this project's wheel)

The wheel is built with `python -m pip wheel --no-deps` from a copy of the project (setuptools' build/ folder
stays out of the repository, where the Functions deployment would ship it); pip fetches the pinned build backend
(setuptools) from PyPI, nothing else. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SETUP = Path(__file__).resolve().parent
ROOT = SETUP.parent.parent
#: Blob name prefix of everything (the repository path of mediavm/).
PREFIX = "mediavm"
#: manifest role -> the file in mediavm/setup/ (setup.ps1 asks for roles, not names).
SETUP_FILES = {
    "requirements": "requirements-worker.txt",
    "service": "MediaWorkerService.cs",
    "tool": "vmtool.py",
}
SCRIPT = "setup.ps1"
MANIFEST = f"{PREFIX}/setup/manifest.json"
#: What the wheel needs of the project (pyproject.toml's packages, py-modules and readme).
PROJECT = ("pyproject.toml", "README.md", "function_app.py", "calling", "functions", "orchestrations", "simulator",
           "devhost", "mediavm")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "setup", "*.egg-info", "build")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_wheel(into: Path) -> Path:
    """The project's wheel, built from a copy of it (no build/ or egg-info left in the repository)."""
    with tempfile.TemporaryDirectory(prefix="media-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        for name in PROJECT:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, source / name, ignore=IGNORE)
            else:
                shutil.copy2(path, source / name)
        into.mkdir(parents=True, exist_ok=True)
        before = set(into.glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",  # noqa: S603
                        "--no-deps", "--wheel-dir", str(into), str(source)], check=True)
    built = sorted(set(into.glob("*.whl")) - before) or sorted(into.glob("teams_calling-*.whl"))
    if len(built) != 1:
        raise SystemExit(f"expected one wheel in {into}, found {[p.name for p in built]}")
    return built[0]


def stage(out: Path) -> dict[str, object]:
    """Lay out everything under `out` and write the manifest; returns the manifest."""
    setup_dir = out / PREFIX / "setup"
    setup_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SETUP / SCRIPT, setup_dir / SCRIPT)
    files: dict[str, dict[str, object]] = {}
    for role, name in SETUP_FILES.items():
        shutil.copy2(SETUP / name, setup_dir / name)
        files[role] = {"blob": f"{PREFIX}/setup/{name}"}
    wheel = build_wheel(out / PREFIX / "dist")
    files["wheel"] = {"blob": f"{PREFIX}/dist/{wheel.name}"}
    for entry in files.values():
        path = out / str(entry["blob"])
        entry["sha256"] = sha256(path)
        entry["bytes"] = path.stat().st_size
    manifest: dict[str, object] = {"version": 1, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stage", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="an empty folder to stage into")
    args = parser.parse_args(argv)
    manifest = stage(args.out.resolve())
    files = manifest["files"]
    assert isinstance(files, dict)
    for role, entry in sorted(files.items()):
        print(f"{role}: {entry['blob']} ({entry['bytes']} bytes, sha256 {entry['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
