"""The three services' resources: models, seed data and the list/get/create routes.

Each backend process serves one service (users, orders or products) and keeps its
records in a dict: per-process state, gone on restart. Two instances of the same
service therefore disagree as soon as one of them takes a POST — which is what a
load-balancing demo wants to show (and why real services keep state in a database
shared by every instance).

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at
runtime, and the models below are local variables of `resource_router`, which string
annotations could not resolve.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field

GET_HEAD = ["GET", "HEAD"]  # FastAPI's @get does not answer HEAD; HTTP says it should


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    # A deliberately simple check: full address validation needs `email-validator`.
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)


class User(UserIn):
    id: int
    created_at: str


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: int = Field(gt=0)
    quantity: int = Field(gt=0, le=10_000)
    unit_price: float = Field(ge=0)


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(gt=0)
    items: list[OrderItem] = Field(min_length=1, max_length=100)
    status: str = Field("pending", pattern=r"^(pending|paid|shipped|cancelled)$")


class Order(OrderIn):
    id: int
    total: float


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    stock: int = Field(0, ge=0)


class Product(ProductIn):
    id: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _order_total(order: OrderIn) -> float:
    # Money as float keeps the JSON natural for a demo; a real shop stores integer cents
    # (or decimal strings) so that 0.1 + 0.2 never shows up on an invoice.
    return round(sum(item.quantity * item.unit_price for item in order.items), 2)


def _item(product_id: int, quantity: int, unit_price: float) -> dict[str, Any]:
    return {"product_id": product_id, "quantity": quantity, "unit_price": unit_price}


SEED: dict[str, list[dict[str, Any]]] = {
    "users": [
        {"name": "Ada Lovelace", "email": "ada@example.com", "created_at": "2024-01-10T09:00:00Z"},
        {"name": "Alan Turing", "email": "alan@example.com", "created_at": "2024-02-14T12:30:00Z"},
        {"name": "Grace Hopper", "email": "gh@example.com", "created_at": "2024-03-01T08:15:00Z"},
    ],
    "orders": [
        {"user_id": 1, "status": "paid", "items": [_item(1, 2, 12.5), _item(3, 1, 199.0)]},
        {"user_id": 2, "status": "shipped", "items": [_item(2, 1, 49.9)]},
        {"user_id": 3, "status": "pending", "items": [_item(1, 4, 12.5)]},
    ],
    "products": [
        {"name": "Mechanical keyboard", "price": 12.5, "currency": "EUR", "stock": 40},
        {"name": "USB-C cable", "price": 49.9, "currency": "EUR", "stock": 120},
        {"name": "27-inch monitor", "price": 199.0, "currency": "EUR", "stock": 7},
    ],
}


def _build_user(record_id: int, body: UserIn) -> User:
    return User(id=record_id, created_at=_now(), **body.model_dump())


def _build_order(record_id: int, body: OrderIn) -> Order:
    return Order(id=record_id, total=_order_total(body), **body.model_dump())


def _build_product(record_id: int, body: ProductIn) -> Product:
    return Product(id=record_id, **body.model_dump())


class Resource:
    """How one service validates a create body (`model_in`) and builds the stored record."""

    def __init__(self, singular: str, model_in: type[BaseModel], build: Callable[..., BaseModel]):
        self.singular = singular
        self.model_in = model_in
        self.build = build  # build(record_id, body) -> the stored record


RESOURCES: dict[str, Resource] = {
    "users": Resource("user", UserIn, _build_user),
    "orders": Resource("order", OrderIn, _build_order),
    "products": Resource("product", ProductIn, _build_product),
}

SERVICES = tuple(RESOURCES)  # each service is named after the one resource it serves


def _public(record: BaseModel) -> dict[str, Any]:
    """The record as JSON, `id` first (a subclass would put the parent's fields first)."""
    fields = record.model_dump()
    return {"id": fields.pop("id"), **fields}


def resource_router(service: str) -> APIRouter:
    """List, get and create for `service`'s resource, with a fresh seeded store."""
    resource = RESOURCES[service]
    model_in = resource.model_in
    store: dict[int, BaseModel] = {}
    for record_id, seed in enumerate(SEED[service], start=1):
        fixed = {k: seed[k] for k in ("created_at",) if k in seed}  # stable seed timestamps
        body = model_in.model_validate({k: v for k, v in seed.items() if k not in fixed})
        store[record_id] = resource.build(record_id, body).model_copy(update=fixed)

    router = APIRouter(tags=[service])
    base = f"/{service}"

    @router.api_route(base, methods=GET_HEAD)
    async def list_records() -> list[dict[str, Any]]:
        return [_public(record) for record in store.values()]

    @router.api_route(base + "/{record_id}", methods=GET_HEAD)
    async def get_record(record_id: Annotated[int, Path()]) -> dict[str, Any]:
        # A non-integer id never gets here: FastAPI answers 422 for it.
        record = store.get(record_id)
        if record is None:
            raise HTTPException(404, detail=f"{resource.singular} {record_id} not found")
        return _public(record)

    # the type ignore below: the model is made at run time, per service: no static type
    @router.post(base, status_code=201)
    async def create_record(body: model_in, response: Response) -> dict[str, Any]:  # type: ignore[valid-type]
        record_id = max(store, default=0) + 1
        store[record_id] = resource.build(record_id, body)
        response.headers["Location"] = f"{base}/{record_id}"
        return _public(store[record_id])

    return router
