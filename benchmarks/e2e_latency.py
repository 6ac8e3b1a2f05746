"""End to end through the real server: speech end -> first text delta and -> tool started.

A server process (``AssistantServer`` on 127.0.0.1, port 0, the tiny offline model with scripted
replies) serves one ``/v1/realtime`` endpoint per mode: ``dialogue.preemptive`` off, on, and
(with ``--eager-ms N``) on with ``vad.eager_silence_ms`` N. This process is the client: one
WebSocket session per endpoint, server VAD on, transcription on (as the browser page asks), and
turns alternating between the endpoints so that all see the same machine load. Each turn
streams real espeak-ng speech in 20 ms chunks paced in real time — a command in two halves with
a ``--pause-ms`` pause (250 ms) between them (a speculation started at the pause is discarded
when the second half begins) — then silence until the turn is over.

The eager end of turn trusts the model: a speculation that begins a tool call ends the turn.
The scripted model calls the tool whatever it hears, half a command included, so measure the
eager mode with ``--pause-ms 0`` (whole commands); with a pause it would act on the first half.
Even so a comma can hold a pause long enough ("..., please."): a command committed before its
speech ended is counted as cut and left out of the latency figures (its rest is another
utterance, answered too).

Measured per turn, on the ``time.monotonic`` clock that both processes share:

- speech end: when the chunk holding the last sample of speech was sent;
- first delta: arrival of the first ``response.output_text.delta``;
- tool started: the tool handler's own clock reading, which it returns in its result;
- commit: arrival of ``input_audio_buffer.committed`` (the end of the VAD hangover).

The modes share one server process, so each hears its own copy of a command (one sample
differs): otherwise only the first would pay for encoding the clip, the others reading it from
the clip cache.

Every reply is scripted: "One moment." and a call of ``note_time`` in the first model call, then
"Done."; with ``--call-first`` the first model call is the tool call alone (as Mistral models
answer a command), so the first text delta comes after the tool, from the second call. Side
effects of discarded speculations are counted: any ``response.*`` event or tool output before
the turn's commit, a tool run more or less than one per turn, or a reply text that differs from
the script.

With ``--model demo`` nothing is scripted: the shipped demo checkpoint hears each command (ones
of the shipped tools, in ``DEMO_COMMANDS``) and decides what to call; the tools are those of the
shipped ``tools.yaml`` with every handler replaced by the benchmark's clock (no broker, no timer
runs). Its replies are call-first (the call, then a confirmation after the result), and it may
get a command wrong: wrong or missing calls are counted apart from side effects, and a turn
without a call has no tool figure.

Run: ``python benchmarks/e2e_latency.py --turns 20`` (prints a table and writes
``benchmarks/out/e2e_latency.json``); ``--pause-ms 0 --eager-ms 100`` adds the eager mode;
``--model demo`` runs the demo model instead of the scripted tiny one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from model_bench import SENTENCES, machine, percentile, write_json
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # training/ (the demo's tools without plugins)

RATE_HZ = 16_000
CHUNK_MS = 20
CHUNK_SAMPLES = RATE_HZ * CHUNK_MS // 1000
PAUSE_MS = 250
"""Inside each command: shorter than the 500 ms hangover, so one utterance, one discard."""
LEAD_MS = 300
SETTLE_S = 0.8
"""A turn ends no sooner than this after its speech: longer than the hangover, so that the rest of
a command that an eager end cut is committed (and answered) within its turn."""
REPLY = ("One moment.", "Done.")
"""The scripted reply: text and the tool call in the first model call, then text."""
CALL_FIRST_REPLY = (None, "Done.")
"""With ``--call-first``: the tool call alone first (how Mistral models answer a command in
the v7 format, ``[TOOL_CALLS][...]</s>``), then the text."""
DEMO_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "Turn the kitchen light on.": ("set_light", {"room": "kitchen", "state": "on"}),
    "Turn off the living room light.": ("set_light", {"room": "living_room", "state": "off"}),
    "Set a timer for five minutes.": ("set_timer", {"duration_s": 300}),
    "Cancel the timer.": ("cancel_timer", {}),
    "What time is it?": ("get_time", {}),
}
"""With ``--model demo``: commands of the shipped tools (not the confirm-gated door) and the
call each should become."""


@dataclass(frozen=True)
class Mode:
    """One endpoint's settings."""

    preemptive: bool
    eager_ms: int | None = None


