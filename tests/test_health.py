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
    # Closing the app while its database is gone cancels PyMongo's monitor, which keeps reconnecting to it; a
    # socket whose connect is cancelled is never closed by the driver (pymongo/pool_shared.py
    # `_async_create_connection` closes it on OSError and TimeoutError only). Collect it here, where it is
    # known, rather than as a ResourceWarning in whichever test the garbage collector runs next.
    await client.close()
    await asyncio.sleep(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
