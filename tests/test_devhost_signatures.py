"""devhost refuses what the Azure Functions Python worker refuses at load time, in the worker's words.

tests/test_functions_worker.py holds the worker's own verdict on the real app; these pin the local host's
copy of its rules, so a defect that would index nothing in Azure also stops `python -m devhost` and the demo.
"""

from __future__ import annotations

import collections.abc
import typing
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from devhost import functions
from devhost.__main__ import main
from devhost.signatures import FunctionLoadError


def _app_with_activity(function: Any) -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.activity_trigger(input_name="request", activity="act")(function)
    return app


def test_a_pep585_annotation_on_a_binding_is_refused_like_the_worker_does() -> None:
    async def act(request: collections.abc.Mapping[str, Any]) -> dict[str, Any]:
        return dict(request)

    with pytest.raises(FunctionLoadError) as refused:
        functions.index(_app_with_activity(act))
    assert str(refused.value) == ("cannot load the act function: binding request has invalid non-type annotation "
                                  "collections.abc.Mapping[str, typing.Any]")


@pytest.mark.parametrize("annotation", [dict[str, Any], list[int], int | None])
def test_other_non_type_annotations_are_refused(annotation: Any) -> None:
    def act(request):  # type: ignore[no-untyped-def]
        return None

    act.__annotations__ = {"request": annotation}
    with pytest.raises(FunctionLoadError, match="binding request has invalid non-type annotation"):
        functions.index(_app_with_activity(act))


@pytest.mark.parametrize("annotation", [dict, str, typing.Mapping[str, Any], typing.Dict[str, Any]])  # noqa: UP006
def test_classes_and_typing_generics_are_accepted(annotation: Any) -> None:
    def act(request):  # type: ignore[no-untyped-def]
        return None

    act.__annotations__ = {"request": annotation}
    index = functions.index(_app_with_activity(act))
    assert index.activity("act") is not None


def test_parameters_and_bindings_must_match() -> None:
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="x")
    def handler(req: func.HttpRequest, extra: str) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(FunctionLoadError, match=r"declared in Python but not in the function definition.*'extra'"):
        functions.index(app)


def test_the_command_line_says_why_and_exits_2(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken_app.py").write_text(
        "from collections.abc import Mapping\n"
        "from typing import Any\n"
        "import azure.durable_functions as df\n"
        "app = df.DFApp()\n"
        "@app.activity_trigger(input_name='request', activity='act')\n"
        "async def act(request: Mapping[str, Any]) -> None:\n"
        "    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    assert main(["--app", "broken_app:app", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "the Functions worker would index no function" in err
    assert "binding request has invalid non-type annotation collections.abc.Mapping" in err
    assert "Traceback" not in err
