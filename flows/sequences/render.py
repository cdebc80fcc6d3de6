"""A step's messages for one customer: text placeholders filled in, everything else sent as stored.

`{display_name}` is the customer's LINE display name ("お客様" when we have
none), `{points}` their points balance ("1,234"). Each value is cut to the length
the definition's validation counted for it, so a text accepted at `PUT` never
exceeds LINE's 5,000 characters. Never mutates the stored definition.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from core.line_limits import utf16_len
from flows.sequences.definition import PLACEHOLDER, PLACEHOLDERS

NO_NAME = "お客様"


def _cut(value: str, limit: int) -> str:
    while utf16_len(value) > limit:
        value = value[:-1]
    return value


def placeholder_values(customer: Mapping[str, Any] | None) -> dict[str, str]:
    customer = customer or {}
    name = customer.get("display_name")
    balance = (customer.get("points") or {}).get("balance") or 0
    values = {"display_name": name if isinstance(name, str) and name.strip() else NO_NAME,
              "points": f"{int(balance):,}"}
    return {key: _cut(value, PLACEHOLDERS[key]) for key, value in values.items()}


def render(messages: Sequence[Mapping[str, Any]], customer: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    values = placeholder_values(customer)
    rendered = []
    for message in messages:
        made = copy.deepcopy(dict(message))
        if made.get("type") == "text" and isinstance(made.get("text"), str):
            made["text"] = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), made["text"])
        rendered.append(made)
    return rendered