def modes(eager_ms: int | None) -> dict[str, Mode]:
    """The modes compared: preemption off and on, and on with an eager end when asked."""
    found = {"preemptive off": Mode(False), "preemptive on": Mode(True)}
    if eager_ms is not None:
        found[f"eager {eager_ms} ms"] = Mode(True, eager_ms)
    return found


# --- the server process ------------------------------------------------------------------


def serve(conn: Connection, turns: int, eager_ms: int | None, call_first: bool, model: str) -> None:
    """Run one server per mode until the client says stop (in a child process)."""
    reply = CALL_FIRST_REPLY if call_first else REPLY
    asyncio.run(_serve(conn, turns, modes(eager_ms), reply, model))


class ClockHandler:
    """Every tool's handler with ``--model demo``: reports when it started, and runs nothing."""

    def __init__(self, runs: Iterator[int]) -> None:
        self.runs = runs

    async def run(self, arguments: dict[str, Any], context: Any) -> dict[str, Any]:
        """The handler's own clock reading and its run number."""
        return {"ok": True, "started_s": time.monotonic(), "run": next(self.runs)}

    async def aclose(self) -> None:
        """Nothing to release."""


def demo_parts(runs: Iterator[int]) -> tuple[Any, Any]:
    """The demo worker, and the shipped tools (no plugins: the demo knows only those) with
    the clock for every handler."""
    from assistant.model.checkpoint import DEMO_MODEL
    from assistant.model.worker import ModelWorker
    from assistant.tools import ToolRegistry
    from assistant.tools.loader import load_tools
    from training.conversations import without_plugins

    with tempfile.TemporaryDirectory() as tmp:
        shipped = load_tools(without_plugins(REPO / "tools.yaml", tmp))
    clock = ClockHandler(runs)
    tools = ToolRegistry((spec, clock) for spec in shipped.specs)
    return ModelWorker.load(DEMO_MODEL, device="cpu", dtype="float32"), tools


async def _serve(
    conn: Connection,
    turns: int,
    compared: dict[str, Mode],
    reply: tuple[str | None, str],
    model: str,
) -> None:
    from assistant.config import (
        DEMO_MODEL,
        DialogueSettings,
        ModelSettings,
        ServerSettings,
        VadSettings,
    )
    from assistant.server.assistant_server import AssistantServer

    # The sampling `serve --model demo` uses (greedy); the tiny model's replies are forced.
    params = ModelSettings(id=DEMO_MODEL).generation_params()
    runs = itertools.count(1)
    if model == "demo":
        worker, tools = demo_parts(runs)
    else:
        worker, tools = scripted_parts(runs, turns * len(compared), reply)
    servers = [
        AssistantServer(
            worker,
            settings=ServerSettings(port=0),
            tools=tools,
            params=params,
            dialogue_settings=DialogueSettings(preemptive=mode.preemptive),
            vad_settings=VadSettings(eager_silence_ms=mode.eager_ms),
        )
        for mode in compared.values()
    ]
    for server in servers:
        await server.start()
    conn.send([server.port for server in servers])
    await asyncio.to_thread(conn.recv)
    stats = worker.engine.stats
    conn.send({"generate_calls": stats.generate_calls, "speculative_jobs": stats.speculative_jobs})
    for server in servers:
        await server.shutdown()
    worker.close()


def scripted_parts(
    runs: Iterator[int], turns: int, reply: tuple[str | None, str]
) -> tuple[Any, Any]:
    """The tiny model, its every reply scripted, and the one ``note_time`` tool."""
    from assistant.model.worker import ModelWorker
    from assistant.testing.forced import ScriptedReplies
    from assistant.testing.tiny_model import build_tiny_model
    from assistant.tools import ToolRegistry, tool

    @tool
    def note_time() -> dict[str, float]:
        """Note the time (the benchmark's tool: its handler reports when it started)."""
        return {"started_s": time.monotonic(), "run": next(runs)}

    holder: list[ScriptedReplies] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp) / "tiny", "v7", "tiny", 0)
        worker = ModelWorker.load(
            folder, device="cpu", logits_processor_factory=lambda n: holder[0].logits_processors(n)
        )
    script = ScriptedReplies(worker.tokenizer, default_transcript="hello")
    holder.append(script)
    for _ in range(2 * turns):  # a cut command is answered twice
        script.say(reply[0], [{"name": "note_time", "arguments": {}}])
        script.say(reply[1])
    return worker, ToolRegistry.from_functions([note_time])


# --- the client ----------------------------------------------------------------------------


