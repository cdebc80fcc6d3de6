"""No 5xx from anyone's input: every route of the OpenAPI document, the webhook, the tracking and
link endpoints and the link pages are driven with hostile inputs drawn by hypothesis - deeply nested
JSON, control characters and lone surrogates, `true` for numbers and numbers for dates, out-of-range
dates in queries and cursors, path IDs like `..` / `%2e%2e` / `a@b`, non-ASCII and binary
`Authorization` / `x-line-signature` values - and every answer must be a 4xx (or a 2xx/3xx) in our
error shape, never a 5xx. Cases are drawn up front, deterministically, then sent on a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.webhook import signature_for
from tests.admin_api.helpers import order, product
from tests.conftest import OPERATOR_TOKEN
from tests.linking.conftest import SHOP_ORIGIN

CASES_PER_ROUTE = 14

NASTY_TEXT = st.sampled_from([
    "a\x00b", "\x07bell", "line\u2028sep", "\x85next", "\ud800", "\udfff", "..", "%2e%2e", "../../etc/passwd",
    "a@b", "名前", "\u202etxt", " ", "", "x" * 5000, "\U0001F600", "\x7f", "\ufeff",
])
BAD_DATES = st.sampled_from([
    "99999-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
    "2037-13-45T25:61:61Z", "1700000000", "-1", "2037-12-01", "+275760-09-13T00:00:00Z", "NaN", "",
])
BAD_NUMBERS: st.SearchStrategy[object] = st.sampled_from([True, False, "100", 1e308, -1e308, 10**40, -(10**40), 1.5, None, [], {}])
SCALARS = st.one_of(NASTY_TEXT, BAD_DATES, BAD_NUMBERS, st.integers(), st.text(max_size=12))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.one_of(NASTY_TEXT, st.text(max_size=8)), inner, max_size=3), max_leaves=8)
CURSORS = st.one_of(
    BAD_DATES,
    st.binary(max_size=40).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    st.sampled_from([base64.urlsafe_b64encode(json.dumps(v).encode()).decode() for v in (
        ["99999-01-01T00:00:00Z", "x"], [1e308, 1], {"t": "0000-01-01"}, [None], "x" * 100)]),
    NASTY_TEXT,
)
HEADER_VALUES = st.sampled_from([
    "Bearer \u00e9t\u00e9", "Bearer 鍵", "\u00ff" * 10, "Bearer  ", "Basic x", "Bearer \U0001F511",
])
PATH_IDS = st.sampled_from(["..", "%2e%2e", "a@b", "%00", "x" * 300, "名前", "a%2Fb", "%ff", "U" + "0" * 32])


def deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


BODIES = st.one_of(
    st.tuples(st.integers(40, 5000), st.sampled_from(["list", "dict"])).map(lambda t: deep(*t)),
    JSONISH.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.binary(max_size=64),
    st.sampled_from([b'{"a": NaN}', b'{"a": Infinity}', b'"\\ud800"', b"\xff\xfe", b"{" * 3 + b"}", b""]),
)


def case_strategy(valid: dict[str, Any] | None) -> st.SearchStrategy[dict[str, Any]]:
    """One hostile request: usually one field of a valid body spoilt, else a hostile body; odd queries and headers."""
    spoiled: st.SearchStrategy[bytes] = BODIES
    if isinstance(valid, dict) and valid:
        spoiled = st.one_of(BODIES, st.tuples(st.sampled_from(sorted(valid)), JSONISH).map(
            lambda kv: json.dumps({**valid, kv[0]: kv[1]}, allow_nan=True).encode()))
    return st.fixed_dictionaries({
        "body": spoiled,
        "query": st.dictionaries(st.sampled_from(["from", "to", "after", "limit", "since", "send_at"]),
                                 st.one_of(BAD_DATES, CURSORS, NASTY_TEXT.filter(lambda s: "\x00" not in s)),
                                 max_size=3),
        "path_id": PATH_IDS,
        "auth": st.one_of(st.none(), HEADER_VALUES),
    })


def draw(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    drawn: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def headers_with(auth: str | None, default: dict[str, str]) -> dict[str, str]:
    return {**default, "Authorization": auth} if auth is not None else dict(default)


class Sender:
    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self.server_errors: list[tuple[str, str, int, str]] = []

    async def send(self, method: str, url: str, **kwargs: Any) -> None:
        response = await self.client.request(method, url, allow_redirects=False, **kwargs)
        text = await response.text(errors="replace")
        self.sent += 1
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        if response.status >= 500 or "Traceback" in text:
            self.server_errors.append((method, url, response.status, text[:300]))
        elif response.status >= 400 and response.content_type == "application/json":
            error = json.loads(text)["error"]
            assert set(error) == {"code", "message", "field"}, (method, url, text)


VALID_BODIES: dict[str, Any] = {"/products/{product_id}": product(), "/orders": order()}


async def test_hostile_inputs_never_get_a_5xx(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop(line_login_channel_id="1650000009", line_login_channel_secret="s" * 32)
    sender = Sender(client)
    base = f"/admin/api/v1/shops/{shop.shop_id}"
    assert (await client.put(f"{base}/products/p1", json=product(), headers=shop.auth)).status in (200, 201)
    assert (await client.post(f"{base}/orders", json=order(), headers=shop.auth)).status == 201
    assert (await client.put(f"{base}/settings/tracking", json={"allowed_origins": [SHOP_ORIGIN]},
                             headers=shop.auth)).status == 200
    document = await (await client.get("/admin/api/v1/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            template = path.replace("{shop_id}", shop.shop_id)
            valid = next((body for suffix, body in VALID_BODIES.items() if path.endswith(suffix)), None)
            default = {"Authorization": f"Bearer {OPERATOR_TOKEN if '{shop_id}' not in path else shop.api_key}"}
            for case in draw(case_strategy(valid), CASES_PER_ROUTE):
                url = template
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path" and parameter["name"] != "shop_id":
                        url = url.replace("{" + parameter["name"] + "}", case["path_id"])
                kwargs: dict[str, Any] = {"params": case["query"], "headers": headers_with(case["auth"], default)}
                if "requestBody" in operation:
                    kwargs["data"] = case["body"]
                    kwargs["headers"]["Content-Type"] = "application/json"
                await sender.send(method.upper(), url, **kwargs)

    # The webhook: bodies signed with the shop's secret (so they are parsed), and hostile signatures.
    for case in draw(case_strategy({"destination": "U0", "events": []}), 60):
        signature = case["auth"] or signature_for(case["body"], shop.channel_secret)
        await sender.send("POST", f"/webhook/{shop.shop_id}", data=case["body"],
                          headers={"x-line-signature": signature, "Content-Type": "application/json"})
        await sender.send("POST", f"/webhook/{case['path_id']}", data=case["body"],
                          headers={"x-line-signature": signature_for(case["body"], shop.channel_secret)})
    # Tracking, link tokens and the link pages: the shop's own origin, hostile bodies and queries.
    event = {"event_id": "e1", "browser_id": "b1", "type": "page_view", "url": SHOP_ORIGIN + "/p"}
    for case in draw(case_strategy(event), 60):
        headers = {"Origin": SHOP_ORIGIN, "Content-Type": "text/plain"}
        await sender.send("POST", f"/t/{shop.shop_id}/events", data=case["body"], headers=headers)
        await sender.send("POST", f"/t/{shop.shop_id}/link-token", data=case["body"], headers=headers)
        for page in ("", "/code", "/callback"):
            await sender.send("GET", f"/l/{shop.shop_id}{page}", params={
                "lt": case["path_id"], "bid": case["path_id"], "return": case["path_id"], "state": case["path_id"],
                "code": case["path_id"], **case["query"]})
        await sender.send("GET", f"/r/{case['path_id']}")
        await sender.send("GET", "/healthz", headers=headers_with(case["auth"], {}))
    assert sender.server_errors == [], sender.server_errors[:5]
    assert sender.sent > 1000
    print(f"hostile requests sent: {sender.sent}, 5xx answers: {len(sender.server_errors)}, by status: "
          f"{dict(sorted(sender.statuses.items()))}")


async def raw_request(client: TestClient[Any, Any], request: bytes) -> tuple[int, bytes]:
    """Bytes no HTTP client library would send: the status and the body of the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port, family=socket.AF_INET)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_over_long_request_lines_and_binary_headers_get_a_4xx(
    client: TestClient[Any, Any], make_shop: Any
) -> None:
    shop = await make_shop()
    status, body = await raw_request(
        client, b"GET /healthz?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert 400 <= status < 500 and b"Traceback" not in body
    for header in (b"Authorization: Bearer \xff\xfe\x80", b"Authorization: Bearer \xe9t\xe9"):
        status, body = await raw_request(client, b"GET /admin/api/v1/shops/" + shop.shop_id.encode()
                                         + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n")
        assert status == 401 and json.loads(body)["error"]["field"] == "Authorization", body
    signed = b"x-line-signature: \xff\xfe\r\nContent-Length: 2\r\n"
    status, body = await raw_request(client, b"POST /webhook/" + shop.shop_id.encode()
                                     + b" HTTP/1.1\r\nHost: x\r\n" + signed + b"Connection: close\r\n\r\n{}")
    assert status == 401 and json.loads(body)["error"]["field"] == "x-line-signature", body
