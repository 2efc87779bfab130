"""The deployment as Azure receives it, and the Pythons to run it in, for tests/test_functions_worker.py.

- `deployment(dest)`: the files `.funcignore` keeps (what `azd deploy` / `func azure functionapp publish`
  upload), with `requirements.txt` installed into `.python_packages/lib/site-packages` as the remote build
  does. The installed packages are cached per interpreter and requirements digest under `.venv-worker/`.
- `worker_python()`: a Python 3.13 virtual environment with Microsoft's worker library
  (`tests/functions_worker/requirements.txt`), built once per digest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".venv-worker"
WORKER_REQUIREMENTS = HERE / "requirements.txt"


def _bin(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / (f"{name}.exe" if os.name == "nt" else name)


def _runs(python: str | Path, version: str) -> bool:
    try:
        out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> Path | None:
    """An interpreter of `version` ("3.13"): $PYTHON<major><minor>, this one, PATH, or pyenv's versions."""
    override = os.environ.get("PYTHON" + version.replace(".", ""))
    candidates: list[str | Path] = [override] if override else []
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        candidates.append(sys.executable)
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted((pyenv_root / "versions").glob(f"{version}*/bin/python{version}"), reverse=True)
    return next((Path(c) for c in candidates if _runs(c, version)), None)


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _pip(python: Path, *args: str | Path) -> None:
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", *map(str, args)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")


def worker_python(base: Path) -> Path:
    """The worker venv's interpreter (built from `base`, a Python 3.13), with the worker library installed."""
    env = CACHE / "worker"
    stamp = env / ".installed"
    wanted = _digest(WORKER_REQUIREMENTS)
    python = _bin(env, "python")
    if not (stamp.exists() and stamp.read_text() == wanted and python.exists()):
        shutil.rmtree(env, ignore_errors=True)
        subprocess.run([str(base), "-m", "venv", str(env)], check=True, capture_output=True)
        _pip(python, "install", "-r", WORKER_REQUIREMENTS)
        stamp.write_text(wanted)
    return python


def site_packages(python: Path, tag: str) -> Path:
    """requirements.txt installed with `python` into a clean `--target` folder, as the remote build does."""
    folder = CACHE / f"packages-{tag}-{_digest(ROOT / 'requirements.txt')}"
    if not (folder / ".installed").exists():
        shutil.rmtree(folder, ignore_errors=True)
        _pip(python, "install", "--no-compile", "--target", folder, "-r", ROOT / "requirements.txt")
        (folder / ".installed").write_text("")
    return folder


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    """`.funcignore` is read with .gitignore rules: a pattern with a trailing slash names folders only."""
    name = relative.rsplit("/", 1)[-1]
    for written in patterns:
        folder_only = written.endswith("/")
        pattern = written.rstrip("/")
        if folder_only and not is_dir:
            continue
        target = relative if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
            return True
    return False


def kept_files() -> list[str]:
    """Every file of the project that the deployment keeps, relative to the root."""
    patterns = ignore_patterns()
    kept: list[str] = []
    for folder, dirs, files in os.walk(ROOT):
        base = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = sorted(d for d in dirs if not _ignored(prefix + d, True, patterns))
        kept += [prefix + f for f in sorted(files) if not _ignored(prefix + f, False, patterns)]
    return kept


def deployment(dest: Path, packages: Path) -> Path:
    """The deployed app in `dest`: the kept files, and the installed packages where the worker looks."""
    for relative in kept_files():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    (dest / ".python_packages" / "lib").mkdir(parents=True)
    (dest / ".python_packages" / "lib" / "site-packages").symlink_to(packages, target_is_directory=True)
    return dest