@dataclass
class Turn:
    """What the client saw of one turn (times in seconds, ``time.monotonic``)."""

    speech_end_s: float = 0.0
    committed_s: float | None = None
    first_delta_s: float | None = None
    tool_started_s: float | None = None
    tool_runs: list[int] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """The calls the model made (name, arguments), in order."""
    expected: tuple[str, dict[str, Any]] | None = None
    """With ``--model demo``: the call the command should become."""
    text: str = ""
    preempted: bool | None = None
    server_first_delta_ms: float | None = None
    early_events: list[str] = field(default_factory=list)
    """Events of the response that arrived before the turn's commit (must stay empty)."""
    cut: bool = False
    """Committed before its speech ended: the eager end took a pause inside the command for its
    end, and the rest was another utterance and reply (left out of the latency figures)."""
    responses: int = 0
    """Replies to the command (cancelled ones included): one, or more where it was cut."""

    def figures(self) -> dict[str, float | None]:
        """Milliseconds from the end of speech."""

        def ms(at_s: float | None) -> float | None:
            return None if at_s is None else 1000 * (at_s - self.speech_end_s)

        return {
            "commit_ms": ms(self.committed_s),
            "first_delta_ms": ms(self.first_delta_s),
            "tool_started_ms": ms(self.tool_started_s),
        }


