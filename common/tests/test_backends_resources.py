"""The three services' resources: list, get, create, and their errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from common.testing.processes import Proc

JSON = {"Content-Type": "application/json"}
FIELDS = {
    "users": {"id", "name", "email", "created_at"},
    "orders": {"id", "user_id", "items", "total", "status"},
    "products": {"id", "name", "price", "currency", "stock"},
}
VALID: dict[str, dict[str, Any]] = {
    "users": {"name": "Edsger Dijkstra", "email": "ewd@example.com"},
    "orders": {
        "user_id": 2,
        "items": [
            {"product_id": 1, "quantity": 3, "unit_price": 2.5},
            {"product_id": 2, "quantity": 3, "unit_price": 0.1},
        ],
    },
    "products": {"name": "Desk lamp", "price": 35.0, "currency": "USD", "stock": 3},
}
# What the service adds to a created record: the order total is computed, and rounded to
# cents (3 * 0.1 is 0.30000000000000004 in floating point).
DERIVED: dict[str, dict[str, Any]] = {
    "users": {},
    "orders": {"total": 7.8, "status": "pending"},
    "products": {},
}
INVALID = {
    "users": {"name": "", "email": "not-an-email"},
    "orders": {"user_id": 1, "items": []},
    "products": {"name": "Lamp", "price": -1},
}


# the type ignore below: a parametrized pytest fixture: pytest types its arguments
@pytest.fixture(params=["users", "orders", "products"])
def service_backend(request, backend_factory) -> tuple[str, Proc]:  # type: ignore[no-untyped-def]
    return request.param, backend_factory(request.param, "a")


async def test_list_get_create_and_errors(
    service_backend: tuple[str, Proc], client_session: aiohttp.ClientSession
) -> None:
    service, backend = service_backend
    base = f"{backend.url}/{service}"
    served_by = f"{service}/a@{backend.port}"

    async with client_session.get(base) as resp:
        assert resp.status == 200
        records = await resp.json()
    assert len(records) >= 3
    assert all(set(record) == FIELDS[service] for record in records)

    async with client_session.get(f"{base}/2") as resp:
        assert resp.status == 200
        assert await resp.json() == records[1]

    async with client_session.get(f"{base}/999") as resp:
        assert resp.status == 404
        assert resp.headers["X-Served-By"] == served_by
        assert (await resp.json())["detail"].endswith("999 not found")

    async with client_session.get(f"{base}/abc") as resp:
        assert resp.status == 422
        assert resp.headers["X-Served-By"] == served_by
        assert (await resp.json())["detail"][0]["loc"] == ["path", "record_id"]

    async with client_session.post(base, json=INVALID[service]) as resp:
        assert resp.status == 422
        assert resp.headers["X-Served-By"] == served_by

    async with client_session.post(base, data=b"{not json", headers=JSON) as resp:
        assert resp.status == 422

    async with client_session.post(base, json=VALID[service]) as resp:
        assert resp.status == 201
        created = await resp.json()
        location = resp.headers["Location"]
    assert location == f"/{service}/{created['id']}"
    assert created.items() >= (VALID[service] | DERIVED[service]).items()
    async with client_session.get(backend.url + location) as resp:
        assert await resp.json() == created
