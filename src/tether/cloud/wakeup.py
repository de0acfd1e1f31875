"""Wake-ups between server instances: PostgreSQL LISTEN/NOTIFY on one channel.

A car's result reaches whichever instance the broker hands it to, but the phone's request may be
waiting on another. The instance that stores the result sends ``NOTIFY tether_results, '<digest>'``
inside the storing transaction (PostgreSQL delivers it at commit, and only then); every instance
listens on one connection of its own and wakes its waiting requests, which re-read the row. The
notification carries only a command's digest, which is public: never the result itself, so a
listener believes nothing it did not read from the database. If the listening connection drops,
waiting requests fall back to re-reading twice a second until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:  # the routes import this module: no import back at run time
    from tether.cloud.api.access import Hub

log = logging.getLogger(__name__)

CHANNEL = "tether_results"
RECONNECT_S = 1.0
_DIGEST = re.compile(r"[0-9a-f]{64}")


def notify(conn: Connection, digest: bytes) -> None:
    """Tell every instance (at this transaction's commit) that ``digest`` has its result."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :digest)"),
            {"channel": CHANNEL, "digest": digest.hex()},
        )


class Listener:
    """One LISTEN connection per process, waking the hub's waiting requests; PostgreSQL only."""

    def __init__(self, hub: Hub, engine: Engine) -> None:
        self.hub = hub
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.listening = asyncio.Event()
        self.woken = 0
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def applies(engine: Engine) -> bool:
        return engine.dialect.name == "postgresql"

    async def start(self) -> None:
        self.hub.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), 5.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.hub.listening = True
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error as exc:
                log.warning("result notifications unavailable (%s); polling until back", exc)
            finally:
                self.listening.clear()
                self.hub.listening = False
            await asyncio.sleep(RECONNECT_S)

    def _wake(self, payload: str) -> None:
        if not _DIGEST.fullmatch(payload):
            return  # not ours: nothing else may be said on the channel
        waiting = self.hub.results.get(bytes.fromhex(payload))
        if waiting:
            self.woken += 1
            for event in waiting:
                event.set()