def command_clips(
    count: int, pause_ms: int = PAUSE_MS, sentences: list[str] = SENTENCES
) -> list[tuple[np.ndarray, int]]:
    """Commands of two halves with a pause between them (none: 0), and where the speech
    ends."""
    from assistant.testing.speech import sounding, synthesize

    clips = []
    for sentence in itertools.islice(itertools.cycle(sentences), count):
        words = sentence.split()
        halves = [
            sounding(synthesize(" ".join(part)))  # the pause must be pause_ms
            for part in (words[: len(words) // 2], words[len(words) // 2 :])
        ]
        pause = np.zeros(RATE_HZ * pause_ms // 1000, dtype=np.int16)
        lead = np.zeros(RATE_HZ * LEAD_MS // 1000, dtype=np.int16)
        clip = np.concatenate([lead, halves[0], pause, halves[1]])
        clips.append((clip, len(clip)))  # the speech ends with the clip
    return clips


class Session:
    """One /v1/realtime conversation, its events timestamped as they arrive."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self._receiver = asyncio.create_task(self._receive(), name="receive")

    async def _receive(self) -> None:
        async for message in self.ws:
            self.events.put_nowait((time.monotonic(), json.loads(message)))

    async def next(self, kind: str) -> dict[str, Any]:
        """The next event of type ``kind``."""
        while True:
            _, event = await asyncio.wait_for(self.events.get(), 120)
            if event["type"] == kind:
                return event

    async def close(self) -> None:
        """End the session."""
        self._receiver.cancel()
        await self.ws.close()


async def open_session(port: int) -> Session:
    """Connect and turn server VAD and transcription on."""
    ws = await connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=None)
    session = Session(ws)
    await session.next("session.created")
    audio_input = {
        "format": {"type": "audio/pcm", "rate": RATE_HZ},
        "turn_detection": {"type": "server_vad"},
        "transcription": {"model": "voxtral"},
    }
    update = {"type": "realtime", "audio": {"input": audio_input}}
    await ws.send(json.dumps({"type": "session.update", "session": update}))
    await session.next("session.updated")
    return session


async def run_turn(session: Session, clip: np.ndarray, end_sample: int) -> Turn:
    """Stream one command in real time, then silence until every utterance the server committed
    of it has its reply and its transcript (two, when an eager end cut the command at a pause
    inside it)."""
    turn = Turn()
    sent = asyncio.Event()
    finished = asyncio.Event()

    async def send() -> None:
        silence = np.zeros(CHUNK_SAMPLES, dtype=np.int16)
        started_s = time.monotonic()
        for index in itertools.count():
            await asyncio.sleep(max(0.0, started_s + index * CHUNK_MS / 1000 - time.monotonic()))
            chunk = clip[index * CHUNK_SAMPLES : (index + 1) * CHUNK_SAMPLES]
            if len(chunk) < CHUNK_SAMPLES:
                if finished.is_set():
                    return
                chunk = np.concatenate([chunk, silence[: CHUNK_SAMPLES - len(chunk)]])
            payload = base64.b64encode(chunk.astype("<i2").tobytes()).decode()
            await session.ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": payload})
            )
            if index * CHUNK_SAMPLES <= end_sample - 1 < (index + 1) * CHUNK_SAMPLES:
                turn.speech_end_s = time.monotonic()
                sent.set()

    def settled(starts: int, commits: int, dones: int, transcripts: int) -> bool:
        """Every utterance heard is committed, answered and transcribed, and the speech ended
        longer ago than a hangover (no utterance of it is still to come)."""
        return (
            sent.is_set()
            and time.monotonic() - turn.speech_end_s > SETTLE_S
            and starts == commits == dones == transcripts > 0
        )

    async def receive() -> None:
        starts = commits = dones = transcripts = 0
        deadline_s = time.monotonic() + 120
        while not settled(starts, commits, dones, transcripts):
            try:
                at_s, event = await asyncio.wait_for(session.events.get(), 0.1)
            except TimeoutError:
                if time.monotonic() > deadline_s:
                    counts = f"{starts} started, {commits} committed, {dones} answered"
                    turn.early_events.append(f"never settled: {counts}, {transcripts} transcribed")
                    break
                continue
            kind = event["type"]
            if kind == "input_audio_buffer.speech_started":
                starts += 1
            elif kind == "input_audio_buffer.committed":
                commits += 1
                turn.committed_s = turn.committed_s or at_s
                turn.cut = turn.cut or not sent.is_set()
            elif turn.committed_s is None and (
                kind.startswith("response.") or kind == "conversation.item.created"
            ):
                turn.early_events.append(kind)
            if kind == "response.output_text.delta":
                turn.first_delta_s = turn.first_delta_s or at_s
                turn.text += event["delta"]
            elif kind == "conversation.item.created" and event["item"]["type"] == (
                "function_call_output"
            ):
                output = json.loads(event["item"]["output"])
                turn.tool_started_s = turn.tool_started_s or output["started_s"]
                turn.tool_runs.append(output["run"])
            elif kind == "response.output_item.done" and event["item"]["type"] == "function_call":
                item = event["item"]
                turn.calls.append((item["name"], json.loads(item["arguments"] or "{}")))
            elif kind == "response.done":
                # A cancelled one counts too: the rest of a cut command, heard while the first
                # reply ran, interrupts it (barge-in) and is answered on its own.
                metrics = event["response"].get("metrics") or {}
                if not dones:
                    turn.preempted = metrics.get("preempted")
                    turn.server_first_delta_ms = metrics.get("speech_end_to_first_delta_ms")
                dones += 1
                turn.responses = dones
            elif kind in (
                "conversation.item.input_audio_transcription.completed",
                "conversation.item.input_audio_transcription.failed",
            ):
                transcripts += 1
        finished.set()

    sender = asyncio.create_task(send(), name="send")
    try:
        await receive()
        await sender
    finally:
        sender.cancel()
    return turn


def summarize(turns: list[Turn], reply: tuple[str | None, str]) -> dict[str, Any]:
    """p50 / p95 per figure, adoption and side effects."""
    whole = [t for t in turns if not t.cut]
    out: dict[str, Any] = {"turns": len(turns), "cut_commands": len(turns) - len(whole)}
    for name in ("commit_ms", "first_delta_ms", "tool_started_ms"):
        values = [v for t in whole if (v := t.figures()[name]) is not None]
        out[name] = {
            "p50": percentile(values, 50) if values else None,
            "p95": percentile(values, 95) if values else None,
        }
    out["preempted_turns"] = sum(1 for t in turns if t.preempted)
    out["early_events"] = sum(len(t.early_events) for t in turns)
    if any(t.expected for t in turns):  # the demo: what it says is its own; what it calls
        out["wrong_calls"] = sum(1 for t in whole if t.calls != [t.expected])
    else:
        out["wrong_texts"] = sum(1 for t in whole if t.text != "".join(filter(None, reply)))
    out["tool_runs_per_turn"] = sorted({len(t.tool_runs) for t in whole})
    return out


async def client(
    ports: list[int], turns: int, names: list[str], pause_ms: int, model: str
) -> dict[str, list[Turn]]:
    """Alternate turns between the endpoints; every turn's figures."""
    sentences = list(DEMO_COMMANDS) if model == "demo" else SENTENCES
    clips = command_clips(turns, pause_ms, sentences)
    sessions = {mode: await open_session(port) for mode, port in zip(names, ports, strict=True)}
    seen: dict[str, list[Turn]] = {mode: [] for mode in names}
    runs = 0
    try:
        for number, (command, end_sample) in enumerate(clips):
            for index, (mode, session) in enumerate(sessions.items()):
                # One server, one clip cache: each mode hears its own copy of the command,
                # different in one sample, so that none is served the encoding of another's
                # (nor, where commands repeat, of an earlier turn's).
                clip = command.copy()
                at = end_sample // 2 + number
                clip[at] += index + 1 if clip[at] < 0 else -index - 1  # never past int16
                turn = await run_turn(session, clip, end_sample)
                # A demo turn may have no run (no call, or one that failed its schema), never
                # a run of a discarded speculation: that would skip a number.
                allowed = ([runs + 1], []) if model == "demo" else ([runs + 1],)
                if not turn.cut and turn.tool_runs not in allowed:
                    turn.early_events.append(f"tool runs {turn.tool_runs}, expected [{runs + 1}]")
                runs = max([runs, *turn.tool_runs])
                turn.expected = DEMO_COMMANDS.get(sentences[number % len(sentences)])
                seen[mode].append(turn)
                cut = " (cut at an inner pause)" if turn.cut else ""
                print(f"{mode:>15} turn {len(seen[mode]):2d}: {turn.figures()}{cut}", flush=True)
    finally:
        for session in sessions.values():
            await session.close()
    return seen


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20, help="turns per mode")
    parser.add_argument("--json", type=Path, help="where to write the figures (default out/)")
    parser.add_argument(
        "--pause-ms", type=int, default=PAUSE_MS, help="pause inside each command (0: none)"
    )
    parser.add_argument(
        "--eager-ms", type=int, help="also measure vad.eager_silence_ms at this value"
    )
    parser.add_argument(
        "--call-first",
        action="store_true",
        help="script the tool call alone first, then the text (default: text, call, text)",
    )
    parser.add_argument(
        "--model",
        choices=("tiny", "demo"),
        default="tiny",
        help="tiny: scripted replies (default); demo: the shipped demo model decides",
    )
    args = parser.parse_args()
    if args.pause_ms < 0 or (args.eager_ms is not None and args.eager_ms < 0):
        parser.error("--pause-ms and --eager-ms are durations: 0 or more")
    if args.call_first and args.model == "demo":
        parser.error("--call-first scripts the tiny model; the demo model replies call-first")
    names = list(modes(args.eager_ms))
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    server = context.Process(
        target=serve,
        args=(there, args.turns, args.eager_ms, args.call_first, args.model),
        name="e2e-server",
    )
    server.start()
    try:
        ports = here.recv()
        seen = asyncio.run(client(ports, args.turns, names, args.pause_ms, args.model))
        here.send("stop")
        engine = here.recv()
    finally:
        server.join(60)
        if server.is_alive():
            server.terminate()
    reply = CALL_FIRST_REPLY if args.call_first else REPLY
    figures = {mode: summarize(turns, reply) for mode, turns in seen.items()}
    shape = (
        "the demo model, its own replies"
        if args.model == "demo"
        else f"reply {' + '.join(filter(None, reply))} with the call "
        f"{'first' if args.call_first else 'after the first text'}"
    )
    print(
        f"\n{machine()}; {args.turns} turns per mode; pause {args.pause_ms} ms; {shape}; "
        f"engine {engine}"
    )
    print(f"{'':>15} | {'commit p50/p95':>16} | {'first delta p50/p95':>20} | {'tool p50/p95':>16}")
    for mode, f in figures.items():
        cells = [
            f"{f[k]['p50']:7.0f} /{f[k]['p95']:6.0f}" if f[k]["p50"] is not None else "n/a"
            for k in ("commit_ms", "first_delta_ms", "tool_started_ms")
        ]
        print(f"{mode:>15} | {cells[0]:>16} | {cells[1]:>20} | {cells[2]:>16}")
    for mode, f in figures.items():
        wrong = (
            f"wrong or missing calls {f['wrong_calls']}"
            if "wrong_calls" in f
            else f"wrong texts {f['wrong_texts']}"
        )
        print(
            f"{mode}: preempted {f['preempted_turns']}/{f['turns']}, events before commit "
            f"{f['early_events']}, {wrong}, tool runs per turn "
            f"{f['tool_runs_per_turn']}, commands cut at an inner pause {f['cut_commands']}"
        )
    raw = {mode: [asdict(t) | t.figures() for t in turns] for mode, turns in seen.items()}
    path = write_json(
        "e2e_latency",
        args.json,
        {
            "summary": figures,
            "pause_ms": args.pause_ms,
            "call_first": args.call_first,
            "model": args.model,
            "engine": engine,
            "turns": raw,
        },
    )
    print(f"figures written to {path}")


if __name__ == "__main__":
    main()
