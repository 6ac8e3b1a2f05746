"""The JSON Schema of a tool's arguments: references checked at load, never fetched.

jsonschema resolves a ``$ref`` only when a call's arguments reach it, and by default fetches a
remote one over the network. Tools only ever refer inside their own schema: every reference is
resolved once when the tools are loaded, and validators are given an empty registry, so a
schema can never make the assistant download anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, SchemaResource

if TYPE_CHECKING:
    from referencing._core import Resolver

SchemaPath = tuple[str | int, ...]

REFERENCE_KEYWORDS = ("$ref", "$dynamicRef")


def arguments_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` that resolves references within it only."""
    return Draft202012Validator(schema, registry=Registry())


def reference_problem(schema: dict[str, Any]) -> tuple[SchemaPath, str] | None:
    """The first reference in ``schema`` that is remote or leads nowhere: where, and why.

    ``schema`` must already be a valid JSON Schema (``check_schema``).
    """
    paths = _paths(schema)
    root = DRAFT202012.create_resource(schema)
    pending = [(root, Registry().resolver_with_root(root))]
    while pending:
        resource, resolver = pending.pop()
        resolver = resolver.in_subresource(resource)
        contents = resource.contents
        if not isinstance(contents, dict):
            continue  # true / false
        for keyword in REFERENCE_KEYWORDS:
            ref = contents.get(keyword)
            if isinstance(ref, str):
                problem = _problem(ref, resolver)
                if problem is not None:
                    return (*paths.get(id(contents), ()), keyword), f"{keyword} {ref!r} {problem}"
        subresources: list[SchemaResource] = list(resource.subresources())
        pending.extend((sub, resolver) for sub in reversed(subresources))
    return None


def _problem(ref: str, resolver: Resolver[Any]) -> str | None:
    if not ref.startswith("#"):
        return (
            "refers outside this schema; only references within it (starting with '#', "
            "e.g. '#/$defs/room') are allowed, and nothing is fetched"
        )
    try:
        target = resolver.lookup(ref).contents
    except Unresolvable:
        return "points to nothing in this schema; define it (e.g. under $defs) or fix the reference"
    if not isinstance(target, (dict, bool)):
        return f"points to a {type(target).__name__}, not to a schema"
    return None


def _paths(schema: dict[str, Any]) -> dict[int, SchemaPath]:
    """Where each mapping inside ``schema`` sits, by identity (resources share the mappings)."""
    found: dict[int, SchemaPath] = {}
    pending: list[tuple[Any, SchemaPath]] = [(schema, ())]
    while pending:
        item, where = pending.pop()
        if isinstance(item, dict):
            found.setdefault(id(item), where)
            pending.extend((value, (*where, key)) for key, value in item.items())
        elif isinstance(item, list):
            pending.extend((value, (*where, index)) for index, value in enumerate(item))
    return found
