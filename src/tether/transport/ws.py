"""WebSocket transport (docs/protocol.md §2.1): each tether message is one binary WebSocket message.

For phones in a browser (the web phone) and for tests: ``ws://HOST:PORT``. A text message is
refused as a bad frame (the car answers ``Error malformed``); a binary message over the protocol's
limit makes the websockets library close the connection with status 1009 (message too big) before
it is buffered. Compression is off: it would let a peer make the car inflate small frames into
large messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tether.errors import (
    BadFrame,
    LocalCode,
    TransportClosed,
    TransportError,
    UsageError,
    peer_text,
)
from tether.transport.base import MAX_FRAME, Handler, LinkKind, check_outgoing, serve_connection

CONNECT_TIMEOUT = 5.0
_SEND_TIMEOUT = 10.0


def parse_address(url: str, *, allow_any_port: bool = False) -> tuple[str, int]:
    """`ws://HOST:PORT` -> (host, port); port 0 only for listening."""
    parts = urlsplit(url)
    lowest = 0 if allow_any_port else 1
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "ws" or not parts.hostname or port is None or port < lowest:
        raise UsageError(f"not a ws://HOST:PORT address: {peer_text(url, 80)!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"a ws:// address has no path: {peer_text(url, 80)!r}")
    return parts.hostname, port


class WsTransport:
    """One WebSocket connection carrying whole tether messages."""

    def __init__(self, connection: ServerConnection | ClientConnection, peer: str) -> None:
        self._ws = connection
        self.peer = peer
        self.kind = LinkKind.WEBSOCKET
        self._closed = False

    async def send(self, message: bytes) -> None:
        check_outgoing(message, closed=self._closed)
        try:
            async with asyncio.timeout(_SEND_TIMEOUT):
                await self._ws.send(message)
        except TimeoutError:
            raise TransportError("peer is not reading", code=LocalCode.TIMEOUT) from None
        except ConnectionClosed as exc:
            self._closed = True
            raise TransportClosed("peer closed the connection") from exc

    async def receive(self, timeout: float | None = None) -> bytes:
        if self._closed:
            raise TransportClosed("connection is closed")
        try:
            async with asyncio.timeout(timeout):
                data: Any = await self._ws.recv()
        except TimeoutError:
            raise TransportError("no message in time", code=LocalCode.TIMEOUT) from None
        except ConnectionClosed as exc:
            self._closed = True
            raise TransportClosed("peer closed the connection") from exc
        if not isinstance(data, bytes):
            raise BadFrame("a text WebSocket message was refused: tether messages are binary")
        if not data:
            raise BadFrame("an empty WebSocket message was refused")
        return data

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # already gone: closing is idempotent
            async with asyncio.timeout(1.0):
                await self._ws.close()


async def connect(url: str, *, timeout: float = CONNECT_TIMEOUT) -> WsTransport:
    """Open `ws://HOST:PORT`; TransportError(code=LocalCode.UNREACHABLE) if it fails."""
    parse_address(url)
    try:
        connection = await ws_connect(
            url, open_timeout=timeout, max_size=MAX_FRAME, compression=None, ping_interval=None
        )
    except (TimeoutError, OSError, InvalidHandshake, InvalidURI) as exc:
        raise TransportError(
            f"cannot reach {url}: {exc or 'timed out'}", code=LocalCode.UNREACHABLE
        ) from exc
    return WsTransport(connection, f"ws:{url.removeprefix('ws://')}")


class WsListener:
    """Accepts WebSocket connections and runs the handler for each."""

    def __init__(self, server: Server, address: str) -> None:
        self._server = server
        self.address = address

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)


async def listen(url: str, handler: Handler) -> WsListener:
    """Listen on `ws://HOST:PORT` (port 0 picks a free one; `address` tells which)."""
    host, port = parse_address(url, allow_any_port=True)

    async def on_connect(connection: ServerConnection) -> None:
        remote = connection.remote_address
        peer = f"ws:{remote[0]}:{remote[1]}" if remote else "ws:?"
        await serve_connection(handler, WsTransport(connection, peer))

    server = await serve(
        on_connect, host, port, max_size=MAX_FRAME, compression=None, ping_interval=None
    )
    sock = next(iter(server.sockets)).getsockname()
    shown = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
    return WsListener(server, f"ws://{shown}:{sock[1]}")
