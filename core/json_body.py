"""THE parser for JSON request bodies from anyone (merchants, browsers, LINE).

Malformed, non-UTF-8, `NaN`/`Infinity`, or nested deeper than `MAX_DEPTH` is the
client's error (400 in our error shape), never a 500: Python's parser raises
`RecursionError` on very deep input, and MongoDB refuses documents nested deeper
than 100 levels, so a deep body must be stopped here, before it reaches storage.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import ApiError

MAX_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than `limit` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document of a request body, or ApiError(400, "invalid_json")."""
    if not raw:
        raise ApiError(400, "invalid_json", "request body must be a JSON document")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "invalid_json", f"JSON nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None
    if depth_exceeds(value, max_depth):
        raise ApiError(400, "invalid_json", f"JSON nested deeper than {max_depth} levels")
    return value
