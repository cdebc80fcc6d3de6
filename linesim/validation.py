"""Request validation against LINE's vendored OpenAPI documents plus the limits
LINE documents but the spec does not encode.

We walk the schemas ourselves instead of handing them to jsonschema because the
OpenAPI `discriminator` (message `type`, Flex component `type`, action `type`)
is what actually selects the schema; plain JSON Schema would accept any object
with a `type`. Lengths are counted in UTF-16 code units, as LINE counts them.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

OPENAPI_DIR = Path(__file__).parent / "openapi"
DOCS = {"messaging": "messaging-api.yml", "webhook": "webhook.yml"}

USER_ID_RE = re.compile(r"^U[0-9a-f]{32}$")
CHAT_ID_RE = re.compile(r"^[UCR][0-9a-f]{32}$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

MAX_MESSAGES = 5
MAX_MULTICAST = 500
MAX_BUBBLES = 12
MAX_CAROUSEL_BYTES = 50 * 1024
MAX_BUBBLE_BYTES = 30 * 1024
MAX_ALT_TEXT = 1500
MAX_TEXT = 5000
MAX_QUICK_REPLY = 13
MAX_POSTBACK_DATA = 300
MAX_LABEL = 20
MAX_FLEX_LABEL = 40

Errors = list[tuple[str, str]]  # (property path, message)


@cache
def load_doc(name: str = "messaging") -> dict[str, Any]:
    """Parse an OpenAPI document once per process (the YAML is ~180 KB)."""
    with open(OPENAPI_DIR / DOCS[name], encoding="utf-8") as f:
        return yaml.safe_load(f)


def schema(name: str, doc: str = "messaging") -> dict[str, Any]:
    return load_doc(doc)["components"]["schemas"][name]


def utf16_len(s: str) -> int:
    """Length as LINE counts it: UTF-16 code units (astral chars count 2)."""
    return len(s.encode("utf-16-le")) // 2


def json_size(obj: Any) -> int:
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _join(path: str, key: str | int) -> str:
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
            errors.append((_join(path, prop), "must be specified"))
        elif value not in mapping:
            errors.append((_join(path, prop),
                           f"must be one of the following values: [{', '.join(mapping)}]"))
        else:
            validate(inst, {"$ref": mapping[value]}, path, doc, errors, dispatch=False)
        return errors
    for sub in node.get("allOf", []):
        validate(inst, sub, path, doc, errors, dispatch=False)
    if isinstance(inst, dict):
        for req in node.get("required", []):
            if inst.get(req) is None:
                errors.append((_join(path, req), "must be specified"))
        props = node.get("properties", {})
        for key, value in inst.items():
            if key in props and value is not None:
                validate(value, props[key], _join(path, key), doc, errors)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in inst.items():
                if key not in props:
                    validate(value, extra, _join(path, key), doc, errors)
    elif isinstance(inst, list):
        lo, hi = node.get("minItems"), node.get("maxItems")
        if (lo is not None and len(inst) < lo) or (hi is not None and len(inst) > hi):
            errors.append((path, f"Size must be between {lo or 0} and {hi if hi is not None else 'unbounded'}"))
        if "items" in node:
            for i, item in enumerate(inst):
                validate(item, node["items"], _join(path, i), doc, errors)
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
        errors.append((_join(path, "label"), f"Length must be between 0 and {label_max}"))
    data = action.get("data")
    if action.get("type") == "postback" and isinstance(data, str) and utf16_len(data) > MAX_POSTBACK_DATA:
        errors.append((_join(path, "data"), f"Length must be between 0 and {MAX_POSTBACK_DATA}"))


def _walk_flex_actions(node: Any, path: str, errors: Errors) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = _join(path, key)
            if key in ("action", "defaultAction"):
                _check_action(value, sub, errors, MAX_FLEX_LABEL)
            _walk_flex_actions(value, sub, errors)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk_flex_actions(value, _join(path, i), errors)


def _check_flex(contents: Any, path: str, errors: Errors) -> None:
    if not isinstance(contents, dict):
        return
    if contents.get("type") == "carousel":
        bubbles = contents.get("contents") or []
        if len(bubbles) > MAX_BUBBLES:
            errors.append((_join(path, "contents"), f"Size must be between 1 and {MAX_BUBBLES}"))
        if json_size(contents) > MAX_CAROUSEL_BYTES:
            errors.append((path, f"Size of the carousel must be at most {MAX_CAROUSEL_BYTES} bytes"))
        for i, bubble in enumerate(bubbles):
            if json_size(bubble) > MAX_BUBBLE_BYTES:
                errors.append((_join(_join(path, "contents"), i),
                               f"Size of a bubble must be at most {MAX_BUBBLE_BYTES} bytes"))
    elif contents.get("type") == "bubble" and json_size(contents) > MAX_BUBBLE_BYTES:
        errors.append((path, f"Size of a bubble must be at most {MAX_BUBBLE_BYTES} bytes"))
    _walk_flex_actions(contents, path, errors)


def check_message_limits(messages: Any, errors: Errors) -> None:
    """LINE's documented per-message limits (UTF-16 lengths, carousel size...)."""
    if not isinstance(messages, list):
        return
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        path = f"messages[{i}]"
        text = msg.get("text")
        if msg.get("type") in ("text", "textV2") and isinstance(text, str) and utf16_len(text) > MAX_TEXT:
            errors.append((f"{path}.text", f"Length must be between 0 and {MAX_TEXT}"))
        alt = msg.get("altText")
        if isinstance(alt, str) and utf16_len(alt) > MAX_ALT_TEXT:
            errors.append((f"{path}.altText", f"Length must be between 0 and {MAX_ALT_TEXT}"))
        if msg.get("type") == "flex":
            _check_flex(msg.get("contents"), f"{path}.contents", errors)
        if msg.get("type") == "template" and isinstance(msg.get("template"), dict):
            tpl = msg["template"]
            for key in ("actions",):
                for j, act in enumerate(tpl.get(key) or []):
                    _check_action(act, f"{path}.template.{key}[{j}]", errors, MAX_LABEL)
        quick = msg.get("quickReply")
        if isinstance(quick, dict) and isinstance(quick.get("items"), list):
            for j, item in enumerate(quick["items"]):
                if isinstance(item, dict):
                    _check_action(item.get("action"), f"{path}.quickReply.items[{j}].action",
                                  errors, MAX_LABEL)


def validate_request(schema_name: str, body: Any) -> Errors:
    """Schema errors first; LINE's extra limits only for schema-valid bodies."""
    errors = validate(body, schema(schema_name))
    if errors or not isinstance(body, dict):
        return errors
    check_message_limits(body.get("messages"), errors)
    return errors


def validate_event(event: Any) -> Errors:
    """Check a webhook event against webhook.yml (used for our own factories)."""
    return validate(event, schema("Event", "webhook"), doc="webhook")


def error_body(errors: Errors) -> dict[str, Any]:
    """LINE's ErrorResponse shape for validation failures."""
    return {
        "message": f"The request body has {len(errors)} error(s)",
        "details": [{"message": m, "property": p} for p, m in errors],
    }
