"""Request validation against LINE's vendored OpenAPI documents plus the limits
LINE documents but the spec does not encode.

The schema walker and the message limits are production code's too
(`core.line_schema`: the bot validates merchant-authored messages with them);
here they answer requests as LINE does, with LINE's own byte limits.
"""

from __future__ import annotations

import re
from typing import Any

from core.line_limits import utf16_len
from core.line_schema import Errors, json_size, load_doc, schema, validate
from core.line_schema import check_message_limits as _check_limits

__all__ = ["CHAT_ID_RE", "USER_ID_RE", "UUID_RE", "Errors", "check_message_limits", "error_body", "json_size",
           "load_doc", "schema", "utf16_len", "validate", "validate_event", "validate_request"]

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


def check_message_limits(messages: Any, errors: Errors) -> None:
    """LINE's documented per-message limits, with LINE's byte limits for Flex containers."""
    _check_limits(messages, errors, carousel_bytes=MAX_CAROUSEL_BYTES, bubble_bytes=MAX_BUBBLE_BYTES)


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
