"""``ToolRegistry``: the tools of one assistant, and the safe way to run them.

``execute`` never raises for anything a tool or the model did: an unknown name, arguments that
fail the schema, an exception, a timeout or an unusable return value all become a ``ToolResult``
with ``ok=False`` and a JSON ``content`` the model can read. Secrets never reach results or logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

from assistant.events import Announcement, ToolCall, ToolResult
from assistant.tools.context import TOOL_THREADS, BackgroundTasks, ToolContext
from assistant.tools.decorator import build_definition, tool_definition
from assistant.tools.handlers.base import Handler, InvalidArgumentsError
from assistant.tools.handlers.python import PythonHandler
from assistant.tools.parameters import arguments_validator, reference_problem
from assistant.tools.results import (
    Redactor,
    ResultError,
    describe_exception,
    error_content,
    serialize_result,
    shorten,
)
from assistant.tools.spec import ToolSpec
from assistant.tools.templating import TemplateError

if TYPE_CHECKING:
    from mistral_common.protocol.instruct.tool_calls import Tool

log = logging.getLogger("assistant.tools")

MAX_PROBLEMS = 10
"""At most this many argument problems go back to the model (bounded, like every result)."""

ANNOUNCEMENT_QUEUE_SIZE = 64
"""When full, the oldest announcement is dropped (and logged): fresh news matters more."""


class _HandlerTimeoutError(Exception):
    """A ``TimeoutError`` the handler raised itself (a device that did not answer)."""

    def __init__(self, timeout: BaseException) -> None:
        super().__init__(str(timeout))
        self.timeout = timeout


async def _run(handler: Handler, arguments: dict[str, Any], context: ToolContext) -> Any:
    """Run ``handler``, keeping its own timeouts apart from the registry's per-tool timeout."""
    try:
        return await handler.run(arguments, context)
    except TimeoutError as exc:
        raise _HandlerTimeoutError(exc) from None


