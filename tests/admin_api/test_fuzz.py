"""Schema-driven fuzzing of the shop-scoped admin API: inputs generated from our own OpenAPI document
(valid ones, mutated ones and arbitrary JSON) are sent to the app on a real socket; none may get a 5xx.

Examples are drawn up front by hypothesis (deterministically) and then sent inside the test's event loop.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.admin_api.helpers import ok, order, product

EXAMPLES_PER_OPERATION = 12
IDS = st.one_of(st.sampled_from(["p1", "o-1", "U1", "x"]), st.from_regex(r"\A[A-Za-z0-9_.:@-]{1,20}\Z"),
                st.text(max_size=10).filter(lambda s: "/" not in s and "?" not in s and "#" not in s and s not in (".", "..")))
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values matching the JSON Schema subset pydantic emits (hypothesis-jsonschema does not run on
    this hypothesis version); custom validators beyond the schema may still refuse them (a 4xx)."""
    root = root or schema
    if "$ref" in schema:
        return from_schema(root["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], root)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, root) for option in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": one}, root) for one in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**12)), schema.get("maximum", 10**12))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"], fullmatch=True)
        else:
            text = st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 30), 30))
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
        return text.filter(lambda s: low <= len(s) <= high)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), root), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: from_schema(sub, root) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub, root) for name, sub in properties.items() if name not in required},
        )
    return ANY_JSON


def draw_all(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    drawn: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


def query_string(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def operation_strategy(operation: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    path_names = [p["name"] for p in operation["parameters"] if p["in"] == "path" and p["name"] != "shop_id"]
    query = [p for p in operation["parameters"] if p["in"] == "query"]
    query_schema = {"type": "object", "properties": {p["name"]: p["schema"] for p in query},
                    "required": [p["name"] for p in query if p["required"]], "additionalProperties": False,
                    "components": {"schemas": components}}
    body: st.SearchStrategy[Any] = st.none()
    if "requestBody" in operation:
        schema = {**operation["requestBody"]["content"]["application/json"]["schema"],
                  "components": {"schemas": components}}
        body = st.one_of(from_schema(schema), from_schema(schema).map(_mutate), ANY_JSON)
    return st.fixed_dictionaries({
        "path": st.fixed_dictionaries({name: IDS for name in path_names}),
        "query": st.one_of(from_schema(query_schema), st.dictionaries(st.sampled_from(["limit", "after", "x"]),
                                                                      st.text(max_size=8), max_size=2)),
        "body": body,
    })


def _mutate(value: Any) -> Any:
    """A valid body made wrong in one place (types swapped, negatives), to exercise the error paths."""
    if isinstance(value, dict) and value:
        key = min(value)
        return {**value, key: [value[key]] if not isinstance(value[key], list) else -1}
    return value


async def test_no_input_gets_a_5xx(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    base = f"/admin/api/v1/shops/{shop.shop_id}"
    await ok(await client.put(f"{base}/products/p1", json=product(), headers=shop.auth), 201)
    await ok(await client.post(f"{base}/orders", json=order(), headers=shop.auth), 201)
    document = await ok(await client.get("/admin/api/v1/openapi.json"))
    components = document["components"]["schemas"]
    sent = 0
    for path, operations in document["paths"].items():
        if "{shop_id}" not in path or path.endswith("/api-key"):
            continue
        for method, operation in operations.items():
            for case in draw_all(operation_strategy(operation, components), EXAMPLES_PER_OPERATION):
                url = path.replace("{shop_id}", shop.shop_id)
                for name, value in case["path"].items():
                    url = url.replace("{" + name + "}", value)
                params = {k: query_string(v) for k, v in case["query"].items() if v is not None}
                kwargs: dict[str, Any] = {"params": params, "headers": shop.auth}
                if "requestBody" in operation:
                    kwargs["json"] = case["body"]
                response = await client.request(method.upper(), url, **kwargs)
                sent += 1
                assert response.status < 500, (method, url, params, case["body"], await response.text())
    assert sent > 300
