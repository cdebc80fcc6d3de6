"""The OpenAPI 3 document of the admin API, generated from the declared routes and their models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from admin_api.registry import AdminApi, Route

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}
ERROR_STATUSES = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing or invalid credentials",
    403: "Not allowed",
    404: "Not found",
    413: "Request body too large",
    422: "Validation failed; `error.field` names the field",
}
PATH_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")


def _schema_for(value: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(value).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    components.update(schema.pop("$defs", {}))
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(route.path)
    ]
    if route.query is not None:
        parameters += _query_parameters(route.query)
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": {},
    }
    if route.auth != "none":
        operation["security"] = [{"operatorToken": []}] if route.auth == "operator" else [{"shopApiKey": []}]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=route.body.__name__)}}},
        }
    success: dict[str, Any] = {"description": "Success"}
    if route.response is not None and route.status != 204:
        success["content"] = {"application/json": {"schema": _schema_for(route.response, components)}}
    operation["responses"][str(route.status)] = success
    for status, description in route.extra_statuses.items():
        operation["responses"][str(status)] = {"description": description}
    for status, description in ERROR_STATUSES.items():
        if status == 401 and route.auth == "none":
            continue
        operation["responses"].setdefault(
            str(status),
            {"description": description, "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="Error")}}}},
        )
    return operation


def build_openapi(api: AdminApi, *, server_url: str | None = None) -> dict[str, Any]:
    """The whole admin API as an OpenAPI 3.1 document."""
    bodies = sorted({route.body for route in api.routes if route.body is not None}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(model, "validation") for model in bodies], ref_template=REF_TEMPLATE)
    components: dict[str, Any] = dict(defs.get("$defs", {}))
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for route in api.routes:
        path = PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", route.full_path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, components)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "LINE CRM bot admin API",
            "version": "1.0.0",
            "description": "Per-shop administration: shops, catalogue, orders, customers, settings, reports.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "OPERATOR_TOKEN"},
                "shopApiKey": {"type": "http", "scheme": "bearer", "description": "the shop's API key"},
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
