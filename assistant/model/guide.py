"""Guided tool calls: once the model begins a call, it can only write one the tools accept.

After ``[TOOL_CALLS]`` a v7 model writes a JSON list ``[{"name": ..., "arguments": {...}}]``
and then ``</s>``. ``ToolCallGuide`` turns the request's tools into one JSON schema for that list
(each item: a tool's name and arguments valid against its parameters schema: enums, required
fields, bounds such as a thermostat's 5-30 degrees, no unknown keys), compiled by llguidance
into a grammar over the checkpoint's own Tekken vocabulary; ``GuideProcessor`` is the
``generate`` logits processor that masks, at each step of each row in a call, every token the
grammar does not allow. Text before the call is untouched, and so is a reply without one:
the guide only decides how a call is written, never whether there is one.

A token the grammar refuses that reaches the row anyway (another processor forced it: the test
kit's scripted replies) ends the guidance for that row; it never breaks a generation. Models
whose tokenizer writes calls as ``name[ARGS]{...}`` (v11 and later) are not guided.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

GRAMMARS_KEPT = 32
"""Grammars kept (by tool set): a server offers the same tools in every turn."""

CALL_FORMAT = {
    "item_separator": ", ",
    "key_separator": ": ",
    "whitespace_flexible": False,
    "lenient": True,
}
"""How mistral-common writes a v7 call list (``json.dumps`` separators, no other whitespace);
keywords llguidance does not implement are ignored rather than refusing the tool set."""


def tool_function(tool: Any) -> tuple[str, dict[str, Any]]:
    """(name, parameters schema) of a mistral-common ``Tool`` or an OpenAI-style dict."""
    function = tool["function"] if isinstance(tool, dict) else tool.function
    if isinstance(function, dict):
        return function["name"], function.get("parameters") or {}
    return function.name, function.parameters or {}


CALL_ID = {"type": "string", "pattern": "^[A-Za-z0-9]{9}$"}
"""The optional ``"id"`` of a v7 call (mistral-common writes it after the arguments of calls in
the history, so a model may write one too; the tool-call parser reads it)."""


def calls_schema(tools: Sequence[Any]) -> dict[str, Any]:
    """The JSON schema of a v7 call list for ``tools``: one or more calls, each the name of
    one tool with arguments valid for it, and optionally an id. A tool's local references
    (``#/$defs/...``) are rewritten to where its schema now sits."""
    items = []
    for index, tool in enumerate(tools):
        name, parameters = tool_function(tool)
        place = f"#/items/anyOf/{index}/properties/arguments"
        arguments = _moved(parameters, place) if parameters else {"type": "object"}
        items.append(
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": arguments, "id": CALL_ID},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"type": "array", "minItems": 1, "items": {"anyOf": items}}


def _moved(schema: Any, place: str) -> Any:
    """``schema`` with every local ``$ref`` (``#`` or ``#/...``) pointing under ``place``."""
    if isinstance(schema, dict):
        moved = {key: _moved(value, place) for key, value in schema.items()}
        ref = schema.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            moved["$ref"] = place + ref[1:]
        return moved
    if isinstance(schema, list):
        return [_moved(value, place) for value in schema]
    return schema


def _names(schema: dict[str, Any]) -> list[str]:
    return [item["properties"]["name"]["const"] for item in schema["items"]["anyOf"]]


class _TekkenVocabulary:
    """A Tekken tokenizer as llguidance's ``TokenizerWrapper`` reads one: every id's bytes
    (special tokens marked with a leading 0xFF, llguidance's convention) and an encoder."""

    def __init__(self, tekken: Any) -> None:
        specials = int(tekken.num_special_tokens)
        self._tekken = tekken
        self.eos_token_id = int(tekken.eos_id)
        self.bos_token_id = int(tekken.bos_id)
        self.special_token_ids = list(range(specials))
        self.tokens = [
            b"\xff" + tekken.id_to_piece(i).encode("utf-8")
            if i < specials
            else tekken.id_to_byte_piece(i, "keep")
            for i in range(int(tekken.n_words))
        ]

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return list(self._tekken.encode(text, bos=False, eos=False))


class ToolCallGuide:
    """One checkpoint's guide: its vocabulary for llguidance and the grammars of the tool sets
    it has seen. Used on the model thread only."""

    def __init__(self, tekken: Any, tool_calls_id: int) -> None:
        from llguidance import LLTokenizer, TokenizerWrapper

        self.tool_calls_id = tool_calls_id
        self.eos_id = int(tekken.eos_id)
        self.vocab_size = int(tekken.n_words)
        self._tokenizer = LLTokenizer(TokenizerWrapper(_TekkenVocabulary(tekken)))
        self._grammars: OrderedDict[str, str | None] = OrderedDict()
        """Grammars by schema (key order kept: it is the order calls are written in); None: a
        tool set llguidance cannot compile or that failed to convert."""

    def row(self, tools: Sequence[Any] | None) -> RowGuide | None:
        """The guide of one generation offered ``tools`` (None without tools, or for tools whose
        schemas llguidance cannot compile: those replies go unguided, with one warning)."""
        if not tools:
            return None
        schema = calls_schema(tools)
        key = json.dumps(schema, default=str)
        if key in self._grammars:
            self._grammars.move_to_end(key)
        else:
            try:
                self._grammars[key] = self._compile(schema)
            except Exception as exc:  # a schema llguidance refuses outright: same as invalid
                log.warning(
                    "calls of the tools %s are not guided: %s: %s",
                    ", ".join(_names(schema)), type(exc).__name__, exc,
                )  # fmt: skip
                self._grammars[key] = None
            while len(self._grammars) > GRAMMARS_KEPT:
                self._grammars.popitem(last=False)
        grammar = self._grammars[key]
        return None if grammar is None else RowGuide(self, grammar)

    def _compile(self, schema: dict[str, Any]) -> str | None:
        from llguidance import LLMatcher

        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=CALL_FORMAT)  # type: ignore[arg-type]
        error = LLMatcher.validate_grammar(grammar, self._tokenizer)
        if error and not error.startswith("WARNING"):
            names = ", ".join(_names(schema))
            log.warning("calls of the tools %s are not guided: %s", names, error.splitlines()[0])
            return None
        return grammar

    def matcher(self, grammar: str) -> Any:
        """A fresh llguidance matcher for ``grammar``."""
        from llguidance import LLMatcher

        return LLMatcher(self._tokenizer, grammar, log_level=0)


class RowGuide:
    """The state of one row: waiting for ``[TOOL_CALLS]``, inside a call, or done."""

    def __init__(self, guide: ToolCallGuide, grammar: str) -> None:
        self.guide = guide
        self.grammar = grammar
        self.matcher: Any = None
        self.done = False

    @property
    def active(self) -> bool:
        """Inside a call: the next token is masked."""
        return self.matcher is not None and not self.done

    def feed(self, token: int) -> None:
        """The token the row just generated."""
        if self.done:
            return
        if self.matcher is None:
            if token == self.guide.tool_calls_id:
                self.matcher = self.guide.matcher(self.grammar)
                if self.matcher.is_error():  # checked when compiled: not expected here
                    log.warning("this call is not guided: %s", self.matcher.get_error())
                    self.done = True
            return
        if token == self.guide.eos_id and self.matcher.is_accepting():
            self.done = True
        elif not self.matcher.consume_token(token):
            log.debug("guidance ended: token %d refused (%s)", token, self.matcher.get_error())
            self.done = True

    def allowed(self) -> np.ndarray | None:
        """Which token ids may come next (None: no restriction)."""
        if not self.active:
            return None
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")[: self.guide.vocab_size].astype(bool)
        if self.matcher.is_accepting():
            allowed[self.guide.eos_id] = True
        if not allowed.any():  # cannot happen with a sound grammar; never leave a row stuck
            self.done = True
            return None
        return allowed


class GuideProcessor:
    """The ``generate`` logits processor of one batch: rows with a guide are masked inside
    their calls. Run it before any processor that forces tokens."""

    def __init__(self, guides: Sequence[RowGuide | None]) -> None:
        self.guides = list(guides)
        self._started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        last = input_ids[:, -1].tolist() if self._started else [None] * len(self.guides)
        self._started = True  # the first call's last token is the prompt's, not generated
        for row, (guide, token) in enumerate(zip(self.guides, last, strict=True)):
            if guide is None or guide.done:
                continue
            try:
                if token is not None:
                    guide.feed(int(token))
                allowed = guide.allowed()
                if allowed is not None:
                    width = min(len(allowed), scores.shape[1])
                    refused = torch.ones(scores.shape[1], dtype=torch.bool)
                    refused[:width] = torch.from_numpy(~allowed[:width])
                    scores[row, refused.to(scores.device)] = float("-inf")
            except Exception:  # the guide must never cost a row its reply: this row goes on
                log.exception("guidance failed; the rest of this call is not guided")
                guide.done = True
        return scores
