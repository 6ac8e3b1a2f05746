"""Running tools: validation first, handler faults become bounded, readable results."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator

import pytest

from assistant.events import Announcement, ToolCall, ToolResult
from assistant.tools import ToolContext, ToolRegistry, ToolSpec, load_tools, tool
from assistant.tools.handlers.python import PythonHandler

from . import sample_handlers
from .conftest import RecordingServer, WriteTools

MODULE = sample_handlers.__name__
ANY_ARGS = "parameters: {type: object, properties: {room: {type: string}}}"


def python_tool(name: str, function: str, extra: str = "", parameters: str = ANY_ARGS) -> str:
    return f"""
  - name: {name}
    description: Test tool {name}.
    {parameters}
    handler: {{python: "{MODULE}:{function}"}}
    {extra}"""


TOOLS = "version: 1\nplugins: none\ntools:" + "".join(
    [
        python_tool(
            "record",
            "record",
            parameters="parameters: {type: object, properties: {room: {type: string, "
            "enum: [kitchen, hall]}, level: {type: integer, default: 3}}, required: [room], "
            "additionalProperties: false}",
        ),
        python_tool("boom", "boom"),
        python_tool("leak", "leak_secret", parameters=""),
        python_tool("hang_async", "hang_async", "timeout_s: 0.3", parameters=""),
        python_tool("hang_sync", "hang_sync", "timeout_s: 0.3", parameters=""),
        python_tool("unserializable", "unserializable", parameters=""),
        python_tool("huge", "huge", parameters=""),
        python_tool("nothing", "nothing", parameters=""),
        python_tool("reading", "reading", parameters=""),
        python_tool("thread_name", "thread_name", parameters=""),
        python_tool("sleep_then_echo", "sleep_then_echo", parameters=""),
        python_tool("wait_at", "wait_at", "timeout_s: 3", parameters=""),
        f"""
  - handler: {{python: "{MODULE}:greet"}}
    timeout_s: 1.5
  - name: uses_secret
    description: Has a secret header.
    handler:
      http:
        url: "http://127.0.0.1:9/x"
        headers: {{Authorization: "Bearer ${{TEST_TOOL_TOKEN}}"}}
""",
    ]
)
SECRET = "s3cr3t-token-value"


@pytest.fixture
async def registry(
    write_tools: WriteTools, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ToolRegistry]:
    monkeypatch.setenv("TEST_TOOL_TOKEN", SECRET)
    sample_handlers.calls.clear()
    sample_handlers.cancelled.clear()
    registry = load_tools(write_tools(TOOLS))
    yield registry
    await registry.aclose()


def call(tool_name: str, **arguments: object) -> ToolCall:
    return ToolCall(id="call00001", name=tool_name, arguments=arguments)


async def test_valid_call_reaches_the_handler(registry: ToolRegistry) -> None:
    """Validated arguments (with schema defaults filled in) reach the handler."""
    result = await registry.execute(call("record", room="kitchen"))
    assert result.ok
    assert json.loads(result.content) == {"received": {"room": "kitchen", "level": 3}}
    assert (result.call_id, result.name) == ("call00001", "record")


async def test_invalid_arguments_never_reach_the_handler(registry: ToolRegistry) -> None:
    """A value outside the schema is reported to the model and the handler is not called."""
    result = await registry.execute(call("record", room="attic", level="high"))
    assert not result.ok
    problems = json.loads(result.content)["problems"]
    assert any("room" in p and "'attic' is not one of" in p for p in problems)
    assert any("level" in p and "not of type 'integer'" in p for p in problems)
    assert sample_handlers.calls == []


async def test_missing_and_extra_arguments_are_invalid(registry: ToolRegistry) -> None:
    """Required arguments must be present and undeclared ones are refused."""
    result = await registry.execute(call("record", colour="red"))
    assert not result.ok
    assert "'room' is a required property" in result.content
    assert "'colour' was unexpected" in result.content
    assert sample_handlers.calls == []


async def test_unknown_tool(registry: ToolRegistry) -> None:
    """An unknown name is an error that lists the tools there are."""
    result = await registry.execute(call("launch_rocket"))
    content = json.loads(result.content)
    assert not result.ok
    assert content["error"] == "unknown tool 'launch_rocket'"
    assert "record" in content["available_tools"]


async def test_exception_becomes_type_and_message(registry: ToolRegistry) -> None:
    """A raising handler yields its exception type and message, no traceback."""
    result = await registry.execute(call("boom"))
    assert not result.ok
    assert json.loads(result.content) == {"error": "RuntimeError: the relay is stuck"}
    assert result.error == "RuntimeError: the relay is stuck"
    assert "Traceback" not in result.content


async def test_a_timeout_inside_the_tool_is_not_reported_as_ours() -> None:
    """A TimeoutError the tool raises itself reads as the tool's error, not as being stopped."""

    async def ask_device() -> None:
        raise TimeoutError("the thermostat did not answer")

    registry = ToolRegistry.from_functions([tool(timeout_s=10)(ask_device)])
    result = await registry.execute(ToolCall("devcall01", "ask_device", {}))
    await registry.aclose()
    assert json.loads(result.content) == {"error": "TimeoutError: the thermostat did not answer"}


