"""LINE message objects checked against LINE's own OpenAPI documents and documented limits.

The documents are vendored in `core/line_openapi/` (from ../shared/line-openapi,
Apache-2.0). Production code validates merchant-authored messages here (a step
sequence's messages are refused with a field-named 4xx before anything is
stored); the LINE simulator checks requests with the same walker, so what we
accept is what LINE (and linesim) accept.

We walk the schemas ourselves instead of handing them to jsonschema because the
OpenAPI `discriminator` (message `type`, Flex component `type`, action `type`)
is what actually selects the schema; plain JSON Schema would accept any object
with a `type`. Lengths are counted in UTF-16 code units, as LINE counts them.
Pure: no I/O but reading the vendored documents once per process.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.line_limits import (
    MAX_ACTION_LABEL,
    MAX_ALT_TEXT,
    MAX_BUBBLE_BYTES,
    MAX_CAROUSEL_BUBBLES,
    MAX_CAROUSEL_BYTES,
    MAX_FLEX_ACTION_LABEL,
    MAX_MESSAGES_PER_REQUEST,
    MAX_POSTBACK_DATA,
    MAX_TEXT,
    utf16_len,
)

OPENAPI_DIR = Path(__file__).parent / "line_openapi"
DOCS = {"messaging": "messaging-api.yml", "webhook": "webhook.yml"}

Errors = list[tuple[str, str]]  # (property path, message)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses the 180 KB document 5× faster


@cache
def load_doc(name: str = "messaging") -> dict[str, Any]:
    """Parse an OpenAPI document once per process."""
    with open(OPENAPI_DIR / DOCS[name], encoding="utf-8") as f:
        doc: dict[str, Any] = yaml.load(f, Loader=_LOADER)  # a safe loader (C or pure Python)
    return doc


def schema(name: str, doc: str = "messaging") -> dict[str, Any]:
    found: dict[str, Any] = load_doc(doc)["components"]["schemas"][name]
    return found


def json_size(obj: Any) -> int:
    """Bytes of the compact UTF-8 JSON, as LINE measures a Flex container."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def join_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _resolve(node: dict[str, Any], doc: str) -> dict[str, Any]:
    while "$ref" in node:
        node = schema(node["$ref"].rsplit("/", 1)[-1], doc)
    return node


_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def validate(inst: Any, node: dict[str, Any], path: str = "", doc: str = "messaging",
             errors: Errors | None = None, dispatch: bool = True) -> Errors:
    """Validate `inst` against an OpenAPI schema node, collecting (path, message).

    `dispatch=False` is used for `allOf` members so that a subtype's reference
    back to its discriminated base schema does not dispatch again (infinite loop).
    """
    errors = [] if errors is None else errors
    node = _resolve(node, doc)
    if inst is None and node.get("nullable"):
        return errors
    t = node.get("type")
    if t and not _TYPES[t](inst):
        errors.append((path, f"Must be of type {t}"))
        return errors
    disc = node.get("discriminator")
    if dispatch and disc and isinstance(inst, dict):
        prop = disc["propertyName"]
        mapping = disc.get("mapping", {})
        value = inst.get(prop)
        if value is None:
            errors.append((join_path(path, prop), "must be specified"))
        elif value not in mapping:
            errors.append((join_path(path, prop),
                           f"must be one of the following values: [{', '.join(mapping)}]"))
        else:
            validate(inst, {"$ref": mapping[value]}, path, doc, errors, dispatch=False)
        return errors
    for sub in node.get("allOf", []):
        validate(inst, sub, path, doc, errors, dispatch=False)
    if isinstance(inst, dict):
        for req in node.get("required", []):
            if inst.get(req) is None:
                errors.append((join_path(path, req), "must be specified"))
        props = node.get("properties", {})
        for key, value in inst.items():
            if key in props and value is not None:
                validate(value, props[key], join_path(path, key), doc, errors)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in inst.items():
                if key not in props:
                    validate(value, extra, join_path(path, key), doc, errors)
    elif isinstance(inst, list):
        lo, hi = node.get("minItems"), node.get("maxItems")
        if (lo is not None and len(inst) < lo) or (hi is not None and len(inst) > hi):
            errors.append((path, f"Size must be between {lo or 0} and {hi if hi is not None else 'unbounded'}"))
        if "items" in node:
            for i, item in enumerate(inst):
                validate(item, node["items"], join_path(path, i), doc, errors)
    elif isinstance(inst, str):
        n = utf16_len(inst)
        lo, hi = node.get("minLength"), node.get("maxLength")
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            errors.append((path, f"Length must be between {lo or 0} and {hi if hi is not None else 'unbounded'}"))
        if "pattern" in node and not re.search(node["pattern"], inst):
            errors.append((path, f"must match {node['pattern']}"))
    if "enum" in node and inst not in node["enum"]:
        errors.append((path, f"must be one of the following values: [{', '.join(map(str, node['enum']))}]"))
    if isinstance(inst, (int, float)) and not isinstance(inst, bool):
        if "minimum" in node and inst < node["minimum"]:
            errors.append((path, f"must be greater than or equal to {node['minimum']}"))
        if "maximum" in node and inst > node["maximum"]:
            errors.append((path, f"must be less than or equal to {node['maximum']}"))
    return errors


