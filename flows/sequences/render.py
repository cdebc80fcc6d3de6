"""A step's messages for one customer: text placeholders filled in, everything else sent as stored.

`{display_name}` is the customer's LINE display name ("お客様" when we have
none), `{points}` their points balance ("1,234"). Each value is cut to the length
the definition's validation counted for it, so a text accepted at `PUT` never
exceeds LINE's 5,000 characters. Never mutates the stored definition (messages
without placeholders are shared, as the engine never mutates what it pushes).
"""

from __future__ import annotations

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


def personal(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any text message names a placeholder (otherwise every customer gets the same JSON)."""
    return any(m.get("type") == "text" and isinstance(m.get("text"), str) and PLACEHOLDER.search(m["text"])
               for m in messages)


def render(messages: Sequence[dict[str, Any]], customer: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The messages for this customer: a text with placeholders is a new object, the others are shared."""
    values = placeholder_values(customer)
    rendered = []
    for message in messages:
        text = message.get("text")
        if message.get("type") == "text" and isinstance(text, str) and PLACEHOLDER.search(text):
            rendered.append({**message, "text": PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)})
        else:
            rendered.append(message)  # never mutated: pushed as it is
    return rendered
