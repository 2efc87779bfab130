#!/usr/bin/env python3
"""Build the Teams app package that puts the calling bot in Teams: manifest.json and the two icons, zipped.

    python3 appPackage/build.py --bot-app-id GUID --host FUNCTION_HOST [--name NAME] [--out DIR]

Each option falls back to an environment variable, so the azd postprovision hook runs it with the deployment's
outputs and no arguments: BOT_APP_ID, AZURE_FUNCTION_HOST, TEAMS_APP_NAME, TEAMS_APP_VERSION,
TEAMS_APP_DEVELOPER, TEAMS_APP_WEBSITE_URL, TEAMS_APP_PRIVACY_URL, TEAMS_APP_TERMS_URL, TEAMS_APP_ID.
It writes DIR/manifest.json and DIR/teams-app.zip (manifest.json, color.png and outline.png at the zip's root)
and prints the zip's path. Upload the zip in the Teams admin center (Manage apps > Upload) or with "Upload a
custom app" in Teams. A wrong value is one `error:` line per problem and exit status 2, never a traceback.

Standard library only: it runs before anything is installed. The manifest text is manifest.template.json; its
`${{NAME}}` placeholders are filled here. Manifest schema version: the newest stable v1.x that the
@microsoft/app-manifest npm package ships (tests validate the result against that schema).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "manifest.template.json"
ICONS = ("color.png", "outline.png")
ZIP_NAME = "teams-app.zip"
MANIFEST_VERSION = "1.30"
# The Teams app id is derived from the bot's app id, so rebuilding the package for the same bot updates the
# same Teams app instead of adding a second one. Fixed for this project; never change it.
TEAMS_APP_ID_NAMESPACE = uuid.UUID("934c3c37-aa39-499e-93c5-527aae39bccd")
# Zip entries carry this time, so the same inputs give the same bytes.
ZIP_TIME = (2024, 1, 1, 0, 0, 0)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$", re.I)
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_PLACEHOLDER = re.compile(r"\$\{\{([A-Z_]+)\}\}")


class BuildError(Exception):
    """The parameters or the template are wrong; `problems` says each, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def teams_app_id(bot_app_id: str) -> str:
    return str(uuid.uuid5(TEAMS_APP_ID_NAMESPACE, bot_app_id.lower()))


def host_of(value: str) -> str:
    """The host name from a host name or an https URL (the azd output may be either)."""
    value = value.strip()
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    return value.rstrip("/").lower()


def values(
    *,
    bot_app_id: str,
    host: str,
    name: str,
    version: str = "1.0.0",
    developer: str = "",
    website_url: str = "",
    privacy_url: str = "",
    terms_url: str = "",
    app_id: str = "",
) -> dict[str, str]:
    """The template's placeholder values, each checked; raises BuildError naming every bad one."""
    problems: list[str] = []
    bot_app_id = bot_app_id.strip()
    if not bot_app_id:
        problems.append("the bot's app id is not set: --bot-app-id or BOT_APP_ID (the Entra app's client id, a GUID)")
    elif not _GUID.match(bot_app_id):
        problems.append(f"--bot-app-id must be a GUID (the Entra app's client id), got {bot_app_id!r}")
    domain = host_of(host)
    if not host.strip():
        problems.append("the Function App's host name is not set: --host or AZURE_FUNCTION_HOST "
                        "(for example my-func.azurewebsites.net)")
    elif not _HOST.match(domain):
        problems.append(f"--host must be a host name such as my-func.azurewebsites.net, got {host!r}")
    name = name.strip()
    if not 1 <= len(name) <= 30:
        problems.append(f"--name must be 1 to 30 characters (Teams' short name), got {name!r}")
    developer = developer.strip()
    if developer and len(developer) > 32:
        problems.append(f"--developer must be at most 32 characters, got {developer!r}")
    if not _SEMVER.match(version):
        problems.append(f"--version must be MAJOR.MINOR.PATCH (for example 1.0.0), got {version!r}")
    # Teams shows these links on the app's page; an organisation's own app may point them at its own pages.
    urls = {}
    for option, given in (("--website-url", website_url), ("--privacy-url", privacy_url),
                          ("--terms-url", terms_url)):
        url = given.strip()
        if url and (urlsplit(url).scheme != "https" or not urlsplit(url).hostname):
            problems.append(f"{option} must be an https URL, got {url!r}")
        urls[option] = url or f"https://{domain}/"
    app_id = app_id.strip()
    if app_id and not _GUID.match(app_id):
        problems.append(f"--app-id must be a GUID (the Teams app's id), got {app_id!r}")
    if problems:
        raise BuildError(problems)
    return {
        "MANIFEST_VERSION": MANIFEST_VERSION,
        "VERSION": version,
        "TEAMS_APP_ID": (app_id or teams_app_id(bot_app_id)).lower(),
        "BOT_APP_ID": bot_app_id.lower(),
        "HOST": domain,
        "NAME": name,
        "FULL_NAME": name,
        "DEVELOPER_NAME": developer or name,
        "WEBSITE_URL": urls["--website-url"],
        "PRIVACY_URL": urls["--privacy-url"],
        "TERMS_URL": urls["--terms-url"],
    }