# ---- limits LINE documents outside the schema ---------------------------------

def _check_action(action: Any, path: str, errors: Errors, label_max: int) -> None:
    if not isinstance(action, dict):
        return
    label = action.get("label")
    if isinstance(label, str) and utf16_len(label) > label_max:
        errors.append((join_path(path, "label"), f"Length must be between 0 and {label_max}"))
    data = action.get("data")
    if action.get("type") == "postback" and isinstance(data, str) and utf16_len(data) > MAX_POSTBACK_DATA:
        errors.append((join_path(path, "data"), f"Length must be between 0 and {MAX_POSTBACK_DATA}"))


def _walk_flex_actions(node: Any, path: str, errors: Errors) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = join_path(path, key)
            if key in ("action", "defaultAction"):
                _check_action(value, sub, errors, MAX_FLEX_ACTION_LABEL)
            _walk_flex_actions(value, sub, errors)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk_flex_actions(value, join_path(path, i), errors)


def _check_flex(contents: Any, path: str, errors: Errors, carousel_bytes: int, bubble_bytes: int) -> None:
    if not isinstance(contents, dict):
        return
    if contents.get("type") == "carousel":
        bubbles = contents.get("contents") or []
        if len(bubbles) > MAX_CAROUSEL_BUBBLES:
            errors.append((join_path(path, "contents"), f"Size must be between 1 and {MAX_CAROUSEL_BUBBLES}"))
        if json_size(contents) > carousel_bytes:
            errors.append((path, f"Size of the carousel must be at most {carousel_bytes} bytes"))
        for i, bubble in enumerate(bubbles):
            if json_size(bubble) > bubble_bytes:
                errors.append((join_path(join_path(path, "contents"), i),
                               f"Size of a bubble must be at most {bubble_bytes} bytes"))
    elif contents.get("type") == "bubble" and json_size(contents) > bubble_bytes:
        errors.append((path, f"Size of a bubble must be at most {bubble_bytes} bytes"))
    _walk_flex_actions(contents, path, errors)


def check_message_limits(messages: Any, errors: Errors, *, prefix: str = "messages",
                         carousel_bytes: int = MAX_CAROUSEL_BYTES, bubble_bytes: int = MAX_BUBBLE_BYTES) -> None:
    """LINE's documented per-message limits (UTF-16 lengths, carousel size...).

    The byte limits default to ours (`core.line_limits`, a little under LINE's "50 KB" / "30 KB" so a
    message we accept is never refused); the simulator passes LINE's own.
    """
    if not isinstance(messages, list):
        return
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        path = f"{prefix}[{i}]"
        text = msg.get("text")
        if msg.get("type") in ("text", "textV2") and isinstance(text, str) and utf16_len(text) > MAX_TEXT:
            errors.append((f"{path}.text", f"Length must be between 0 and {MAX_TEXT}"))
        alt = msg.get("altText")
        if isinstance(alt, str) and utf16_len(alt) > MAX_ALT_TEXT:
            errors.append((f"{path}.altText", f"Length must be between 0 and {MAX_ALT_TEXT}"))
        if msg.get("type") == "flex":
            _check_flex(msg.get("contents"), f"{path}.contents", errors, carousel_bytes, bubble_bytes)
        if msg.get("type") == "template" and isinstance(msg.get("template"), dict):
            tpl = msg["template"]
            for key in ("actions",):
                for j, act in enumerate(tpl.get(key) or []):
                    _check_action(act, f"{path}.template.{key}[{j}]", errors, MAX_ACTION_LABEL)
        quick = msg.get("quickReply")
        if isinstance(quick, dict) and isinstance(quick.get("items"), list):
            for j, item in enumerate(quick["items"]):
                if isinstance(item, dict):
                    _check_action(item.get("action"), f"{path}.quickReply.items[{j}].action",
                                  errors, MAX_ACTION_LABEL)


def message_errors(messages: list[Any], prefix: str = "messages") -> Errors:
    """What LINE would refuse in these message objects (as a push's `messages`): schema first, then limits."""
    errors: Errors = []
    if not 1 <= len(messages) <= MAX_MESSAGES_PER_REQUEST:
        errors.append((prefix, f"Size must be between 1 and {MAX_MESSAGES_PER_REQUEST}"))
        return errors
    for i, message in enumerate(messages):
        validate(message, schema("Message"), join_path(prefix, i), "messaging", errors)
    if not errors:
        check_message_limits(messages, errors, prefix=prefix)
    return errors
