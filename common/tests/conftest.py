"""Fixtures for common/'s own tests: the shared process fixtures plus an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

pytest_plugins = ["common.testing.fixtures"]


@pytest.fixture
async def client_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client for one test; closed (with its connections) afterwards.

    auto_decompress is off so a test sees the bytes the server sent.
    """
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        yield session
