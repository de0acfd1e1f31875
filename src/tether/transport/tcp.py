"""TCP transport: each message is one frame, a 4-byte big-endian length and the message bytes."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from tether.errors import (
    FrameTooLarge,
    LocalCode,
    TransportClosed,
    TransportError,
    UsageError,
    peer_text,
)
from tether.transport.base import MAX_FRAME, Handler, LinkKind, check_outgoing, serve_connection

_HEADER = struct.Struct(">I")
CONNECT_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0


def parse_address(url: str, *, allow_any_port: bool = False) -> tuple[str, int]:
    """`tcp://HOST:PORT` (or `HOST:PORT`) -> (host, port); port 0 only for listening."""
    rest = url.removeprefix("tcp://")
    host, sep, port = rest.rpartition(":")
    lowest = 0 if allow_any_port else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise UsageError(f"not a tcp://HOST:PORT address: {peer_text(url, 80)!r}")
    return host.strip("[]"), int(port)


class TcpTransport:
    """A framed TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"tcp:{peer[0]}:{peer[1]}" if peer else "tcp:?"
        self.kind = LinkKind.TCP
        self._closed = False

    async def send(self, message: bytes) -> None:
        check_outgoing(message, closed=self._closed)
        self._writer.write(_HEADER.pack(len(message)) + message)
        try:
            await asyncio.wait_for(self._writer.drain(), WRITE_TIMEOUT)
        except TimeoutError:
            raise TransportError("peer is not reading", code=LocalCode.TIMEOUT) from None
        except (ConnectionError, OSError) as exc:
            raise TransportClosed(f"connection lost: {exc}") from exc

    async def receive(self, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra task
                return await self._read_frame()
        except TimeoutError:
            raise TransportError("no message in time", code=LocalCode.TIMEOUT) from None

    async def _read_frame(self) -> bytes:
        try:
            header = await self._reader.readexactly(_HEADER.size)
            (length,) = _HEADER.unpack(header)
            if length == 0 or length > MAX_FRAME:
                raise FrameTooLarge(f"frame of {length} bytes refused (limit {MAX_FRAME})")
            return await self._reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise TransportClosed("connection cut in the middle of a frame") from None
            raise TransportClosed("peer closed the connection") from None
        except (ConnectionError, OSError) as exc:
            raise TransportClosed(f"connection lost: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


async def connect(url: str, *, timeout: float = CONNECT_TIMEOUT) -> TcpTransport:
    """Open a connection to `tcp://HOST:PORT`; a TransportError if it fails."""
    host, port = parse_address(url)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        raise TransportError(
            f"cannot reach {url}: {exc or 'timed out'}", code=LocalCode.UNREACHABLE
        ) from exc
    return TcpTransport(reader, writer)


class TcpListener:
    """Accepts framed TCP connections and runs the handler for each."""

    def __init__(self, server: asyncio.Server, address: str) -> None:
        self._server = server
        self.address = address

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def listen(url: str, handler: Handler) -> TcpListener:
    """Listen on `tcp://HOST:PORT` (port 0 picks a free one; `address` tells which)."""
    host, port = parse_address(url, allow_any_port=True)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(handler, TcpTransport(reader, writer))

    server = await asyncio.start_server(on_connect, host, port, limit=MAX_FRAME + 64)
    sock = server.sockets[0].getsockname()
    return TcpListener(server, f"tcp://{sock[0]}:{sock[1]}")
