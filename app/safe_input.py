"""User text and JSON that every database can store, checked where they enter.

PostgreSQL refuses a NUL byte in text and a lone UTF-16 surrogate in any text or JSON, and its JSON
refuses NaN; deeply nested JSON overflows the serialisers. Each of these would surface as a 500 at
the database or on the way out, so they are refused up front with a 4xx naming the parameter.
"""
from __future__ import annotations

import json
import math
from typing import Any

from app.errors import InvalidRequest, PayloadTooLarge

MAX_JSON_DEPTH = 32                 # objects and lists nested in one another
MAX_METADATA_BYTES = 16 * 1024      # a metadata object, serialised as JSON


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (not valid Unicode text)"
    return None


def check_text(value: str, param: str) -> str:
    """`value` unchanged, or 400 naming `param`."""
    problem = text_problem(value)
    if problem:
        raise InvalidRequest(f"{param} {problem}", param=param, code="invalid_text")
    return value


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH, finite: bool = True) -> tuple[str, str] | None:
    """(where, why) for the first thing in a parsed JSON value that a database cannot store, or None;
    `where` is a path like `.a.b[3]`.
    Iterative, so a value nested beyond Python's recursion limit is reported, not crashed on."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                return where, f"is nested deeper than {max_depth} levels"
            if isinstance(item, list):
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
                continue
            for key, child in item.items():
                if problem := text_problem(key):
                    return f"{where}.{key!r}", f"key {problem}"
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, str):
            if problem := text_problem(item):
                return where, problem
        elif finite and isinstance(item, float) and not math.isfinite(item):
            return where, "is NaN or infinite, which JSON cannot store"
    return None


def check_json(value: Any, param: str, *, max_bytes: int | None = MAX_METADATA_BYTES,
               max_depth: int = MAX_JSON_DEPTH, finite: bool = True) -> Any:
    """`value` unchanged if storable and small enough: 400 for bad text, depth or (with `finite`) NaN
    and infinities, 413 over `max_bytes`."""
    found = json_problem(value, max_depth=max_depth, finite=finite)
    if found:
        where, why = found
        raise InvalidRequest(f"{param}{where} {why}", param=param, code="invalid_json")
    if max_bytes is not None:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > max_bytes:
            raise PayloadTooLarge(f"{param} is {size:,} bytes as JSON; the limit is {max_bytes:,}", param=param,
                                  code="metadata_too_large")
    return value