async def test_secret_never_appears_in_results(registry: ToolRegistry) -> None:
    """A secret from the environment that leaks into an error is masked."""
    result = await registry.execute(call("leak"))
    assert SECRET not in result.content
    assert SECRET not in (result.error or "")
    assert "token *** was rejected" in result.content


async def test_async_handler_past_timeout_is_cancelled(registry: ToolRegistry) -> None:
    """A hanging async handler is cancelled at its timeout and the model is told."""
    result = await registry.execute(call("hang_async"))
    assert not result.ok
    assert "did not finish within 0.3 s" in result.content
    assert sample_handlers.cancelled.is_set()


async def test_sync_handler_past_timeout_does_not_block_others(registry: ToolRegistry) -> None:
    """A blocked thread times out while other tools keep answering."""
    hung, quick = await registry.execute_many([call("hang_sync"), call("record", room="hall")])
    assert not hung.ok
    assert "did not finish within 0.3 s" in hung.content
    assert quick.ok


async def test_unserializable_result(registry: ToolRegistry) -> None:
    """A value JSON cannot hold becomes a readable error."""
    result = await registry.execute(call("unserializable"))
    assert not result.ok
    assert "object value that cannot be turned into JSON" in result.content


async def test_ten_megabyte_result_is_refused(registry: ToolRegistry) -> None:
    """A huge result becomes a short error instead of flooding the model's context."""
    result = await registry.execute(call("huge"))
    assert not result.ok
    assert "more than the 16384 bytes of JSON allowed" in result.content
    assert len(result.content) < 500


async def test_none_reads_as_ok(registry: ToolRegistry) -> None:
    """A handler returning nothing reports success."""
    result = await registry.execute(call("nothing"))
    assert (result.ok, result.content) == (True, '{"ok": true}')


async def test_dataclass_result_is_serialized(registry: ToolRegistry) -> None:
    """Dataclasses (and pydantic models) become JSON objects."""
    result = await registry.execute(call("reading"))
    assert json.loads(result.content) == {"sensor": "hall", "value_c": 21.5}


async def test_sync_handler_runs_in_a_tool_thread(registry: ToolRegistry) -> None:
    """Blocking handlers run in the tools' thread pool, not on the event loop."""
    result = await registry.execute(call("thread_name"))
    assert json.loads(result.content).startswith("tool")


async def test_calls_run_concurrently(registry: ToolRegistry) -> None:
    """Three calls meet at a barrier: run one after another they would all time out."""
    sample_handlers.BARRIERS["meet"] = asyncio.Barrier(3)
    calls = [ToolCall(f"call0000{i}", "wait_at", {"barrier_name": "meet"}) for i in range(3)]
    results = await registry.execute_many(calls)
    assert [r.ok for r in results] == [True, True, True]


async def test_results_keep_call_order(registry: ToolRegistry) -> None:
    """The slowest call first still comes back first."""
    calls = [
        ToolCall("callslow1", "sleep_then_echo", {"delay_s": 0.2, "tag": "slow"}),
        ToolCall("callfast1", "sleep_then_echo", {"delay_s": 0.0, "tag": "fast"}),
        ToolCall("callboom1", "boom", {}),
    ]
    results = await registry.execute_many(calls)
    assert [r.call_id for r in results] == ["callslow1", "callfast1", "callboom1"]
    assert [r.content for r in results[:2]] == ['"slow"', '"fast"']


async def test_registry_keeps_serving_after_faults(registry: ToolRegistry) -> None:
    """After raising, hanging and oversize handlers, a normal call still works."""
    await registry.execute_many([call("boom"), call("hang_async"), call("huge")])
    result = await registry.execute(call("record", room="kitchen"))
    assert result.ok


