#!/usr/bin/env python3
"""Project tasks that work on a fresh machine with only Python 3.11+, Node.js and git.

    python3 dev.py demo     set up, then run a simulated phone call through the real bot (scenarios/demo.yaml)
    python3 dev.py test     set up .venv (first run or when dependencies change), then lint, type-check, test
    python3 dev.py bench    set up, then run the benchmarks in bench/
    python3 dev.py lock     regenerate requirements.txt from pyproject.toml's runtime dependencies

Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
# checkov pins many packages the app also uses, so the infrastructure checks get a venv of their own.
INFRA_VENV = ROOT / ".venv-infra"
INFRA_REQUIREMENTS = ROOT / "infra" / "requirements-check.txt"
NODE_STAMP = ROOT / "node_modules" / ".installed"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(*args: str | Path, check: bool = True) -> int:
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if check and code != 0:
        sys.exit(code)
    return code


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "requirements.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def setup() -> None:
    """Create .venv and install the package with its dev tools, pinned, only when inputs changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    if not PY.exists():
        say(f"creating {VENV.name}/")
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = _inputs_digest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    say("installing pinned dependencies (first run or dependencies changed)")
    run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", "requirements.txt", "-e", ".[dev,windows]")
    STAMP.write_text(wanted)


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def setup_node() -> None:
    """npm ci the Node tools the tests use (Azurite, the Teams manifest schema), only when the lock changed."""
    lock = ROOT / "package-lock.json"
    wanted = _digest(ROOT / "package.json", lock)
    if NODE_STAMP.exists() and NODE_STAMP.read_text() == wanted:
        return
    say("installing Node tools (npm ci: Azurite, Teams app manifest schema)")
    npm = "npm.cmd" if os.name == "nt" else "npm"
    run(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
    NODE_STAMP.write_text(wanted)


def setup_infra() -> None:
    """A separate venv with checkov (and the pycep-parser it brings) for the offline Bicep checks."""
    if not INFRA_REQUIREMENTS.exists():
        return
    bin_dir = INFRA_VENV / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    stamp = INFRA_VENV / ".installed"
    wanted = _digest(INFRA_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not python.exists():
        say(f"creating {INFRA_VENV.name}/ (checkov for the Bicep checks)")
        venv.EnvBuilder(with_pip=True).create(INFRA_VENV)
    say("installing the infrastructure checks (checkov, pinned)")
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", INFRA_REQUIREMENTS)
    stamp.write_text(wanted)


#: Debian's Mono for the Windows engine's tests (tests/test_windows_engine.py): mcs compiles the stand-in of Microsoft's
#: media library (tests/dotnet_standin/), pythonnet runs the engine's interop on it. mono-devel brings the facade
#: assemblies (netstandard.dll) pythonnet's runtime needs; libmonosgen-2.0-1 is the runtime clr_loader loads.
MONO_PACKAGES = ("mono-mcs", "mono-runtime", "mono-devel", "libmonosgen-2.0-1")
MONO_FILES = (Path("/usr/bin/mcs"), Path("/usr/lib/mono/4.5/Facades/netstandard.dll"),
              Path("/usr/lib/libmonosgen-2.0.so.1"))


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """CI is set to anything but empty, 0, false or no (GitHub Actions sets CI=true, others CI=1)."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _without(what: str, needed_in_ci: bool) -> str:
    """What becomes of `what` without the packages: it skips, or under CI, when it needs them there, it fails."""
    if needed_in_ci and in_ci():
        return f"{what} will FAIL without them (CI is set: it does not skip there)"
    return f"{what} will skip"


def apt_install(packages: tuple[str, ...], what: str, *, needed_in_ci: bool = False) -> None:
    """Install Debian packages when this is root with apt-get; else say that `what` will skip (or, when it is
    `needed_in_ci` and this is CI, fail), and why."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        say(f"{' '.join(packages)} missing and this is not root with apt-get: {_without(what, needed_in_ci)} "
            f"(apt-get install {' '.join(packages)})")
        return
    say(f"installing for {what} (apt-get: {' '.join(packages)})")
    quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        done = subprocess.run(command, cwd=ROOT, env=quiet, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        if done.returncode != 0:
            say(f"{' '.join(command[:2])} failed ({done.returncode}): {_without(what, needed_in_ci)}\n"
                + done.stderr.strip()[-2000:])
            return


def setup_mono() -> None:
    """Debian's Mono, when it is missing: the Windows engine's tests run its interop on it."""
    if sys.platform == "linux" and not all(path.exists() for path in MONO_FILES):
        apt_install(MONO_PACKAGES, "the Windows engine's tests")


#: Debian's espeak-ng renders `say:` prompts locally and in the tests (calling/flows/speech.py).
ESPEAK_PACKAGES = ("espeak-ng",)


def setup_espeak() -> None:
    """Debian's espeak-ng, when it is missing: the say-prompt rendering tests use it."""
    if sys.platform == "linux" and not shutil.which("espeak-ng"):
        apt_install(ESPEAK_PACKAGES, "the say-prompt rendering tests")


#: Debian's Chromium for the softphone's browser test (tests/test_softphone_browser.py, driven by playwright-core).
CHROMIUM_PACKAGES = ("chromium",)
CHROMIUM = Path("/usr/bin/chromium")


def setup_chromium() -> None:
    """Debian's Chromium, when it is missing: the softphone's browser test runs the page in it."""
    if sys.platform == "linux" and not CHROMIUM.exists():
        apt_install(CHROMIUM_PACKAGES, "the softphone's browser test", needed_in_ci=True)


def test(extra: list[str]) -> int:
    setup()
    setup_node()
    setup_infra()
    setup_mono()
    setup_espeak()
    setup_chromium()
    say("ruff (lint)")
    lint = run(BIN / "ruff", "check", ".", check=False)
    say("mypy (types)")
    types = run(BIN / "mypy", check=False)
    say("pytest")
    tests = run(PY, "-m", "pytest", *extra, check=False)
    failed = [name for name, code in (("ruff", lint), ("mypy", types), ("pytest", tests)) if code]
    if failed:
        say("FAILED: " + ", ".join(failed))
        return 1
    return 0  # nothing after pytest's summary: it is the run's closing line


def demo(extra: list[str]) -> int:
    setup()
    return run(PY, "-m", "simulator", "demo", *extra, check=False)


def bench(extra: list[str]) -> int:
    setup()
    return run(PY, "-m", "bench", *extra, check=False)


def lock() -> int:
    """Resolve pyproject's runtime dependencies in a clean venv and write requirements.txt."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    with tempfile.TemporaryDirectory() as tmp:
        venv.EnvBuilder(with_pip=True).create(tmp)
        tpy = Path(tmp) / ("Scripts" if os.name == "nt" else "bin") / "python"
        subprocess.check_call([str(tpy), "-m", "pip", "install", "--quiet", *deps])
        frozen = subprocess.check_output([str(tpy), "-m", "pip", "freeze"], text=True)
    header = (
        "# The Functions deployment installs exactly this (Azure runs pip install -r requirements.txt).\n"
        "# Direct dependencies are pinned in pyproject.toml; this file locks them with everything they pull in.\n"
        "# Regenerate: python3 dev.py lock\n"
    )
    (ROOT / "requirements.txt").write_text(header + _keep_markers(frozen, deps))
    say("requirements.txt written")
    return 0


def _name(requirement: str) -> str:
    return re.split(r"[\s=<>!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _keep_markers(frozen: str, deps: list[str]) -> str:
    """A dependency pinned per Python version in pyproject keeps its marked lines; the freeze saw only one."""
    marked: dict[str, list[str]] = {}
    for dep in deps:
        if ";" in dep:
            marked.setdefault(_name(dep), []).append(dep)
    lines = []
    for line in frozen.splitlines():
        lines.extend(marked.get(_name(line), [line]))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    commands = {"demo": demo, "test": test, "bench": bench}
    if not argv or argv[0] not in (*commands, "lock"):
        print(__doc__)
        return 2
    if argv[0] == "lock":
        return lock()
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
