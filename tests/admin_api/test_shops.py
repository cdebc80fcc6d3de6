from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VALID = {"name": "ショップA", "channel_secret": "a" * 32, "channel_access_token": "token-a"}


async def count_shops(client: TestClient[web.Request, web.Application]) -> int:
    from bot.typedefs import DATABASE

    return await client.app[DATABASE].shops.count_documents({})


async def test_create_shop_returns_id_and_key_stored_hashed(client: TestClient[Any, Any]) -> None:
    response = await client.post("/admin/api/v1/shops", json=VALID, headers=OPERATOR)
    assert response.status == 201
    data = await response.json()
    assert data["shop_id"].startswith("shp_") and data["api_key"].startswith("lcrm_")
    from bot.typedefs import DATABASE

    doc = await client.app[DATABASE].shops.find_one({"_id": data["shop_id"]})
    assert doc is not None and data["api_key"] not in str(doc)
    assert doc["timezone"] == "Asia/Tokyo"


async def test_get_shop_with_its_key_hides_secrets(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop(line_login_channel_id="1234567890", line_login_channel_secret="login-secret")
    response = await client.get(f"/admin/api/v1/shops/{shop.shop_id}", headers=shop.auth)
    assert response.status == 200
    text = await response.text()
    body = await response.json()
    assert body["shop_id"] == shop.shop_id and body["name"] == "テストショップ"
    assert body["line_login_channel_id"] == "1234567890"
    for secret in (shop.channel_secret, shop.channel_access_token, "login-secret", shop.api_key):
        assert secret not in text


async def test_other_shops_key_and_missing_key_are_refused(client: TestClient[Any, Any], make_shop: Any) -> None:
    first, second = await make_shop(), await make_shop()
    url = f"/admin/api/v1/shops/{first.shop_id}"
    assert (await client.get(url, headers=second.auth)).status == 401
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers={"Authorization": "Bearer lcrm_nope"})).status == 401
    assert (await client.get(url, headers={"Authorization": first.api_key})).status == 401
    error = await (await client.get(url, headers=second.auth)).json()
    assert error["error"]["code"] == "unauthorized"


async def test_unknown_shop_is_unauthorized_not_a_crash(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    response = await client.get("/admin/api/v1/shops/shp_0000000000000000", headers=shop.auth)
    assert response.status == 401


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Basic abc"}, 401)],
)
async def test_shop_creation_needs_the_operator_token(
    client: TestClient[Any, Any], headers: dict[str, str], status: int
) -> None:
    response = await client.post("/admin/api/v1/shops", json=VALID, headers=headers)
    assert response.status == status
    assert await count_shops(client) == 0


async def test_shop_creation_refused_when_operator_token_unset(
    aiohttp_client: Any, settings: Any, clock: Any
) -> None:
    from bot.app import create_app

    client = await aiohttp_client(create_app(settings.model_copy(update={"operator_token": None}), clock=clock))
    response = await client.post("/admin/api/v1/shops", json=VALID, headers=OPERATOR)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in VALID.items() if k != "name"}, "name"),
        ({**VALID, "name": ""}, "name"),
        ({**VALID, "name": 42}, "name"),
        ({**VALID, "channel_secret": "has space"}, "channel_secret"),
        ({**VALID, "timezone": "Mars/Olympus"}, "timezone"),
        ({**VALID, "line_login_channel_id": "abc"}, "line_login_channel_id"),
        ({**VALID, "surprise": True}, "surprise"),
    ],
)
async def test_bad_shop_body_names_the_field_and_stores_nothing(
    client: TestClient[Any, Any], body: dict[str, Any], field: str
) -> None:
    response = await client.post("/admin/api/v1/shops", json=body, headers=OPERATOR)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["field"] == field and error["code"] == "validation_error" and error["message"]
    assert await count_shops(client) == 0


async def test_malformed_json_and_non_object(client: TestClient[Any, Any]) -> None:
    response = await client.post("/admin/api/v1/shops", data=b"{not json", headers=OPERATOR)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    response = await client.post("/admin/api/v1/shops", json=[1, 2], headers=OPERATOR)
    assert response.status == 422
    assert await count_shops(client) == 0


async def test_oversize_body_is_413(client: TestClient[Any, Any]) -> None:
    import io
    import json

    huge = json.dumps({**VALID, "name": "x" * (3 * 1024 * 1024)}).encode()
    response = await client.post(
        "/admin/api/v1/shops", data=io.BytesIO(huge), headers={**OPERATOR, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert await count_shops(client) == 0


async def test_patch_updates_and_rotation_revokes_old_key(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"/admin/api/v1/shops/{shop.shop_id}"
    response = await client.patch(url, json={"name": "新しい名前", "timezone": "Asia/Seoul"}, headers=shop.auth)
    assert response.status == 200
    assert (await response.json())["timezone"] == "Asia/Seoul"
    bad = await client.patch(url, json={"timezone": None}, headers=shop.auth)
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "timezone"
    rotated = await client.post(url + "/api-key", headers=shop.auth)
    new_key = (await rotated.json())["api_key"]
    assert (await client.get(url, headers=shop.auth)).status == 401
    assert (await client.get(url, headers={"Authorization": f"Bearer {new_key}"})).status == 200


async def test_unknown_route_and_method_are_json_errors(client: TestClient[Any, Any]) -> None:
    response = await client.get("/no/such/route")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    response = await client.delete("/admin/api/v1/shops")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_openapi_describes_existing_routes(client: TestClient[Any, Any]) -> None:
    response = await client.get("/admin/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert "post" in paths["/admin/api/v1/shops"]
    create = paths["/admin/api/v1/shops"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"name", "channel_secret", "channel_access_token"}
    assert schema["additionalProperties"] is False
    assert {"get", "patch"} <= set(paths["/admin/api/v1/shops/{shop_id}"])
    assert "201" in create["responses"] and "422" in create["responses"]
    # every $ref resolves
    text = await response.text()
    import re

    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in document["components"]["schemas"], name
