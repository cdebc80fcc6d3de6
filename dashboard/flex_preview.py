"""LINE messages as the customer would see them: Flex bubbles, carousels and texts turned into a render tree.

Pure: a message object (LINE's JSON, as the dry run returns it) becomes nodes
with CSS classes and a small, sanitised inline style, which the template
`_message.html` draws as HTML. Only values of known shapes pass (colours as
#RRGGBB[AA], LINE's size keywords, pixel or percent lengths, https image URLs),
so nothing in a message can inject markup or styles into the merchant's page.
Unknown components are shown as a labelled placeholder, never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
LENGTH = re.compile(r"^\d{1,4}(\.\d{1,2})?(px|%)$")
TEXT_SIZES = {"xxs": "10px", "xs": "11px", "sm": "13px", "md": "14px", "lg": "16px", "xl": "18px",
              "xxl": "21px", "3xl": "24px", "4xl": "28px", "5xl": "34px"}
SPACES = {"none": "0", "xs": "2px", "sm": "4px", "md": "8px", "lg": "12px", "xl": "16px", "xxl": "20px"}
RADII = {"none": "0", "xs": "2px", "sm": "4px", "md": "8px", "lg": "12px", "xl": "16px", "xxl": "20px"}
BUBBLE_SIZES = {"nano", "micro", "deca", "hecto", "kilo", "mega", "giga"}
LAYOUTS = {"vertical", "horizontal", "baseline"}
ALIGN = {"start": "left", "end": "right", "center": "center"}
DEFAULT_BUTTON = "#17C950"


@dataclass
class Node:
    kind: str  # box | text | image | button | separator | spacer | unknown
    classes: list[str] = field(default_factory=list)
    style: str = ""
    text: str = ""
    src: str | None = None  # image URL (https only)
    children: list[Node] = field(default_factory=list)


@dataclass
class BubblePreview:
    size: str
    sections: list[tuple[str, Node]]  # (header | hero | body | footer, node)


@dataclass
class MessagePreview:
    kind: str  # text | flex | image | other
    alt_text: str = ""
    text: str = ""
    src: str | None = None
    bubbles: list[BubblePreview] = field(default_factory=list)


def _colour(value: Any) -> str | None:
    return value if isinstance(value, str) and COLOUR.match(value) else None


def _length(value: Any, keywords: Mapping[str, str]) -> str | None:
    if not isinstance(value, str):
        return None
    return keywords.get(value) or (value if LENGTH.match(value) else None)


def _style(**declarations: str | None) -> str:
    return "; ".join(f"{name.replace('_', '-')}: {value}" for name, value in declarations.items() if value)


def _flex(component: Mapping[str, Any], parent_layout: str) -> str | None:
    """LINE's `flex`: in a row, children share the width (default 1); in a column they keep their height (default 0)."""
    given = component.get("flex")
    grow = given if isinstance(given, int) and not isinstance(given, bool) and 0 <= given <= 100 else None
    if parent_layout == "vertical":
        return f"{grow} 1 auto" if grow else None
    grow = 1 if grow is None else grow
    return f"{grow} 1 0" if grow > 0 else "0 0 auto"


def _margin(component: Mapping[str, Any], spacing: str | None) -> str | None:
    return _length(component.get("margin"), SPACES) or spacing


def _text(component: Mapping[str, Any], layout: str, spacing: str | None) -> Node:
    classes = ["fx-text"]
    if component.get("wrap"):
        classes.append("fx-wrap")
    lines = component.get("maxLines")
    clamp = str(lines) if isinstance(lines, int) and not isinstance(lines, bool) and 0 < lines <= 20 else None
    if clamp:
        classes.append("fx-clamp")
    style = _style(
        flex=_flex(component, layout),
        margin_top=_margin(component, spacing) if layout == "vertical" else None,
        margin_left=_margin(component, spacing) if layout != "vertical" else None,
        font_size=_length(component.get("size"), TEXT_SIZES),
        font_weight="bold" if component.get("weight") == "bold" else None,
        color=_colour(component.get("color")),
        text_align=ALIGN.get(str(component.get("align"))),
        text_decoration=component.get("decoration") if component.get("decoration") in ("line-through", "underline")
        else None,
        _webkit_line_clamp=clamp,
    )
    text = component.get("text")
    if not isinstance(text, str):  # spans: the text is the spans' text joined
        text = "".join(str(span.get("text", "")) for span in component.get("contents") or [] if isinstance(span, dict))
    return Node("text", classes, style, text=text)


