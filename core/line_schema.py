"""LINE message objects checked before we accept them: LINE's OpenAPI schema plus the limits it leaves out.

A merchant's broadcast (or step) messages are refused with a 4xx naming the
field when LINE would refuse them later — not at send time, when nobody is
there to fix them. The schema is LINE's vendored Messaging API document
(`linesim/openapi/messaging-api.yml`, read as a data file: production code
never imports the simulator), turned into JSON Schema once per process:
OpenAPI's `discriminator` (message `type`, action `type`, Flex component
`type`) becomes an explicit dispatch on that property, and `nullable` a null
alternative. The limits LINE documents outside the schema — lengths in UTF-16
code units, carousel size, JSON sizes, action labels, postback data, quick
replies — come from `core.line_limits`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from core.line_limits import (
    MAX_ACTION_LABEL,
    MAX_ALT_TEXT,
    MAX_BUBBLE_BYTES,
    MAX_CAROUSEL_BUBBLES,
    MAX_CAROUSEL_BYTES,
    MAX_FLEX_ACTION_LABEL,
    MAX_MESSAGES_PER_REQUEST,
    MAX_POSTBACK_DATA,
    MAX_QUICK_REPLY_ITEMS,
    MAX_TEXT,
    utf16_len,
)

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "linesim" / "openapi" / "messaging-api.yml"
COMPONENTS = "#/components/schemas/"
BASE = "__base"  # a discriminated schema without its dispatch, for the subtypes that extend it

Problem = tuple[str, str]  # (field path such as "messages[0].text", message)


def _convert(node: Any, discriminated: set[str], in_all_of: bool = False) -> Any:
    """An OpenAPI schema node as JSON Schema (2020-12)."""
    if isinstance(node, list):
        return [_convert(item, discriminated, in_all_of) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            name = str(value).removeprefix(COMPONENTS)
            # A subtype's `allOf: [{$ref: Base}]` means the base's own fields, not a second dispatch.
            out["$ref"] = f"#/$defs/{name}{BASE if in_all_of and name in discriminated else ''}"
        elif key in ("discriminator", "nullable", "example", "externalDocs", "description", "default"):
            continue
        elif key == "properties":
            out[key] = {name: _convert(sub, discriminated) for name, sub in value.items()}
        elif key == "allOf":
            out[key] = [_convert(sub, discriminated, in_all_of=True) for sub in value]
        else:
            out[key] = _convert(value, discriminated)
    if node.get("nullable"):
        return {"anyOf": [{"type": "null"}, out]}
    return out


def _dispatch(name: str, node: dict[str, Any]) -> dict[str, Any]:
    """A discriminated schema: its own fields (the base), then the subtype its property names."""
    prop = node["discriminator"]["propertyName"]
    mapping = node["discriminator"]["mapping"]
    return {
        "allOf": [
            {"$ref": f"#/$defs/{name}{BASE}"},
            {"required": [prop], "properties": {prop: {"enum": list(mapping)}}},
            *({"if": {"properties": {prop: {"const": value}}, "required": [prop]},
               "then": {"$ref": "#/$defs/" + str(target).removeprefix(COMPONENTS)}}
              for value, target in mapping.items()),
        ],
    }


@functools.cache
def _definitions() -> dict[str, Any]:
    with open(SCHEMA_FILE, encoding="utf-8") as source:
        schemas: dict[str, Any] = yaml.safe_load(source)["components"]["schemas"]
    discriminated = {name for name, node in schemas.items() if "discriminator" in node}
    defs: dict[str, Any] = {}
    for name, node in schemas.items():
        converted = _convert(node, discriminated)
        if name in discriminated:
            defs[name + BASE] = converted
            defs[name] = _dispatch(name, node)
        else:
            defs[name] = converted
    return defs


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    return Draft202012Validator({"$defs": _definitions(), "$ref": f"#/$defs/{schema_name}"})


def _path(parts: Sequence[Any], prefix: str) -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _leaf(error: ValidationError) -> ValidationError:
    """The most specific cause (a dispatch's `allOf`/`if` wraps the subtype's real complaint)."""
    while error.context:
        error = min(error.context, key=lambda e: (-len(e.absolute_path), str(e.message)))
    return error


def schema_problems(instance: Any, schema_name: str, prefix: str = "") -> list[Problem]:
    """Where `instance` breaks LINE's schema `schema_name` (e.g. "Message"), deepest field first."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: -len(e.absolute_path))
    problems: list[Problem] = []
    for error in errors:
        leaf = _leaf(error)
        parts = list(leaf.absolute_path)
        if leaf.validator == "required" and isinstance(leaf.instance, dict):
            parts += [name for name in leaf.validator_value if name not in leaf.instance][:1]
        problems.append((_path(parts, prefix), leaf.message))
    return problems


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _actions(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Flex action object under `node` (button actions, default actions), with its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            if key in ("action", "defaultAction") and isinstance(value, dict):
                yield sub, value
            yield from _actions(value, sub)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _actions(value, f"{path}[{index}]")


def _action_problems(action: dict[str, Any], path: str, label_max: int) -> list[Problem]:
    problems: list[Problem] = []
    label = action.get("label")
    if isinstance(label, str) and utf16_len(label) > label_max:
        problems.append((f"{path}.label", f"at most {label_max} characters (UTF-16 units, as LINE counts)"))
    data = action.get("data")
    if action.get("type") == "postback" and isinstance(data, str) and utf16_len(data) > MAX_POSTBACK_DATA:
        problems.append((f"{path}.data", f"at most {MAX_POSTBACK_DATA} characters"))
    return problems


def limit_problems(message: dict[str, Any], path: str) -> list[Problem]:
    """LINE's documented limits that its schema does not encode, for one schema-valid message."""
    problems: list[Problem] = []
    kind = message.get("type")
    text = message.get("text")
    if kind in ("text", "textV2") and isinstance(text, str) and utf16_len(text) > MAX_TEXT:
        problems.append((f"{path}.text", f"at most {MAX_TEXT} characters (UTF-16 units, as LINE counts)"))
    alt = message.get("altText")
    if isinstance(alt, str) and utf16_len(alt) > MAX_ALT_TEXT:
        problems.append((f"{path}.altText", f"at most {MAX_ALT_TEXT} characters (UTF-16 units, as LINE counts)"))
    if kind == "flex":
        contents = message.get("contents") or {}
        where = f"{path}.contents"
        if contents.get("type") == "carousel":
            bubbles = contents.get("contents") or []
            if len(bubbles) > MAX_CAROUSEL_BUBBLES:
                problems.append((f"{where}.contents", f"a carousel has at most {MAX_CAROUSEL_BUBBLES} bubbles"))
            if _json_size(contents) > MAX_CAROUSEL_BYTES:
                problems.append((where, f"a carousel's JSON is at most {MAX_CAROUSEL_BYTES} bytes"))
            problems += [(f"{where}.contents[{i}]", f"a bubble's JSON is at most {MAX_BUBBLE_BYTES} bytes")
                         for i, bubble in enumerate(bubbles) if _json_size(bubble) > MAX_BUBBLE_BYTES]
        elif _json_size(contents) > MAX_BUBBLE_BYTES:
            problems.append((where, f"a bubble's JSON is at most {MAX_BUBBLE_BYTES} bytes"))
        for action_path, action in _actions(contents, where):
            problems += _action_problems(action, action_path, MAX_FLEX_ACTION_LABEL)
    template = message.get("template")
    if kind == "template" and isinstance(template, dict):
        for index, action in enumerate(template.get("actions") or []):
            if isinstance(action, dict):
                problems += _action_problems(action, f"{path}.template.actions[{index}]", MAX_ACTION_LABEL)
    quick = message.get("quickReply")
    items = quick.get("items") if isinstance(quick, dict) else None
    if isinstance(items, list):
        if len(items) > MAX_QUICK_REPLY_ITEMS:
            problems.append((f"{path}.quickReply.items", f"at most {MAX_QUICK_REPLY_ITEMS} items"))
        for index, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("action"), dict):
                problems += _action_problems(item["action"], f"{path}.quickReply.items[{index}].action",
                                             MAX_ACTION_LABEL)
    return problems


def message_problems(messages: Any, field: str = "messages") -> list[Problem]:
    """Everything LINE would refuse in a list of message objects for one send (1-5 messages)."""
    if not isinstance(messages, list):
        return [(field, "must be a list of LINE message objects")]
    if not 1 <= len(messages) <= MAX_MESSAGES_PER_REQUEST:
        return [(field, f"1 to {MAX_MESSAGES_PER_REQUEST} messages")]
    problems: list[Problem] = []
    for index, message in enumerate(messages):
        path = f"{field}[{index}]"
        found = schema_problems(message, "Message", path)
        if not found and isinstance(message, dict):
            found = limit_problems(message, path)
        problems += found
    return problems
