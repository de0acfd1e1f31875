"""One registry of transports by address scheme: what `--listen` and `--vehicle` accept.

``tcp://HOST:PORT``, ``ws://HOST:PORT`` and ``ble:<bumble HCI transport>`` (the car listens on a
controller: ``usb:0``, ``hci-socket:0``, ``serial:/dev/ttyACM0``, ``tcp-client:HOST:PORT``, ...;
a phone adds ``@ADDRESS``, the car's BLE address that `vehicle run` prints). Each transport's
libraries are imported only when its scheme is used, so the car agent starts fast on TCP.
"""

from __future__ import annotations

from tether.errors import UsageError, peer_text
from tether.transport.base import Handler, Listener, Transport

SCHEMES = ("tcp://", "ws://", "ble:")


def scheme(url: str) -> str:
    """The address's scheme, or a usage error that lists the ones there are."""
    for known in SCHEMES:
        if url.startswith(known):
            return known
    raise UsageError(
        f"not a transport address: {peer_text(url, 80)!r} (use tcp://HOST:PORT, ws://HOST:PORT"
        " or ble:<HCI transport>)"
    )


def check(url: str, *, listening: bool = False) -> str:
    """Validate an address without opening anything; returns it."""
    kind = scheme(url)
    if kind == "tcp://":
        from tether.transport import tcp

        tcp.parse_address(url, allow_any_port=listening)
    elif kind == "ws://":
        from tether.transport import ws

        ws.parse_address(url, allow_any_port=listening)
    else:
        from tether.transport import ble

        _, address = ble.parse_url(url)
        if not listening and not address:
            raise UsageError("a phone needs the car's BLE address: ble:<HCI transport>@ADDRESS")
    return url


async def listen(url: str, handler: Handler, *, vehicle_id: bytes = b"") -> Listener:
    """Listen on ``url``; the listener's ``address`` says where phones reach it."""
    kind = scheme(url)
    if kind == "tcp://":
        from tether.transport import tcp

        return await tcp.listen(url, handler)
    if kind == "ws://":
        from tether.transport import ws

        return await ws.listen(url, handler)
    from tether.transport import ble

    return await ble.listen(url, handler, vehicle_id=vehicle_id)


async def connect(url: str) -> Transport:
    """Open a connection to the car at ``url``."""
    kind = scheme(url)
    if kind == "tcp://":
        from tether.transport import tcp

        return await tcp.connect(url)
    if kind == "ws://":
        from tether.transport import ws

        return await ws.connect(url)
    from tether.transport import ble

    return await ble.connect_url(url)
