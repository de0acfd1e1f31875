"""The one small interface every transport implements: send and receive whole messages."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from tether.errors import FrameTooLarge, TransportClosed, TransportError
from tether.protocol.codec import MAX_MESSAGE_SIZE

#: The largest message a transport carries (the protocol's own limit).
MAX_FRAME = MAX_MESSAGE_SIZE


class LinkKind(enum.StrEnum):
    """What carries a connection: the car's decisions depend on it (BLE means the phone is near)."""

    TCP = "tcp"
    BLE = "ble"
    WEBSOCKET = "ws"
    MEMORY = "memory"

    @property
    def near(self) -> bool:
        """A short-range radio: the phone is at the car (ranging still decides how near)."""
        return self is LinkKind.BLE


def check_outgoing(message: bytes, *, closed: bool) -> None:
    """The checks every transport makes before sending (one place, one set of errors)."""
    if closed:
        raise TransportClosed("connection is closed")
    if len(message) > MAX_FRAME:
        raise FrameTooLarge(f"message of {len(message)} bytes is over {MAX_FRAME}")
    if not message:
        raise TransportError("cannot send an empty message", temporary=False)


class Transport(Protocol):
    """A connection that carries whole messages in order, both ways."""

    #: Who is on the other end, for logs ("tcp:127.0.0.1:51234", "memory:3"); never for decisions.
    peer: str
    #: What carries this connection, set by the transport itself.
    kind: LinkKind

    async def send(self, message: bytes) -> None:
        """Send one message; raises TransportError if it cannot."""

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next message; TransportClosed at the end, TransportError on timeout or bad frames."""

    async def close(self) -> None:
        """Close; idempotent."""


Handler = Callable[[Transport], Coroutine[Any, Any, None]]


async def serve_connection(handler: Handler, transport: Transport) -> None:
    """Run a listener's handler on one connection; a handler bug must not kill the listener."""
    try:
        await handler(transport)
    except Exception:
        logging.getLogger(__name__).exception("connection handler failed for %s", transport.peer)
    finally:
        await transport.close()


class Listener(Protocol):
    """A server side that hands each incoming connection to a handler."""

    address: str

    async def close(self) -> None:
        """Stop accepting and close the listening socket."""
