"""The embedded database: started by the app when MONGODB_URI is unset, data survives restarts."""

from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import create_app
from storage import schema
from storage.embedded import start_embedded
from tests.conftest import OPERATOR_TOKEN, AppServer


async def test_shop_survives_app_restart_on_embedded_database(settings: Any, clock: Any, tmp_path: Any) -> None:
    embedded = settings.model_copy(update={"mongodb_uri": None, "data_dir": tmp_path / "data"})
    client = TestClient(AppServer(create_app(embedded, clock=clock)))
    await client.start_server()
    try:
        created = await client.post(
            "/admin/api/v1/shops",
            json={"name": "永続ショップ", "channel_secret": "s" * 32, "channel_access_token": "t"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        shop = await created.json()
    finally:
        await client.close()
    assert not (tmp_path / "data" / "embedded-db.json").exists(), "the server was stopped and its record removed"

    client = TestClient(AppServer(create_app(embedded, clock=clock)))
    await client.start_server()
    try:
        response = await client.get(
            f"/admin/api/v1/shops/{shop['shop_id']}", headers={"Authorization": f"Bearer {shop['api_key']}"}
        )
        assert response.status == 200
        assert (await response.json())["name"] == "永続ショップ"
    finally:
        await client.close()


async def test_second_process_joins_the_running_server(tmp_path: Any) -> None:
    owner = await start_embedded(tmp_path)
    try:
        joined = await start_embedded(tmp_path)
        assert joined.port == owner.port and joined.process is None
        await joined.stop()  # a joiner never stops the owner's server
        from storage.database import connect

        database = connect(owner.uri, "probe")
        assert await database.ping()
        await database.close()
    finally:
        await owner.stop()


async def test_indexes_are_idempotent(client: TestClient[Any, Any]) -> None:
    from bot.typedefs import DATABASE

    database = client.app[DATABASE]
    await database.ensure_indexes(schema.INDEXES)
    await database.ensure_indexes(schema.INDEXES)
    names = {index["name"] async for index in await database["customers"].list_indexes()}
    assert "shop_user" in names
