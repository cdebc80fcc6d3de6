"""Helpers for asserting on Flex JSON in tests."""

from __future__ import annotations

from typing import Any


def flex_texts(node: Any) -> list[str]:
    """Every `text` component's text in a Flex tree, in document order."""
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") == "text" else []
        return found + [text for value in node.values() for text in flex_texts(value)]
    if isinstance(node, list):
        return [text for item in node for text in flex_texts(item)]
    return []
