"""Fixtures for linesim tests: a simulator app with a movable clock."""

from __future__ import annotations

from typing import Any

import pytest

from linesim import SimConfig, create_app

from .linesim_helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_config(clock: FakeClock) -> SimConfig:
    return SimConfig(clock=clock)


@pytest.fixture
async def sim(aiohttp_client: Any, sim_config: SimConfig) -> Any:
    """TestClient on a fresh linesim app."""
    return await aiohttp_client(create_app(sim_config))