def fill(node: Any, replacements: Mapping[str, str], unknown: set[str]) -> Any:
    """The template with each `${{KEY}}` in a string replaced; keys with no value are collected in `unknown`."""
    if isinstance(node, dict):
        return {key: fill(value, replacements, unknown) for key, value in node.items()}
    if isinstance(node, list):
        return [fill(item, replacements, unknown) for item in node]
    if isinstance(node, str):
        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in replacements:
                unknown.add(key)
                return match.group(0)
            return replacements[key]

        return _PLACEHOLDER.sub(replace, node)
    return node


def manifest(replacements: Mapping[str, str], template: Path = TEMPLATE) -> dict[str, Any]:
    try:
        raw = json.loads(template.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError([f"cannot read the manifest template {template}: {exc}"]) from exc
    unknown: set[str] = set()
    result = fill(raw, replacements, unknown)
    if unknown:
        raise BuildError([f"{template.name} uses placeholders this script does not fill: {', '.join(sorted(unknown))}"])
    if not isinstance(result, dict):
        raise BuildError([f"{template.name} must hold a JSON object"])
    return result


def build(out_dir: Path, replacements: Mapping[str, str], *, icons_dir: Path = HERE) -> Path:
    """Write out_dir/manifest.json and out_dir/teams-app.zip; return the zip's path."""
    data = manifest(replacements)
    missing = [name for name in ICONS if not (icons_dir / name).is_file()]
    if missing:
        raise BuildError([f"icon {icons_dir / name} is missing (python3 appPackage/make_icons.py makes it)"
                          for name in missing])
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "manifest.json").write_text(text, encoding="utf-8")
        package = out_dir / ZIP_NAME
        with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as archive:
            entries = [("manifest.json", text.encode())] + [(name, (icons_dir / name).read_bytes()) for name in ICONS]
            for name, content in entries:
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, content)
    except OSError as exc:
        raise BuildError([f"cannot write the package in {out_dir}: {exc}"]) from exc
    return package


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python3 appPackage/build.py",
                                     description="Build the Teams app package (manifest + icons, zipped) for the "
                                                 "calling bot.")
    parser.add_argument("--bot-app-id", default=env.get("BOT_APP_ID", ""),
                        help="the bot's Entra app (client) id (default: $BOT_APP_ID)")
    parser.add_argument("--host", default=env.get("AZURE_FUNCTION_HOST", ""),
                        help="the Function App's host name, listed in validDomains (default: $AZURE_FUNCTION_HOST)")
    parser.add_argument("--name", default=env.get("TEAMS_APP_NAME") or "Calling bot",
                        help="the app's name in Teams, at most 30 characters (default: $TEAMS_APP_NAME or "
                             "'Calling bot')")
    parser.add_argument("--version", default=env.get("TEAMS_APP_VERSION") or "1.0.0",
                        help="the app's version; raise it for each new upload (default: $TEAMS_APP_VERSION or 1.0.0)")
    parser.add_argument("--developer", default=env.get("TEAMS_APP_DEVELOPER", ""),
                        help="the publisher shown in Teams (default: $TEAMS_APP_DEVELOPER, else the app's name)")
    parser.add_argument("--website-url", default=env.get("TEAMS_APP_WEBSITE_URL", ""),
                        help="default: $TEAMS_APP_WEBSITE_URL, else https://HOST/")
    parser.add_argument("--privacy-url", default=env.get("TEAMS_APP_PRIVACY_URL", ""),
                        help="default: $TEAMS_APP_PRIVACY_URL, else https://HOST/")
    parser.add_argument("--terms-url", default=env.get("TEAMS_APP_TERMS_URL", ""),
                        help="default: $TEAMS_APP_TERMS_URL, else https://HOST/")
    parser.add_argument("--app-id", default=env.get("TEAMS_APP_ID", ""),
                        help="the Teams app's id (default: $TEAMS_APP_ID, else derived from the bot's app id)")
    parser.add_argument("--out", type=Path, default=HERE / "build",
                        help="where to write manifest.json and teams-app.zip (default: appPackage/build)")
    args = parser.parse_args(argv)
    try:
        replacements = values(bot_app_id=args.bot_app_id, host=args.host, name=args.name, version=args.version,
                              developer=args.developer, website_url=args.website_url,
                              privacy_url=args.privacy_url, terms_url=args.terms_url, app_id=args.app_id)
        package = build(args.out, replacements)
    except BuildError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    print(package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
