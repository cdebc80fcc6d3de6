"""`EncodedTemplate`: a value encoded once and filled per customer must equal encoding it whole."""

from __future__ import annotations

import json

import pytest

from core.flex import EncodedTemplate, compact_json

SLOT = "__CLICK_URL__"
TEMPLATE = {"type": "bubble", "action": {"type": "uri", "uri": SLOT}, "alt": "閲覧商品", "again": SLOT}


@pytest.mark.parametrize("value", ["https://bot.example/r/abc.def?x=1&y=2", "テスト", "", "a'b<>&%"])
def test_fill_equals_encoding_the_whole_value(value: str) -> None:
    template = EncodedTemplate(TEMPLATE, SLOT)
    filled = template.fill(value)
    assert filled == compact_json({**TEMPLATE, "action": {"type": "uri", "uri": value}, "again": value})
    assert json.loads(filled)["action"]["uri"] == value
    assert template.size + 2 * len(value.encode()) == len(filled)


@pytest.mark.parametrize("value", ['a"b', "a\\b", "a\nb", "a\x00b", "a\x1fb"])
def test_a_value_json_must_escape_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        EncodedTemplate(TEMPLATE, SLOT).fill(value)
    with pytest.raises(ValueError):
        EncodedTemplate(TEMPLATE, value)


def test_del_and_non_ascii_need_no_escape() -> None:
    assert json.loads(EncodedTemplate(TEMPLATE, SLOT).fill("\x7fé"))["again"] == "\x7fé"
