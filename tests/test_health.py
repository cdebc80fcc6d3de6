import asyncio
import gc
import warnings
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import create_app
from storage.embedded import start_embedded


async def test_healthz_ok(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "db": "ok"}


async def test_healthz_503_when_database_goes_away(aiohttp_client: Any, settings: Any, clock: Any, tmp_path: Any) -> None:
    server = await start_embedded(tmp_path / "own-db")
    try:
        app = create_app(settings.model_copy(update={"mongodb_uri": server.uri}), clock=clock)
        client = await aiohttp_client(app)
        assert (await client.get("/healthz")).status == 200
    finally:
        await server.stop()
    response = await client.get("/healthz")
    assert response.status == 503
    assert (await response.json())["db"] == "unreachable"
    # Closing the app while its database is gone cancels PyMongo's monitor while it reconnects to it: the socket
    # of that connect is closed all the same (storage.driver_fixes), none is left for the garbage collector.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        await client.close()
        await asyncio.sleep(0.2)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
