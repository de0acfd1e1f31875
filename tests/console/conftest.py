"""The demo world with its console mounted, on a free port, for the console tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether.console import web
from tether.console.world import DemoWorld


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[DemoWorld]:
    demo = DemoWorld(tmp_path / "demo", port=0)
    demo.mount = lambda app: web.mount(app, demo)
    await demo.start()
    yield demo
    await demo.stop()
