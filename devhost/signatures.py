"""The Python worker's load-time rules for a function's signature, so the local host refuses what Azure refuses.

The Azure Functions Python worker (and `azure-functions-runtime`, its 3.13+ library) checks every indexed
function before it loads any: each Python parameter must have a binding and each binding a parameter, and a
bound parameter's annotation must be a class (`str`, `dict`, `func.HttpRequest`) or a `typing` generic
(`typing.Mapping[str, Any]`). PEP 585 aliases such as `dict[str, Any]` or `collections.abc.Mapping[str, Any]`
are neither, and one refused function makes the worker index none at all. The messages are the worker's.
tests/test_functions_worker.py runs the real library on the same app; this copy only has to agree with it.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from typing import Any


class FunctionLoadError(RuntimeError):
    """A function the Python worker would refuse to load (and with it, the whole app)."""

    def __init__(self, function_name: str, message: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {message}")


def _is_typing_generic(annotation: Any) -> bool:
    """`typing.Mapping[str, Any]`, `typing.List` and the like; not Union, Tuple, ClassVar or Callable."""
    aliases: tuple[type, ...] = tuple(getattr(typing, name) for name in ("_GenericAlias", "_SpecialGenericAlias")
                                      if hasattr(typing, name))
    if isinstance(annotation, type) and issubclass(annotation, typing.Generic):
        return True
    return isinstance(annotation, aliases) and getattr(annotation, "__origin__", None) not in (
        typing.Union, tuple, typing.ClassVar, collections.abc.Callable)


def check(function_name: str, user_function: Any, binding_names: list[str]) -> None:
    """Raise FunctionLoadError where the worker would; `binding_names` as the decorators declared them."""
    parameters = dict(inspect.signature(user_function).parameters)
    try:
        annotations = typing.get_type_hints(user_function)
    except Exception as exc:  # an annotation naming something the module never imported
        raise FunctionLoadError(function_name, f"its annotations cannot be resolved: {exc}") from None
    bound = {name for name in binding_names if name != "$return"}
    if "context" in parameters and "context" not in bound:
        parameters.pop("context")  # the invocation context, which the worker supplies itself
    missing = set(parameters) - bound
    if missing:
        raise FunctionLoadError(function_name, "the following parameters are declared in Python but not in the "
                                f"function definition (function.json or function decorators):  {missing!r}")
    extra = bound - set(parameters)
    if extra:
        raise FunctionLoadError(function_name, "Extra parameters in binding definition — the following parameters "
                                f"are declared as bindings but are not present in Python: {extra!r}")
    for name in parameters:
        if name not in annotations:
            continue
        annotation = annotations[name]
        inner = typing.get_args(annotation)[0] if getattr(typing.get_origin(annotation), "__name__", "") == "Out" \
            else annotation
        if not isinstance(inner, type) and not _is_typing_generic(inner):
            raise FunctionLoadError(function_name, f"binding {name} has invalid non-type annotation {annotation!r}")
    if "$return" in binding_names and "return" in annotations and not isinstance(annotations["return"], type):
        raise FunctionLoadError(function_name, f"has invalid non-type return annotation {annotations['return']!r}")
