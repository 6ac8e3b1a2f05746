"""``python: "package.module:function"`` — call a function, sync (in a thread) or async."""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from assistant.tools.context import ToolContext
from assistant.tools.decorator import ToolDefinition
from assistant.tools.handlers.base import InvalidArgumentsError


class ImportSpecError(Exception):
    """``package.module:function`` cannot be resolved; the message says why."""


def import_callable(target: str) -> Callable[..., Any]:
    """Resolve ``package.module:attribute`` (the attribute may be dotted)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ImportSpecError(f"{target!r} is not of the form 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportSpecError(
            f"cannot import module {module_name!r} ({type(exc).__name__}: {exc}); check the "
            "spelling and that its package is installed in this environment"
        ) from None
    except Exception as exc:
        raise ImportSpecError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportSpecError(
                f"module {module_name!r} has no attribute {attribute!r}; check the name after ':'"
            ) from None
    if not callable(obj):
        raise ImportSpecError(f"{target!r} is a {type(obj).__name__}, not a function")
    return typing.cast(Callable[..., Any], obj)


def context_parameter(func: Callable[..., Any]) -> str | None:
    """The name of the parameter annotated ``ToolContext``, if any."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        return None
    return next((name for name, hint in hints.items() if hint is ToolContext), None)


class PythonHandler:
    """Calls a Python function with the arguments as keywords."""

    def __init__(
        self,
        func: Callable[..., Any],
        definition: ToolDefinition | None = None,
    ) -> None:
        self.func = func
        self.definition = definition
        self.context_param = definition.context_param if definition else context_parameter(func)
        self.is_async = inspect.iscoroutinefunction(func)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Convert the arguments (for ``@tool`` functions) and call; sync code runs in a thread."""
        try:
            kwargs = self.definition.call_kwargs(arguments) if self.definition else dict(arguments)
        except ValidationError as exc:
            raise InvalidArgumentsError(
                [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            ) from None
        if self.context_param:
            kwargs[self.context_param] = context
        if self.is_async:
            return await self.func(**kwargs)
        result = await context.run_sync(self.func, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def aclose(self) -> None:
        """Nothing to release."""
