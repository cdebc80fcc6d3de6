"""Admin routes for the catalogue: idempotent upsert, bulk upsert, patch (e.g. unpublish), delete, list."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictBool, ValidationError, field_validator

from admin_api.models import Identifier, Label, Limit, Stock, StrictModel, Tag, Tags, Url, Yen, path_id, unique
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from core.errors import ApiError, from_validation_error
from storage.products import ProductRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`


class Variant(StrictModel):
    id: Identifier
    title: Label | None = None
    price: Yen | None = None
    stock: Stock = Field(description="units in stock (a product's total stock is the sum over its variants)")


class ProductBody(StrictModel):
    title: Label
    url: Url
    image_url: Url
    image_urls: Annotated[list[Url], Field(max_length=20)] = Field(default_factory=list)
    price: Yen
    sale_price: Yen | None = None
    category: Label | None = None
    tags: Tags = Field(default_factory=list)
    published: StrictBool = True
    track_inventory: StrictBool = True
    continue_selling: StrictBool = Field(default=False, description="keep selling (and showing) when out of stock")
    variants: Annotated[list[Variant], Field(min_length=1, max_length=250)]

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, variants: list[Variant]) -> list[Variant]:
        return unique(variants, lambda variant: variant.id, "variant id")


class BulkProduct(ProductBody):
    product_id: Identifier


class ProductBulk(StrictModel):
    products: Annotated[list[BulkProduct], Field(min_length=1, max_length=1000)]

    @field_validator("products")
    @classmethod
    def _unique_ids(cls, products: list[BulkProduct]) -> list[BulkProduct]:
        return unique(products, lambda product: product.product_id, "product_id")


class ProductPatch(StrictModel):
    """Change some fields of an existing product (e.g. `{"published": false}` to unpublish)."""

    title: Label | None = None
    url: Url | None = None
    image_url: Url | None = None
    image_urls: Annotated[list[Url], Field(max_length=20)] | None = None
    price: Yen | None = None
    sale_price: Yen | None = None
    category: Label | None = None
    tags: Tags | None = None
    published: StrictBool | None = None
    track_inventory: StrictBool | None = None
    continue_selling: StrictBool | None = None
    variants: Annotated[list[Variant], Field(min_length=1, max_length=250)] | None = None


class ProductView(BaseModel):
    product_id: str
    title: str
    url: str
    image_url: str
    image_urls: list[str]
    price: int
    sale_price: int | None
    category: str | None
    tags: list[str]
    published: bool
    track_inventory: bool
    continue_selling: bool
    variants: list[Variant]
    total_stock: int
    available: bool = Field(description="shown to customers: published and (in stock or not tracked or continue selling)")
    sold_count: int
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductView]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


class BulkResult(BaseModel):
    created: int
    updated: int


class ProductQuery(StrictModel):
    limit: Limit = 50
    after: Identifier | None = Field(default=None, description="the last product_id of the previous page")
    category: Label | None = None
    tag: Tag | None = None
    published: bool | None = None
    available: bool | None = None


def product_view(doc: dict[str, Any]) -> ProductView:
    return ProductView.model_validate({**doc, "image_urls": doc.get("image_urls", []), "tags": doc.get("tags", [])})


@routes.route("PUT", SHOP_PATH + "/products/{product_id}", summary="Create or replace a product (idempotent)",
           body=ProductBody, response=ProductView, tag="products", extra_statuses={201: "Created"})
async def put_product(call: Call[ProductBody, None]) -> Reply:
    product_id = path_id(call, "product_id")
    repository = ProductRepository(call.db)
    shop_id = call.current_shop.shop_id
    created = await repository.upsert(shop_id, product_id, call.body.model_dump(), call.now())
    doc = await repository.get(shop_id, product_id)
    assert doc is not None
    return Reply(201 if created else 200, product_view(doc))


@routes.route("POST", SHOP_PATH + "/products/bulk", summary="Create or replace up to 1,000 products in one request",
           body=ProductBulk, response=BulkResult, tag="products")
async def bulk_put_products(call: Call[ProductBulk, None]) -> BulkResult:
    items: list[tuple[str, Mapping[str, Any]]] = [(p.product_id, p.model_dump(exclude={"product_id"}))
                                                  for p in call.body.products]
    result = await ProductRepository(call.db).bulk_upsert(call.current_shop.shop_id, items, call.now())
    return BulkResult(created=result.created, updated=result.updated)


@routes.route("GET", SHOP_PATH + "/products/{product_id}", summary="Read a product", response=ProductView, tag="products")
async def get_product(call: Call[None, None]) -> ProductView:
    doc = await ProductRepository(call.db).get(call.current_shop.shop_id, path_id(call, "product_id"))
    if doc is None:
        raise ApiError(404, "not_found", "no such product", "product_id")
    return product_view(doc)


@routes.route("PATCH", SHOP_PATH + "/products/{product_id}", summary="Change some fields of a product (e.g. unpublish)",
           body=ProductPatch, response=ProductView, tag="products")
async def patch_product(call: Call[ProductPatch, None]) -> ProductView:
    product_id = path_id(call, "product_id")
    repository = ProductRepository(call.db)
    shop_id = call.current_shop.shop_id
    doc = await repository.get(shop_id, product_id)
    if doc is None:
        raise ApiError(404, "not_found", "no such product", "product_id")
    changes = call.body.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None and key not in ("sale_price", "category"):
            raise ApiError(422, "validation_error", f"{key}: cannot be null", key)
    merged = {key: doc.get(key) for key in ProductBody.model_fields if key in doc} | changes
    try:
        body = ProductBody.model_validate(merged)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    await repository.upsert(shop_id, product_id, body.model_dump(), call.now())
    updated = await repository.get(shop_id, product_id)
    assert updated is not None
    return product_view(updated)


@routes.route("DELETE", SHOP_PATH + "/products/{product_id}", summary="Delete a product", status=204, tag="products")
async def delete_product(call: Call[None, None]) -> None:
    if not await ProductRepository(call.db).delete(call.current_shop.shop_id, path_id(call, "product_id")):
        raise ApiError(404, "not_found", "no such product", "product_id")


@routes.route("GET", SHOP_PATH + "/products", summary="List products (paged by product_id, filtered)",
           query=ProductQuery, response=ProductPage, tag="products")
async def list_products(call: Call[None, ProductQuery]) -> ProductPage:
    q = call.query
    docs = await ProductRepository(call.db).list(
        call.current_shop.shop_id, after=q.after, limit=q.limit, category=q.category, tag=q.tag,
        published=q.published, available=q.available,
    )
    return ProductPage(
        items=[product_view(doc) for doc in docs],
        next_after=docs[-1]["product_id"] if len(docs) == q.limit else None,
    )
