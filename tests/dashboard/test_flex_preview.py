"""The LINE preview (pure): a reminder carousel becomes bubbles with image, label, name, price and button;
only values of known shapes reach the page's styles."""

from __future__ import annotations

from typing import Any

from dashboard.flex_preview import Node, bubble, preview
from flows.reminders.message import ProductCard, build_reminder_carousel
from storage.shop_settings import ReminderStep


def texts(node: Node) -> list[str]:
    found = [node.text] if node.kind in ("text", "button") and node.text else []
    for child in node.children:
        found += texts(child)
    return found


def nodes(node: Node, kind: str) -> list[Node]:
    found = [node] if node.kind == kind else []
    for child in node.children:
        found += nodes(child, kind)
    return found


def test_a_reminder_carousel_as_the_customer_sees_it() -> None:
    step = ReminderStep(delay_days=3, title="今週の注目商品", coupon_code="SPRING10", coupon_text="10%OFF")
    cards = [ProductCard("バッグ", "https://bot.example/r/t1", 12800, image_url="https://img.example/1.jpg",
                         total_stock=2),
             ProductCard("靴", "https://bot.example/r/t2", 9800, sale_price=7800)]
    message = build_reminder_carousel(cards, step)
    shown = preview(message)
    assert shown.kind == "flex" and shown.alt_text == message["altText"] and len(shown.bubbles) == 2
    first, second = shown.bubbles
    assert [name for name, _ in first.sections] == ["header", "hero", "body", "footer"]
    assert [name for name, _ in second.sections] == ["header", "body", "footer"]  # no https image: no hero
    body = dict(first.sections)["body"]
    assert texts(body) == [step.low_stock_label, "バッグ", "¥12,800", "10%OFF", "SPRING10"]
    assert texts(dict(second.sections)["body"])[2:4] == ["¥7,800", "¥9,800"]
    (image,) = nodes(dict(first.sections)["hero"], "image")
    assert image.src == "https://img.example/1.jpg" and "aspect-ratio: 1 / 1" in image.style
    (button,) = nodes(dict(first.sections)["footer"], "button")
    assert button.text == step.button_text and f"background-color: {step.button_color}" in button.style
    assert first.size == "kilo"


def test_text_messages_and_unknown_components() -> None:
    assert preview({"type": "text", "text": "こんにちは"}).text == "こんにちは"
    odd = bubble({"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [{"type": "video"}]}})
    assert nodes(odd.sections[0][1], "unknown")[0].text == "[video]"


HOSTILE: list[dict[str, Any]] = [
    {"type": "text", "text": "x", "color": "red; background: url(https://evil.example/)", "size": "99px;}"},
    {"type": "box", "layout": "vertical", "contents": [], "backgroundColor": "#fff\"><script>",
     "cornerRadius": "expression(alert(1))", "paddingAll": "10px; position: fixed"},
    {"type": "image", "url": "javascript:alert(1)", "aspectRatio": "1:1;position:fixed"},
    {"type": "button", "style": "primary", "color": "#12345g", "action": {"type": "uri", "label": "<b>x</b>"}},
]


def test_only_known_shapes_reach_the_styles() -> None:
    shown = bubble({"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": HOSTILE}})
    body = shown.sections[0][1]
    for node in [body, *body.children]:
        assert "url(" not in node.style and "position" not in node.style and "expression" not in node.style
        assert ";}" not in node.style and '"' not in node.style and "<" not in node.style
    image = nodes(body, "image")[0]
    assert image.src is None  # only https images are shown
    assert nodes(body, "button")[0].text == "<b>x</b>"  # text stays text (the template escapes it)