def _image(component: Mapping[str, Any], layout: str, spacing: str | None) -> Node:
    url = component.get("url")
    src = url if isinstance(url, str) and url.startswith("https://") and len(url) <= 2000 else None
    ratio = component.get("aspectRatio")
    aspect = None
    if isinstance(ratio, str) and re.match(r"^\d{1,5}:\d{1,5}$", ratio):
        width, height = ratio.split(":")
        aspect = f"{width} / {height}"
    classes = ["fx-image", "fx-cover" if component.get("aspectMode") == "cover" else "fx-fit"]
    if component.get("size") == "full":
        classes.append("fx-full")
    style = _style(flex=_flex(component, layout), margin_top=_margin(component, spacing), aspect_ratio=aspect or "1 / 1",
                   background_color=_colour(component.get("backgroundColor")))
    return Node("image", classes, style, src=src)


def _button(component: Mapping[str, Any], layout: str, spacing: str | None) -> Node:
    action = component.get("action") or {}
    label = str(action.get("label") or "")
    kind = component.get("style") if component.get("style") in ("primary", "secondary", "link") else "link"
    colour = _colour(component.get("color"))
    if kind == "primary":
        style = _style(background_color=colour or DEFAULT_BUTTON)
    elif kind == "secondary":
        style = _style(background_color=colour or "#DCDFE5")
    else:
        style = _style(color=colour or "#42659A")
    height = "fx-button-sm" if component.get("height") == "sm" else "fx-button-md"
    margin = _margin(component, spacing)
    return Node("button", ["fx-button", f"fx-button-{kind}", height],
                "; ".join(part for part in (style, _style(flex=_flex(component, layout), margin_top=margin)) if part),
                text=label)


def _box(component: Mapping[str, Any], parent_layout: str, spacing: str | None, depth: int) -> Node:
    layout = component.get("layout") if component.get("layout") in LAYOUTS else "vertical"
    inner_spacing = _length(component.get("spacing"), SPACES)
    padding = _length(component.get("paddingAll"), SPACES)
    style = _style(
        flex=_flex(component, parent_layout),
        margin_top=_margin(component, spacing) if parent_layout == "vertical" else None,
        margin_left=_margin(component, spacing) if parent_layout != "vertical" else None,
        background_color=_colour(component.get("backgroundColor")),
        border_radius=_length(component.get("cornerRadius"), RADII),
        padding=padding,
        padding_top=_length(component.get("paddingTop"), SPACES),
        padding_bottom=_length(component.get("paddingBottom"), SPACES),
        padding_left=_length(component.get("paddingStart"), SPACES),
        padding_right=_length(component.get("paddingEnd"), SPACES),
        width=_length(component.get("width"), {}),
    )
    children = []
    for index, child in enumerate(component.get("contents") or []):
        if isinstance(child, dict):
            children.append(_component(child, str(layout), inner_spacing if index else None, depth + 1))
    return Node("box", ["fx-box", f"fx-{layout}"], style, children=children)


def _component(component: Mapping[str, Any], layout: str, spacing: str | None, depth: int = 0) -> Node:
    kind = component.get("type")
    if depth > 30:
        return Node("unknown", ["fx-unknown"], text="…")
    if kind == "box":
        return _box(component, layout, spacing, depth)
    if kind == "text":
        return _text(component, layout, spacing)
    if kind == "image":
        return _image(component, layout, spacing)
    if kind == "button":
        return _button(component, layout, spacing)
    if kind == "separator":
        return Node("separator", ["fx-separator"], _style(margin_top=_margin(component, spacing),
                                                          background_color=_colour(component.get("color"))))
    if kind == "filler" or kind == "spacer":
        return Node("spacer", ["fx-spacer"], _style(flex=_flex(component, layout)))
    return Node("unknown", ["fx-unknown"], text=f"[{kind}]")


def bubble(container: Mapping[str, Any]) -> BubblePreview:
    size = container.get("size") if container.get("size") in BUBBLE_SIZES else "mega"
    sections = []
    for name in ("header", "hero", "body", "footer"):
        part = container.get(name)
        if isinstance(part, dict):
            sections.append((name, _component(part, "vertical", None)))
    return BubblePreview(str(size), sections)


def preview(message: Mapping[str, Any]) -> MessagePreview:
    """One message object → what the template draws."""
    kind = message.get("type")
    if kind in ("text", "textV2"):
        return MessagePreview("text", text=str(message.get("text") or ""))
    if kind == "image":
        url = message.get("previewImageUrl") or message.get("originalContentUrl")
        return MessagePreview("image", src=url if isinstance(url, str) and url.startswith("https://") else None)
    if kind == "flex":
        contents = message.get("contents") or {}
        containers = contents.get("contents") if contents.get("type") == "carousel" else [contents]
        return MessagePreview("flex", alt_text=str(message.get("altText") or ""),
                              bubbles=[bubble(c) for c in containers or [] if isinstance(c, dict)])
    return MessagePreview("other", text=f"[{kind}]")
