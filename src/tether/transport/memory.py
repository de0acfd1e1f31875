"""In-memory transport: two connected ends in one event loop, for tests and the demo."""

from __future__ import annotations

import asyncio
import itertools

from tether.errors import LocalCode, TransportClosed, TransportError
from tether.transport.base import Handler, LinkKind, check_outgoing

_ids = itertools.count(1)
_CLOSED = b""  # an empty message never occurs in the protocol, so it marks the end


class MemoryTransport:
    """One end of an in-memory connection."""

    def __init__(
        self, inbox: asyncio.Queue[bytes], outbox: asyncio.Queue[bytes], peer: str
    ) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self.peer = peer
        self.kind = LinkKind.MEMORY
        self._closed = False
        self._eof = False

    async def send(self, message: bytes) -> None:
        check_outgoing(message, closed=self._closed)
        await self._outbox.put(message)

    async def receive(self, timeout: float | None = None) -> bytes:
        if self._eof:
            raise TransportClosed("connection is closed")
        try:
            async with asyncio.timeout(timeout):
                message = await self._inbox.get()
        except TimeoutError:
            raise TransportError("no message in time", code=LocalCode.TIMEOUT) from None
        if message is _CLOSED or not message:
            self._eof = True
            raise TransportClosed("peer closed the connection")
        return message

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._outbox.put(_CLOSED)


def memory_pair() -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends."""
    n = next(_ids)
    a_to_b: asyncio.Queue[bytes] = asyncio.Queue()
    b_to_a: asyncio.Queue[bytes] = asyncio.Queue()
    return (
        MemoryTransport(b_to_a, a_to_b, f"memory:{n}b"),
        MemoryTransport(a_to_b, b_to_a, f"memory:{n}a"),
    )


class MemoryListener:
    """A listener whose clients connect by calling :meth:`connect`."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self.address = f"memory://{next(_ids)}"
        self._closed = False

    async def connect(self) -> MemoryTransport:
        if self._closed:
            raise TransportError("listener is closed", code=LocalCode.UNREACHABLE)
        client, server = memory_pair()
        task = asyncio.create_task(self._handler(server))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
