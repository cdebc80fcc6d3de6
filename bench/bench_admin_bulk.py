"""Admin API bulk ingest: 10,000 products and 10,000 orders through the real app and the embedded DB.

Run: `.venv/bin/python -m bench.bench_admin_bulk [--products N] [--orders N] [--batch N] [--concurrency N]
[--without-listeners]`.
Prints rows/s for: bulk product upsert (first insert and re-upsert), bulk order ingest, its replay, and
single `POST /orders` requests sent concurrently. A bulk request is one transaction per batch (orders +
summed customer totals + product sold counts); each write to a customer or product costs about 1 ms on
the embedded DB (it keeps every index entry), and each `order_recorded` listener call is paid per order.
`--without-listeners` disconnects those listeners to show the ingest path's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bot.app import create_app
from bot.typedefs import DATABASE
from core.settings import Settings

OPERATOR = "bench-operator"


def product(i: int) -> dict[str, Any]:
    return {
        "product_id": f"p{i:05d}", "title": f"商品 {i}", "url": f"https://shop.example/p/{i}",
        "image_url": f"https://shop.example/img/{i}.jpg", "price": 1000 + i % 5000, "category": f"c{i % 20}",
        "tags": [f"t{i % 7}"], "published": True, "track_inventory": True, "continue_selling": False,
        "variants": [{"id": "v1", "stock": i % 4}, {"id": "v2", "stock": 1}],
    }


def order(i: int, products: int) -> dict[str, Any]:
    return {
        "order_id": f"o{i:06d}", "line_user_id": f"U{i % 2000:032x}",
        "items": [{"product_id": f"p{(i * 7) % products:05d}", "variant_id": "v1", "quantity": 1 + i % 3, "price": 1200}],
        "total": 1200 * (1 + i % 3), "status": "paid", "ordered_at": f"2026-11-{1 + i % 28:02d}T03:00:00+09:00",
    }


async def timed(label: str, rows: int, work: Any) -> None:
    start = time.perf_counter()
    await work
    seconds = time.perf_counter() - start
    print(f"{label:<42} {rows:>7} rows  {seconds:7.2f} s  {rows / seconds:9.0f} rows/s", flush=True)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), operator_token=SecretStr(OPERATOR), log_level="WARNING")
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            created = await client.post("/admin/api/v1/shops", headers={"Authorization": f"Bearer {OPERATOR}"},
                                        json={"name": "bench", "channel_secret": "s" * 32, "channel_access_token": "t"})
            shop = await created.json()
            base = f"/admin/api/v1/shops/{shop['shop_id']}"
            auth = {"Authorization": f"Bearer {shop['api_key']}"}

            async def post_batches(path: str, key: str, rows: list[dict[str, Any]]) -> None:
                for start in range(0, len(rows), args.batch):
                    response = await client.post(base + path, json={key: rows[start:start + args.batch]}, headers=auth)
                    assert response.status == 200, await response.text()

            products = [product(i) for i in range(args.products)]
            await timed(f"products bulk upsert (new, {args.batch}/request)", len(products),
                        post_batches("/products/bulk", "products", products))
            await timed("products bulk upsert (existing)", len(products), post_batches("/products/bulk", "products", products))
            if args.without_listeners:
                signals = client.app[DATABASE].signals
                for listener in signals.order_recorded.listeners:
                    signals.order_recorded.disconnect(listener)
            orders = [order(i, args.products) for i in range(args.orders)]
            await timed(f"orders bulk ingest ({min(args.batch, 500)}/request)", len(orders),
                        post_batches("/orders/bulk", "orders", orders))
            await timed("orders bulk replay (unchanged)", len(orders), post_batches("/orders/bulk", "orders", orders))
            singles = [order(args.orders + i, args.products) for i in range(args.orders // 5)]
            semaphore = asyncio.Semaphore(args.concurrency)

            async def one(body: dict[str, Any]) -> None:
                async with semaphore:
                    response = await client.post(base + "/orders", json=body, headers=auth)
                    assert response.status == 201, await response.text()

            await timed(f"POST /orders singly ({args.concurrency} concurrent)", len(singles),
                        asyncio.gather(*[one(body) for body in singles]))
        finally:
            await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--without-listeners", action="store_true",
                        help="disconnect the order_recorded listeners (measures ingest alone)")
    args = parser.parse_args()
    args.batch = min(args.batch, 500)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