async def test_every_execution_is_logged_with_outcome_and_duration(
    registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """One log line per call: name, id, outcome, milliseconds; secrets masked."""
    with caplog.at_level(logging.INFO, logger="assistant.tools"):
        await registry.execute_many([call("record", room="hall"), call("boom"), call("leak")])
    lines = [r.getMessage() for r in caplog.records if r.name == "assistant.tools"]
    assert any(line.startswith("tool record (call00001) ok in ") for line in lines)
    assert any("tool boom (call00001) failed: RuntimeError" in line for line in lines)
    assert all(line.endswith(" ms") for line in lines)
    assert SECRET not in caplog.text


async def test_decorated_function_in_yaml_keeps_its_schema(registry: ToolRegistry) -> None:
    """A @tool function referenced from YAML brings its name and schema; YAML overrides apply."""
    spec = registry.get("polite_greeting")
    assert spec is not None
    assert spec.parameters["required"] == ["name"]
    assert spec.timeout_s == 1.5
    result = await registry.execute(call("polite_greeting", name="Ada", formal=True))
    assert result.content == '"Good day, Ada."'


async def test_schemas_for_the_model(registry: ToolRegistry) -> None:
    """OpenAI-style dicts and mistral-common Tools carry the same function schemas."""
    openai = registry.openai_schemas()
    mistral = registry.mistral_tools()
    assert openai[0] == {
        "type": "function",
        "function": {
            "name": "record",
            "description": "Test tool record.",
            "parameters": registry.specs[0].parameters,
        },
    }
    assert [t.function.name for t in mistral] == [s["function"]["name"] for s in openai]
    assert mistral[0].function.parameters == registry.specs[0].parameters


def test_a_sync_tool_may_announce_from_its_thread() -> None:
    """context.announce() in a sync tool (a worker thread) safely reaches a waiting listener."""

    def remind(context: ToolContext, text: str) -> str:
        context.announce(text)
        return "queued"

    async def scenario() -> tuple[ToolResult, Announcement]:
        registry = ToolRegistry.from_functions([tool(remind)])
        asyncio.get_running_loop().set_debug(True)  # refuse loop calls from other threads
        try:
            listener = asyncio.create_task(registry.announcements.get())
            await asyncio.sleep(0)
            result = await registry.execute(ToolCall("announce1", "remind", {"text": "Tea!"}))
            return result, await listener
        finally:
            await registry.aclose()

    outcome: list[tuple[ToolResult, Announcement]] = []
    # Its own thread and loop: a listener that is never woken must fail this test, not hang it.
    worker = threading.Thread(target=lambda: outcome.append(asyncio.run(scenario())), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert outcome, "the listener was never woken"
    [(result, announcement)] = outcome
    assert result.ok, result.content
    assert announcement == Announcement(text="Tea!", source="remind")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("   ", "ValueError: announce() needs some text to say, not an empty or blank string"),
        ("", "ValueError: announce() needs some text to say, not an empty or blank string"),
        (42, "TypeError: announce() needs the text to say as a str, not int"),
        (None, "TypeError: announce() needs the text to say as a str, not NoneType"),
    ],
    ids=["blank", "empty", "number", "none"],
)
async def test_an_announcement_without_text_fails_the_tool_and_queues_nothing(
    text: object, error: str
) -> None:
    """announce() refuses empty or non-string text in the tool; the tool's result says why."""

    async def remind(context: ToolContext) -> str:
        context.announce(text)  # type: ignore[arg-type]
        return "queued"

    registry = ToolRegistry.from_functions([tool(remind)])
    result = await registry.execute(ToolCall("announce1", "remind", {}))
    queued = registry.announcements.qsize()
    await registry.aclose()
    assert json.loads(result.content) == {"error": error}
    assert queued == 0


async def test_a_tool_may_catch_a_refused_announcement_and_go_on() -> None:
    """The refusal is an ordinary exception: a tool that handles it still answers."""

    async def remind(context: ToolContext) -> str:
        try:
            context.announce(" \n ")
        except ValueError as exc:
            return f"not announced: {exc}"
        return "queued"

    registry = ToolRegistry.from_functions([tool(remind)])
    result = await registry.execute(ToolCall("announce1", "remind", {}))
    await registry.aclose()
    assert result.ok
    assert json.loads(result.content).startswith("not announced: announce() needs some text")


def registry_with_schema(parameters: dict[str, object]) -> ToolRegistry:
    """A registry with one tool declared in code (no load-time checks) using ``parameters``."""
    spec = ToolSpec(name="record", description="Record a thing.", parameters=parameters)
    return ToolRegistry([(spec, PythonHandler(sample_handlers.record))])


async def test_a_schema_that_cannot_be_applied_is_an_error_result() -> None:
    """A $ref leading nowhere fails the call with a result, never an exception."""
    sample_handlers.calls.clear()
    registry = registry_with_schema(
        {"type": "object", "properties": {"thing": {"$ref": "#/$defs/missing"}}}
    )
    result = await registry.execute(call("record", thing="x"))
    await registry.aclose()
    assert not result.ok
    assert json.loads(result.content) == {
        "error": "the tool's parameters schema is broken: $ref '#/$defs/missing' points to "
        "nothing in this schema; define it (e.g. under $defs) or fix the reference; "
        "the tool did not run"
    }
    assert sample_handlers.calls == []


async def test_a_remote_reference_is_never_fetched(http_server: RecordingServer) -> None:
    """Validating arguments never downloads a schema, even one the tool's schema points to."""
    registry = registry_with_schema(
        {"type": "object", "properties": {"thing": {"$ref": f"{http_server.url}/thing.json"}}}
    )
    result = await registry.execute(call("record", thing="x"))
    await registry.aclose()
    assert not result.ok
    assert "refers outside this schema" in result.content
    assert http_server.requests == []
