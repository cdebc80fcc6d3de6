"""The sequences admin routes: define, read, list, delete; field-named 4xx for every rule, nothing stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.flows.sequences.conftest import World, text

VALID: dict[str, Any] = {
    "name": "ようこそ",
    "enabled": True,
    "trigger": {"event": "page_view", "url_contains": "/products/"},
    "steps": [
        {"wait_minutes": 60, "filter": {"first_seen_within_days": 3, "total_spent": {"min": 0, "max": 0},
                                        "purchase_count": {"max": 2}, "utm": {"source": "instagram"},
                                        "tags_all": ["会員"], "tags_none": ["退会"]},
         "messages": [text("{display_name}さん、{points}ポイントあります")]},
        {"wait_minutes": 24 * 60, "messages": [
            {"type": "flex", "altText": "おすすめ", "contents": {
                "type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
                    {"type": "text", "text": "今週のおすすめ"},
                    {"type": "button", "action": {"type": "uri", "label": "見る", "uri": "https://shop.example/"}}]}}},
            {"type": "sticker", "packageId": "446", "stickerId": "1988"}]},
    ],
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "21:00"},
    "goal": {"event": "page_view", "url_contains": "/signup", "within_days": 7},
    "reentry": False,
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """VALID with one field replaced (`a.b[0].c`; a value of ... deletes the field)."""
    body = copy.deepcopy(VALID)
    parts = path.replace("]", "").replace("[", ".").split(".")
    node: Any = body
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


async def test_put_get_list_delete(world: World) -> None:
    created = await world.put_sequence("welcome.v1", VALID, status=201)
    assert created["sequence_id"] == "welcome.v1" and created["version"] == 1
    assert {k: created[k] for k in VALID} == VALID
    response = await world.client.get(world.api("/sequences/welcome.v1"), headers=world.shop.auth)
    assert response.status == 200 and await response.json() == created
    edited = await world.put_sequence("welcome.v1", {**VALID, "name": "ようこそ2"}, status=200)
    assert edited["version"] == 2 and edited["name"] == "ようこそ2" and edited["created_at"] == created["created_at"]
    listed = await (await world.client.get(world.api("/sequences"), headers=world.shop.auth)).json()
    assert [s["sequence_id"] for s in listed["items"]] == ["welcome.v1"]
    assert await world.delete_sequence("welcome.v1") == 204
    assert await world.delete_sequence("welcome.v1") == 404
    missing = await world.client.get(world.api("/sequences/welcome.v1"), headers=world.shop.auth)
    assert missing.status == 404 and (await missing.json())["error"]["field"] == "sequence_id"


async def test_defaults_and_the_other_shop_cannot_see_it(world: World, make_shop: Any) -> None:
    minimal = {"name": "m", "trigger": {"event": "follow"},
               "steps": [{"wait_minutes": 1, "messages": [text("ようこそ")]}]}
    made = await world.put_sequence("m", minimal, status=201)
    assert (made["enabled"], made["reentry"], made["window"], made["goal"]) == (True, False, None, None)
    other = await make_shop()
    response = await world.client.get(f"/admin/api/v1/shops/{other.shop_id}/sequences/m", headers=other.auth)
    assert response.status == 404
    foreign = await world.client.get(world.api("/sequences/m"), headers=other.auth)
    assert foreign.status in (401, 403)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("steps[0].wait_minutes", 0, "steps[0].wait_minutes"),  # waits ≥ 1 minute
        ("steps[0].wait_minutes", 90 * 24 * 60 + 1, "steps[0].wait_minutes"),  # at most 90 days
        ("steps[0].wait_minutes", "60", "steps[0].wait_minutes"),
        ("steps", [], "steps"),
        ("window.weekdays", [], "window.weekdays"),  # at least one weekday
        ("window.weekdays", ["mon", "mon"], "window.weekdays"),
        ("window.weekdays", ["monday"], "window.weekdays[0]"),
        ("window.end", "09:00", "window.end"),  # start ≠ end
        ("window.start", "9:00", "window.start"),
        ("window.end", "24:00", "window.end"),
        ("trigger.event", "signup", "trigger.event"),
        ("trigger.tag", "会員", "trigger.tag"),  # a tag only for tag_added
        ("trigger", {"event": "tag_added"}, "trigger.tag"),  # …and required there
        ("trigger", {"event": "follow", "url_contains": "/x"}, "trigger.url_contains"),
        ("goal.within_days", 0, "goal.within_days"),
        ("goal", {"event": "purchase", "url_contains": "/x", "within_days": 3}, "goal.url_contains"),
        ("goal", {"event": "page_view"}, "goal.within_days"),
        ("steps[0].filter.total_spent", {"min": 10, "max": 5}, "steps[0].filter.total_spent.max"),
        ("steps[0].filter.purchase_count", {"min": -1}, "steps[0].filter.purchase_count.min"),
        ("steps[0].filter.utm", {}, "steps[0].filter.utm"),
        ("steps[0].filter.utm", {"content": "x"}, "steps[0].filter.utm.content"),
        ("steps[0].filter.tags_none", ["会員"], "steps[0].filter.tags_none"),
        ("steps[0].filter.first_seen_within_days", 0, "steps[0].filter.first_seen_within_days"),
        ("steps[0].filter.color", "red", "steps[0].filter.color"),
        ("steps[0].messages", [], "steps[0].messages"),
        ("steps[0].messages", [text("x")] * 6, "steps[0].messages"),  # 1–5 messages
        # LINE's message schema (from its OpenAPI document)
        ("steps[0].messages[0]", {"type": "txt", "text": "x"}, "steps[0].messages[0].type"),
        ("steps[0].messages[0]", {"type": "text"}, "steps[0].messages[0].text"),
        ("steps[1].messages[0].altText", ..., "steps[1].messages[0].altText"),
        ("steps[1].messages[0].contents.body.layout", "diagonal", "steps[1].messages[0].contents.body.layout"),
        ("steps[1].messages[0].contents.body.contents[1].action.uri", 5,
         "steps[1].messages[0].contents.body.contents[1].action.uri"),
        # LINE's size limits
        ("steps[0].messages[0].text", "あ" * 5001, "steps[0].messages[0].text"),
        ("steps[0].messages[0].text", "😀" * 2501, "steps[0].messages[0].text"),  # UTF-16 units
        ("steps[0].messages[0].text", "{display_name}" + "あ" * 4950, "steps[0].messages[0].text"),  # when filled
        ("steps[1].messages[0].altText", "あ" * 1501, "steps[1].messages[0].altText"),
        ("steps[1].messages[0].contents.body.contents[1].action.label", "あ" * 41,
         "steps[1].messages[0].contents.body.contents[1].action.label"),
        # placeholders we know
        ("steps[0].messages[0].text", "{name}さん", "steps[0].messages[0].text"),
        # keys and numbers the database could not store
        ("steps[0].messages[0]", {"type": "text", "text": "x", "$where": 1}, "steps[0].messages[0]"),
        ("steps[0].messages[0]", {"type": "text", "text": "x", "a.b": 1}, "steps[0].messages[0]"),
        ("steps[0].messages[0]", {"type": "text", "text": "x", "n": 2**70}, "steps[0].messages[0].n"),
        ("reentry", "yes", "reentry"),
        ("enabled", 1, "enabled"),
        ("name", "", "name"),
        ("extra", True, "extra"),
    ],
)
async def test_invalid_definitions_are_refused_naming_the_field(world: World, path: str, value: Any,
                                                                field: str) -> None:
    answer = await world.put_sequence("s1", changed(path, value), status=422)
    assert answer["error"]["field"] == field, answer
    assert answer["error"]["code"] == "validation_error"
    response = await world.client.get(world.api("/sequences/s1"), headers=world.shop.auth)
    assert response.status == 404  # nothing stored


async def test_a_refused_edit_keeps_the_stored_sequence(world: World) -> None:
    await world.put_sequence("s1", VALID, status=201)
    await world.put_sequence("s1", changed("window.end", "09:00"), status=422)
    stored = await (await world.client.get(world.api("/sequences/s1"), headers=world.shop.auth)).json()
    assert stored["window"] == VALID["window"] and stored["version"] == 1


async def test_bad_ids_and_bodies(world: World) -> None:
    reserved = await world.put_sequence("dry-run", VALID, status=422)
    assert reserved["error"]["field"] == "sequence_id"
    bad = await world.client.put(world.api("/sequences/a%20b"), json=VALID, headers=world.shop.auth)
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "sequence_id"
    broken = await world.client.put(world.api("/sequences/s1"), data=b"{", headers=world.shop.auth)
    assert broken.status == 400
    report = await world.client.get(world.api("/reports/sequences/s1"), params={"from": "yesterday"},
                                    headers=world.shop.auth)
    assert report.status == 422 and (await report.json())["error"]["field"] == "from"
    dry = await world.client.get(world.api("/sequences/dry-run"), params={"line_user_id": "Unobody"},
                                 headers=world.shop.auth)
    assert dry.status == 404 and (await dry.json())["error"]["field"] == "line_user_id"


async def test_the_openapi_document_describes_the_routes(world: World) -> None:
    document = await (await world.client.get("/admin/api/v1/openapi.json")).json()
    paths = document["paths"]
    base = "/admin/api/v1/shops/{shop_id}"
    assert {"put", "get", "delete"} <= set(paths[base + "/sequences/{sequence_id}"])
    assert "get" in paths[base + "/reports/sequences/{sequence_id}"] and "get" in paths[base + "/sequences/dry-run"]
    assert "SequenceDefinition" in document["components"]["schemas"]
