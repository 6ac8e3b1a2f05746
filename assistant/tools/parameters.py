"""The JSON Schema of a tool's arguments: references and required names checked at load.

jsonschema resolves a ``$ref`` only when a call's arguments reach it, and by default fetches a
remote one over the network. Tools only ever refer inside their own schema: every reference is
resolved once when the tools are loaded, and validators are given an empty registry, so a
schema can never make the assistant download anything.

A ``required`` name that no property declares is valid JSON Schema, but the model, which only
learns the arguments from ``properties``, never sends it: every call would fail. Such a name is
refused at load wherever no other keyword of its schema can supply the property.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, SchemaResource

if TYPE_CHECKING:
    from referencing._core import Resolver

SchemaPath = tuple[str | int, ...]

REFERENCE_KEYWORDS = ("$ref", "$dynamicRef")

# Keywords through which a schema may declare or allow properties beyond its own ``properties``
# (``patternProperties`` is handled by matching its patterns).
_PROPERTIES_ELSEWHERE = (
    *REFERENCE_KEYWORDS,
    "allOf",
    "anyOf",
    "oneOf",
    "if",
    "then",
    "else",
    "dependentSchemas",
)
_EXTRA_PROPERTIES = ("additionalProperties", "unevaluatedProperties")

# Keywords whose subschemas describe another value than their own schema's (a property, an
# item): each is a new object for the ``required`` check.
_VALUE_MAPPINGS = ("properties", "patternProperties")
_VALUE_KEYWORDS = (
    *_VALUE_MAPPINGS,
    *_EXTRA_PROPERTIES,
    "prefixItems",
    "items",
    "contains",
    "unevaluatedItems",
)


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


def required_problem(schema: dict[str, Any]) -> tuple[SchemaPath, str] | None:
    """The first ``required`` name that no property of its object declares: where, and why.

    Checked in the arguments object and in every value inside it (a property, an item), unless
    that value's schema can get the property another way: composition, a reference, extra
    properties explicitly allowed. Subschemas of ``allOf``, ``if``, ``$defs`` and the like are
    not checked on their own: they apply to an object whose properties are declared around
    them. ``schema`` must already be a valid JSON Schema (``check_schema``).
    """
    pending: list[tuple[Any, SchemaPath]] = [(schema, ())]
    while pending:
        node, where = pending.pop()
        if not isinstance(node, dict):
            continue  # true / false
        found = _undeclared(node)
        if found is not None:
            index, problem = found
            return (*where, "required", index), problem
        values: list[tuple[Any, SchemaPath]] = []
        for keyword in _VALUE_KEYWORDS:
            value = node.get(keyword)
            if isinstance(value, dict) and keyword in _VALUE_MAPPINGS:
                values += [(sub, (*where, keyword, key)) for key, sub in value.items()]
            elif isinstance(value, list):
                values += [(sub, (*where, keyword, index)) for index, sub in enumerate(value)]
            elif value is not None:
                values.append((value, (*where, keyword)))
        pending.extend(reversed(values))
    return None


def _undeclared(schema: dict[str, Any]) -> tuple[int, str] | None:
    """The index of the first name in ``schema``'s ``required`` that it does not declare."""
    if "required" not in schema or any(k in schema for k in _PROPERTIES_ELSEWHERE):
        return None
    if any(schema.get(k, False) is not False for k in _EXTRA_PROPERTIES):
        return None
    try:
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    except re.error:
        return None  # an ECMA-262 pattern Python cannot read: do not guess what it matches
    declared = list(schema.get("properties", {}))
    for index, name in enumerate(schema.get("required", [])):
        if name in declared or any(p.search(name) for p in patterns):
            continue
        listed = f"({', '.join(declared)})" if declared else "(it declares none)"
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return index, (
            f"required lists {name!r}, which is not one of its properties {listed}; "
            f"declare it under properties or fix the name{hint}"
        )
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
