"""The Teams app package (appPackage/build.py): a manifest valid against the schema @microsoft/app-manifest ships,
the two icons at the sizes Teams wants, exactly three files in the zip, and clear errors for bad parameters."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGE = ROOT / "appPackage"
BUILD = APP_PACKAGE / "build.py"
MANIFEST_NPM = ROOT / "node_modules" / "@microsoft" / "app-manifest"
BOT_APP_ID = "1b2c3d4e-0000-4000-8000-00000000ABCD"
HOST = "func-abc123.azurewebsites.net"

# The package's own validator (AppManifestUtils.readAndValidateTeamsManifest): it type-checks the manifest and
# validates it against the schema its $schema URL names, loaded from the package's bundled copy (no network).
NODE_VALIDATE = """
const { AppManifestUtils } = require(process.argv[1]);
AppManifestUtils.readAndValidateTeamsManifest(process.argv[2])
  .then(([manifest, failures]) => console.log(JSON.stringify({ manifestVersion: manifest.manifestVersion, failures })))
  .catch((error) => { console.error(String(error)); process.exit(3); });
"""


def build(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BUILD), "--out", str(out), *args], capture_output=True, text=True,
                          env=env, check=False, timeout=60)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package")
    result = build(out, "--bot-app-id", BOT_APP_ID, "--host", f"https://{HOST}/api/calls", "--name", "Contoso IVR")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "teams-app.zip")
    return out / "teams-app.zip"


@pytest.fixture(scope="module")
def manifest(package: Path) -> dict[str, Any]:
    with zipfile.ZipFile(package) as archive:
        data: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return data


def npm_package() -> Path:
    if not (MANIFEST_NPM / "package.json").is_file():
        pytest.fail("node_modules/@microsoft/app-manifest is missing: run `python3 dev.py test` (it runs npm ci)")
    return MANIFEST_NPM


@cache
def schema(version: str) -> dict[str, Any]:
    path = npm_package() / "build" / "json-schemas" / "teams" / f"v{version}" / "MicrosoftTeams.schema.json"
    assert path.is_file(), f"@microsoft/app-manifest ships no v{version} Teams schema ({path})"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def schema_errors(data: dict[str, Any]) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema(data["manifestVersion"]))
    validator = validator_class(schema(data["manifestVersion"]), format_checker=validator_class.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def node_validate(path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Teams manifest check runs @microsoft/app-manifest's validator")
    result = subprocess.run([node, "-e", NODE_VALIDATE, str(npm_package()), str(path)], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


# --- the manifest ---------------------------------------------------------------------------------------

def test_manifest_passes_the_npm_packages_own_validator(package: Path, tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    with zipfile.ZipFile(package) as archive:
        path.write_bytes(archive.read("manifest.json"))
    assert node_validate(path) == {"manifestVersion": "1.30", "failures": []}


def test_the_npm_validator_does_catch_a_bad_manifest(manifest: dict[str, Any], tmp_path: Path) -> None:
    bad = json.loads(json.dumps(manifest))
    bad["bots"][0]["botId"] = "not-a-guid"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(bad))
    failures = node_validate(path)["failures"]
    assert failures and any("/bots/0/botId" in failure for failure in failures), failures


def test_manifest_is_valid_against_the_shipped_json_schema(manifest: dict[str, Any]) -> None:
    assert manifest["$schema"] == (f"https://developer.microsoft.com/json-schemas/teams/v{manifest['manifestVersion']}"
                                   "/MicrosoftTeams.schema.json")
    assert schema_errors(manifest) == []


def test_manifest_describes_a_calling_bot(manifest: dict[str, Any]) -> None:
    assert manifest["bots"] == [{
        "botId": BOT_APP_ID.lower(),
        "scopes": ["personal", "team", "groupChat"],
        "supportsCalling": True,
        "supportsVideo": True,
        "supportsFiles": False,
        "isNotificationOnly": False,
    }]
    assert manifest["webApplicationInfo"] == {"id": BOT_APP_ID.lower()}
    assert manifest["validDomains"] == [HOST]
    assert manifest["name"]["short"] == "Contoso IVR"
    assert manifest["developer"]["websiteUrl"] == f"https://{HOST}/"
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}


def test_teams_app_id_is_a_stable_guid_of_its_own(manifest: dict[str, Any], tmp_path: Path) -> None:
    assert manifest["id"] != BOT_APP_ID.lower()
    again = build(tmp_path, "--bot-app-id", BOT_APP_ID.lower(), "--host", HOST, "--name", "Other name")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "manifest.json").read_text())["id"] == manifest["id"]


def test_the_same_inputs_give_the_same_zip(package: Path, tmp_path: Path) -> None:
    result = build(tmp_path, "--bot-app-id", BOT_APP_ID, "--host", f"https://{HOST}/api/calls", "--name",
                   "Contoso IVR")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "teams-app.zip").read_bytes() == package.read_bytes()


def test_options_fall_back_to_the_azd_outputs(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "BOT_APP_ID": BOT_APP_ID, "AZURE_FUNCTION_HOST": HOST,
           "TEAMS_APP_NAME": "From env", "TEAMS_APP_VERSION": "2.3.4"}
    result = build(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert (data["bots"][0]["botId"], data["validDomains"], data["name"]["short"], data["version"]) == (
        BOT_APP_ID.lower(), [HOST], "From env", "2.3.4")
    assert schema_errors(data) == []


# --- the zip and the icons ------------------------------------------------------------------------------

def test_zip_holds_exactly_the_manifest_and_the_two_icons_at_its_root(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert archive.read("color.png") == (APP_PACKAGE / "color.png").read_bytes()
        assert archive.read("outline.png") == (APP_PACKAGE / "outline.png").read_bytes()


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGBA rows of the 8-bit RGBA, unfiltered PNGs make_icons.py writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color_type, interlace) == (8, 6, 0), "expected 8-bit RGBA, not interlaced"
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 4 * width
    rows = [raw[i * stride:(i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows), "expected filter type 0 on every row"
    return width, height, [row[1:] for row in rows]


def test_color_icon_is_192_square_and_opaque() -> None:
    width, height, rows = read_png((APP_PACKAGE / "color.png").read_bytes())
    assert (width, height) == (192, 192)
    assert all(row[3::4] == b"\xff" * width for row in rows)


def test_outline_icon_is_32_square_white_on_transparent() -> None:
    width, height, rows = read_png((APP_PACKAGE / "outline.png").read_bytes())
    assert (width, height) == (32, 32)
    pixels = [row[i:i + 4] for row in rows for i in range(0, len(row), 4)]
    assert all(pixel[:3] == b"\xff\xff\xff" for pixel in pixels if pixel[3]), "a visible pixel is not white"
    assert any(pixel[3] == 0 for pixel in pixels) and any(pixel[3] == 255 for pixel in pixels)


def test_committed_icons_are_what_make_icons_draws() -> None:
    sys.path.insert(0, str(APP_PACKAGE))
    try:
        import make_icons
    finally:
        sys.path.remove(str(APP_PACKAGE))
    assert make_icons.color_icon() == (APP_PACKAGE / "color.png").read_bytes()
    assert make_icons.outline_icon() == (APP_PACKAGE / "outline.png").read_bytes()


# --- bad parameters -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--bot-app-id", "my-bot", "--host", HOST], "error: --bot-app-id must be a GUID (the Entra app's client id), "
                                                 "got 'my-bot'"),
    (["--host", HOST], "error: the bot's app id is not set: --bot-app-id or BOT_APP_ID"),
    (["--bot-app-id", BOT_APP_ID, "--host", "not a host"], "error: --host must be a host name"),
    (["--bot-app-id", BOT_APP_ID], "error: the Function App's host name is not set: --host or AZURE_FUNCTION_HOST"),
    (["--bot-app-id", BOT_APP_ID, "--host", HOST, "--name", "x" * 31], "error: --name must be 1 to 30 characters"),
    (["--bot-app-id", BOT_APP_ID, "--host", HOST, "--version", "1.0"], "error: --version must be MAJOR.MINOR.PATCH"),
    (["--bot-app-id", BOT_APP_ID, "--host", HOST, "--privacy-url", "http://example.com"],
     "error: --privacy-url must be an https URL"),
])
def test_bad_parameters_are_one_clear_line_each(args: list[str], message: str, tmp_path: Path) -> None:
    result = build(tmp_path / "out", *args, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_every_bad_parameter_is_reported_at_once(tmp_path: Path) -> None:
    result = build(tmp_path, "--bot-app-id", "x", "--host", "", "--name", "", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert len([line for line in result.stderr.splitlines() if line.startswith("error: ")]) == 3, result.stderr