def _argument_error(error: SchemaValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def _broken_schema(parameters: dict[str, Any], exc: Exception) -> str:
    """Why checking arguments against ``parameters`` raised ``exc`` (a schema fault)."""
    # Only the schema can fail there (the arguments are plain JSON): a tool declared in code,
    # not checked like tools.yaml, with a reference that leads nowhere.
    try:
        found = reference_problem(parameters)
    except Exception:
        found = None  # malformed beyond its references: the exception says the most
    reason = found[1] if found else describe_exception(exc)
    return f"the tool's parameters schema is broken: {reason}; the tool did not run"


class ToolRegistry:
    """The tools one assistant offers, by name."""

    def __init__(
        self,
        tools: Iterable[tuple[ToolSpec, Handler]] = (),
        *,
        secrets: Iterable[str] = (),
    ) -> None:
        self._tools: dict[str, tuple[ToolSpec, Handler, Draft202012Validator]] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        for spec, handler in tools:
            self.add(spec, handler)
        self._redact = Redactor(secrets)
        self._tasks = BackgroundTasks()
        self._executor: ThreadPoolExecutor | None = None
        self.announcements: asyncio.Queue[Announcement] = asyncio.Queue(ANNOUNCEMENT_QUEUE_SIZE)
        """What tools want said later (a timer fired), oldest first."""

    @classmethod
    def from_functions(cls, functions: Iterable[Callable[..., Any]]) -> ToolRegistry:
        """A registry of Python functions (``@tool`` ones keep their options)."""
        registry = cls()
        for func in functions:
            definition = tool_definition(func) or build_definition(func)
            registry.add(definition.spec, PythonHandler(func, definition))
        return registry

    def add(self, spec: ToolSpec, handler: Handler) -> None:
        """Register one tool; ``ValueError`` if the name is taken."""
        if spec.name in self._tools:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._tools[spec.name] = (spec, handler, arguments_validator(spec.parameters))
        properties = spec.parameters.get("properties", {})
        self._defaults[spec.name] = {
            name: prop["default"]
            for name, prop in properties.items()
            if isinstance(prop, dict) and "default" in prop
        }

    # --- what the model is told ------------------------------------------------------------

    @property
    def specs(self) -> list[ToolSpec]:
        """Every tool, in declaration order."""
        return [spec for spec, _, _ in self._tools.values()]

    def get(self, name: str) -> ToolSpec | None:
        """The tool called ``name``, or ``None``."""
        entry = self._tools.get(name)
        return entry[0] if entry else None

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def openai_schemas(self) -> list[dict[str, Any]]:
        """``[{"type": "function", "function": {name, description, parameters}}, ...]``."""
        return [spec.openai_schema() for spec in self.specs]

    def mistral_tools(self) -> list[Tool]:
        """The tools as mistral-common ``Tool`` objects (``ChatCompletionRequest(tools=...)``)."""
        from mistral_common.protocol.instruct.tool_calls import Function, Tool

        return [
            Tool(
                function=Function(
                    name=spec.name, description=spec.description, parameters=spec.parameters
                )
            )
            for spec in self.specs
        ]

    # --- running ---------------------------------------------------------------------------

    async def execute(self, call: ToolCall, *, conversation_id: str | None = None) -> ToolResult:
        """Run one call; failures of any kind come back as ``ok=False`` results.

        ``conversation_id`` names the conversation that made the call: timers and announcements
        the tool leaves behind belong to it (see ``ToolContext``).
        """
        started = time.monotonic()
        entry = self._tools.get(call.name)
        if entry is None:
            message = f"unknown tool {call.name!r}"
            content = error_content(message, available_tools=sorted(self._tools))
            return self._finish(call, started, ok=False, content=content, error=message)
        spec, handler, validator = entry
        try:
            problems = [_argument_error(e) for e in validator.iter_errors(call.arguments)]
        except Exception as exc:
            return self._fail(call, started, _broken_schema(spec.parameters, exc))
        if problems:
            return self._invalid(call, started, problems)
        context = ToolContext(
            call,
            announce=self._announce,
            tasks=self._tasks,
            executor=self._get_executor,
            conversation_id=conversation_id,
        )
        log.debug("tool %s (%s) called with %s", call.name, call.id, call.arguments_json)
        try:
            arguments = {**self._defaults[spec.name], **call.arguments}
            value = await asyncio.wait_for(_run(handler, arguments, context), spec.timeout_s)
            content = serialize_result(value, spec.max_result_bytes)
        except TimeoutError:
            message = f"the tool did not finish within {spec.timeout_s:g} s and was stopped"
            return self._fail(call, started, message)
        except _HandlerTimeoutError as exc:
            return self._fail(call, started, describe_exception(exc.timeout))
        except InvalidArgumentsError as exc:
            return self._invalid(call, started, exc.problems)
        except (ResultError, TemplateError) as exc:
            return self._fail(call, started, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._fail(call, started, describe_exception(exc))
        return self._finish(call, started, ok=True, content=content)

    async def execute_many(
        self, calls: Sequence[ToolCall], *, conversation_id: str | None = None
    ) -> list[ToolResult]:
        """Run ``calls`` concurrently; the results keep the order of the calls."""
        runs = (self.execute(call, conversation_id=conversation_id) for call in calls)
        return list(await asyncio.gather(*runs))

    def _invalid(self, call: ToolCall, started: float, problems: list[str]) -> ToolResult:
        shown = [shorten(p, 200) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more")
        content = error_content("invalid arguments", problems=shown)
        message = shorten("invalid arguments: " + "; ".join(shown))
        return self._finish(call, started, ok=False, content=content, error=message)

    def _fail(self, call: ToolCall, started: float, message: str) -> ToolResult:
        return self._finish(call, started, ok=False, content=error_content(message), error=message)

    def _finish(
        self, call: ToolCall, started: float, *, ok: bool, content: str, error: str | None = None
    ) -> ToolResult:
        duration_s = time.monotonic() - started
        content = self._redact(content)
        error = self._redact(error) if error is not None else None
        outcome = "ok" if ok else f"failed: {error}"
        log.info("tool %s (%s) %s in %.0f ms", call.name, call.id, outcome, duration_s * 1000)
        return ToolResult(
            call_id=call.id,
            name=call.name,
            content=content,
            ok=ok,
            duration_s=duration_s,
            error=error,
        )

    def _announce(self, announcement: Announcement) -> None:
        announcement = dataclasses.replace(announcement, text=self._redact(announcement.text))
        if self.announcements.full():
            dropped = self.announcements.get_nowait()
            log.warning("announcement queue full: dropped %r from %s", dropped.text, dropped.source)
        self.announcements.put_nowait(announcement)

    def _get_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(TOOL_THREADS, thread_name_prefix="tool")
        return self._executor

    @property
    def background_tasks(self) -> list[str]:
        """Names of tasks tools left running (timers)."""
        return self._tasks.names()

    async def aclose(self) -> None:
        """Cancel background tasks, close connections, release the thread pool."""
        await self._tasks.aclose()
        for _, handler, _ in self._tools.values():
            try:
                await handler.aclose()
            except Exception as exc:
                log.warning("closing a tool handler failed: %s", describe_exception(exc))
        if self._executor is not None:
            # Threads of hung sync tools cannot be killed; do not wait for them.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
