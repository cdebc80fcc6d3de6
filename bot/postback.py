"""The postback data we put on buttons and rich menu areas: `v=1&a=points`, built and parsed strictly.

Versioned so that buttons already sitting in customers' chats keep working when
the format changes. Pure: no I/O. Anything that is not exactly what `build`
produces is refused with `PostbackError` (the handler logs and ignores it; the
customer never sees an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import parse_qsl, urlencode

from core.line_limits import MAX_POSTBACK_DATA, utf16_len

VERSION = "1"
Action = Literal["points", "history", "link", "opt_out", "opt_in"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
# Extra parameters an action may carry (none today); anything else is refused.
ALLOWED_PARAMS: dict[str, frozenset[str]] = {action: frozenset() for action in ACTIONS}
RESERVED = frozenset({"v", "a"})


class PostbackError(ValueError):
    """Postback data we did not produce (unknown version/action, junk, or tampered)."""


@dataclass(frozen=True)
class Postback:
    action: Action
    params: dict[str, str] = field(default_factory=dict)


def build(action: Action, **params: str) -> str:
    """The data string for a button; checked against LINE's 300-character limit."""
    if action not in ACTIONS:
        raise ValueError(f"unknown postback action {action!r}")
    unknown = set(params) - ALLOWED_PARAMS[action]
    if unknown:
        raise ValueError(f"action {action!r} takes no parameter {sorted(unknown)}")
    data = urlencode({"v": VERSION, "a": action, **params})
    if utf16_len(data) > MAX_POSTBACK_DATA:
        raise ValueError(f"postback data longer than {MAX_POSTBACK_DATA} characters")
    return data


def parse(data: object) -> Postback:
    """The postback `build` made, or PostbackError; never guesses."""
    if not isinstance(data, str) or not data:
        raise PostbackError("postback data is empty or not a string")
    if utf16_len(data) > MAX_POSTBACK_DATA:
        raise PostbackError("postback data is too long")
    try:
        pairs = parse_qsl(data, keep_blank_values=False, strict_parsing=True, max_num_fields=8)
    except ValueError as exc:
        raise PostbackError(f"malformed postback data: {exc}") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise PostbackError(f"repeated key {key!r}")
        values[key] = value
    if values.get("v") != VERSION:
        raise PostbackError(f"unsupported version {values.get('v')!r}")
    action = values.get("a")
    if action not in ACTIONS:
        raise PostbackError(f"unknown action {action!r}")
    params = {key: value for key, value in values.items() if key not in RESERVED}
    unknown = set(params) - ALLOWED_PARAMS[action]
    if unknown:
        raise PostbackError(f"unexpected parameters {sorted(unknown)}")
    if build(action, **params) != data:  # type: ignore[arg-type]  # canonical form only: no reordering, odd encodings
        raise PostbackError("postback data is not in canonical form")
    return Postback(action=action, params=params)  # type: ignore[arg-type]
