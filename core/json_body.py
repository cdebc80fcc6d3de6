"""THE parser for JSON request bodies from anyone (merchants, browsers, LINE).

Control characters (NUL…) and lone surrogates in any string or key are refused
(422 naming the field): they break stores, logs and LINE's own validation.

Malformed, non-UTF-8, `NaN`/`Infinity`, or nested deeper than `MAX_DEPTH` is the
client's error (400 in our error shape), never a 500: Python's parser raises
`RecursionError` on very deep input, and MongoDB refuses documents nested deeper
than 100 levels, so a deep body must be stopped here, before it reaches storage.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import ApiError

MAX_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NUL and the other C0 controls but tab, LF and CR; DEL; the C1 controls; lone surrogates (JSON's
# "\ud800" decodes to one, and no store or LINE accepts it). Names, IDs and secrets refuse tab/LF/CR too
# (their own patterns); free texts (messages) may hold line breaks.
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check_document(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """ApiError when containers nest deeper than `max_depth` or a string holds a forbidden character
    (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if FORBIDDEN_CHARACTERS.search(item):
                raise ApiError(422, "validation_error", f"{path or 'body'}: control characters are not allowed",
                               path or None)
            continue
        if isinstance(item, dict):
            children: list[tuple[str | int, Any]] = list(item.items())
            for key in item:
                if FORBIDDEN_CHARACTERS.search(key):
                    raise ApiError(422, "validation_error", f"{path or 'body'}: control characters in a key",
                                   path or None)
        elif isinstance(item, list):
            children = list(enumerate(item))
        else:
            continue
        if depth > max_depth:
            raise ApiError(400, "invalid_json", f"JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1, _path(path, key)) for key, child in children)


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
    check_document(value, max_depth)
    return value
