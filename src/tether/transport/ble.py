"""Bluetooth LE transport on bumble: the car is a GATT peripheral, the phone a central.

The tether GATT service has two characteristics: **RX**, which the phone writes (with response, so
the car's ATT layer paces the phone), and **TX**, on which the car notifies. A message is cut into
fragments that fit the negotiated ATT MTU; each fragment starts with one byte, ``0x01`` on the last
fragment of a message and ``0x00`` before it. Reassembly is bounded by the protocol's message limit;
a disconnection ends the transport with :class:`TransportClosed`.

Tests run both ends in one process over bumble's virtual link (a real Bluetooth stack, no radio).
On a car, bumble drives a USB dongle or a Linux HCI socket (docs/ble.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from bumble.core import UUID
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service

from tether.errors import (
    FrameTooLarge,
    LocalCode,
    TransportClosed,
    TransportError,
    UsageError,
    peer_text,
)
from tether.transport.base import MAX_FRAME, Handler, LinkKind, check_outgoing

SERVICE_UUID = "6b7a0001-3c1f-4d8a-9b1e-6e5f7a2b9c01"
RX_UUID = "6b7a0002-3c1f-4d8a-9b1e-6e5f7a2b9c01"  # phone -> car (write)
TX_UUID = "6b7a0003-3c1f-4d8a-9b1e-6e5f7a2b9c01"  # car -> phone (notify)
PREFERRED_MTU = 247
#: A phone that connects but never subscribes to TX cannot hear the car's greeting (§4): it is
#: disconnected after this long, as an unfinished handshake is.
SUBSCRIBE_TIMEOUT = 5.0
_LAST, _MORE = b"\x01", b"\x00"
_END: Any = object()  # marks the end of the inbox


class BleTransport:
    """One end of a BLE connection, carrying whole messages."""

    def __init__(
        self,
        *,
        peer: str,
        mtu: Callable[[], int],
        send_fragment: Callable[[bytes], Awaitable[None]],
        disconnect: Callable[[], Awaitable[None]],
    ) -> None:
        self.peer = peer
        self.kind = LinkKind.BLE
        self._mtu = mtu
        self._send_fragment = send_fragment
        self._disconnect = disconnect
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._buffer = bytearray()
        self._closed = False
        self._eof = False
        self._error: TransportError | None = None

    # -- from the GATT layer ----------------------------------------------------------------------
    def fragment_received(self, value: bytes) -> None:
        if self._error is not None or not value:
            return
        self._buffer += value[1:]
        if len(self._buffer) > MAX_FRAME:
            self._error = FrameTooLarge(f"a message over {MAX_FRAME} bytes was refused")
            self._inbox.put_nowait(_END)
            return
        if value[:1] == _LAST:
            self._inbox.put_nowait(bytes(self._buffer))
            self._buffer.clear()

    def connection_lost(self) -> None:
        self._closed = True
        self._inbox.put_nowait(_END)

    # -- Transport --------------------------------------------------------------------------------
    async def send(self, message: bytes) -> None:
        check_outgoing(message, closed=self._closed)
        size = max(1, self._mtu() - 3 - 1)  # ATT header, then our one-byte fragment header
        try:
            for start in range(0, len(message), size):
                last = start + size >= len(message)
                await self._send_fragment(
                    (_LAST if last else _MORE) + message[start : start + size]
                )
        except (ConnectionError, OSError, asyncio.CancelledError) as exc:
            raise TransportClosed(f"the BLE link went down: {exc!r}") from exc
        except Exception as exc:  # bumble's ATT/HCI errors: the link is unusable
            self._closed = True
            raise TransportClosed(f"the BLE link failed: {exc}") from exc

    async def receive(self, timeout: float | None = None) -> bytes:
        if self._eof:
            raise TransportClosed("connection is closed")
        try:
            async with asyncio.timeout(timeout):
                item = await self._inbox.get()
        except TimeoutError:
            raise TransportError("no message in time", code=LocalCode.TIMEOUT) from None
        if item is _END:
            self._eof = True
            if self._error is not None:
                raise self._error
            raise TransportClosed("the BLE peer disconnected")
        return bytes(item)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # already gone: closing is idempotent
            await self._disconnect()


class BleCarService:
    """The car's side: the tether GATT service; each connecting phone is handed to ``handler``."""

    def __init__(self, device: Device, handler: Handler) -> None:
        self.device = device
        self._handler = handler
        self._transports: dict[int, BleTransport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.tx: Characteristic[bytes] = Characteristic(
            TX_UUID, Characteristic.NOTIFY, Characteristic.READABLE, b""
        )
        self.rx: Characteristic[bytes] = Characteristic(
            RX_UUID,
            Characteristic.WRITE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=self._on_write),
        )
        device.add_service(Service(SERVICE_UUID, [self.rx, self.tx]))
        device.on(device.EVENT_CONNECTION, self._on_connection)
        self.tx.on(self.tx.EVENT_SUBSCRIPTION, self._on_subscription)
        self._waiting: dict[int, tuple[BleTransport, asyncio.TimerHandle]] = {}

    def _on_connection(self, connection: Connection) -> None:
        async def send(fragment: bytes) -> None:
            await self.device.notify_subscriber(connection, self.tx, fragment)

        transport = BleTransport(
            peer=f"ble:{connection.peer_address}",
            mtu=lambda: connection.att_mtu,
            send_fragment=send,
            disconnect=connection.disconnect,
        )
        self._transports[connection.handle] = transport

        def lost(*_: object) -> None:
            self._transports.pop(connection.handle, None)
            waiting = self._waiting.pop(connection.handle, None)
            if waiting is not None:
                waiting[1].cancel()
            transport.connection_lost()

        connection.on(connection.EVENT_DISCONNECTION, lost)
        # The car speaks first (its greeting), so the session starts only once the phone listens.
        loop = asyncio.get_running_loop()
        timer = loop.call_later(SUBSCRIBE_TIMEOUT, self._give_up, connection.handle)
        self._waiting[connection.handle] = (transport, timer)

    def _give_up(self, handle: int) -> None:
        waiting = self._waiting.pop(handle, None)
        if waiting is not None:
            self._spawn(waiting[0].close())

    def _on_subscription(self, bearer: object, notify_enabled: bool, *_: object) -> None:
        connection = (
            bearer if isinstance(bearer, Connection) else getattr(bearer, "connection", None)
        )
        if connection is None or not notify_enabled:
            return
        waiting = self._waiting.pop(connection.handle, None)
        if waiting is not None:
            transport, timer = waiting
            timer.cancel()
            self._spawn(self._serve(transport))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, transport: BleTransport) -> None:
        try:
            await self._handler(transport)
        finally:
            await transport.close()

    def _on_write(self, connection: Connection, value: bytes) -> None:
        transport = self._transports.get(connection.handle)
        if transport is not None:
            transport.fragment_received(bytes(value))

    async def start(self) -> None:
        """Power on and advertise (connectable) until a phone connects."""
        await self.device.power_on()
        await self.device.start_advertising(auto_restart=True)

    async def close(self) -> None:
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        for task in list(self._tasks):
            task.cancel()


async def connect(
    device: Device,
    address: Any,
    *,
    timeout: float = 10.0,
    after_close: Callable[[], Awaitable[None]] | None = None,
) -> BleTransport:
    """The phone's side: connect to the car at ``address`` and open the tether service.

    ``after_close`` runs once the link is down (the phone's own controller is released there).
    """
    try:
        async with asyncio.timeout(timeout):
            connection = await device.connect(address)
            peer = Peer(connection)
            await peer.request_mtu(PREFERRED_MTU)
            await peer.discover_services()
            await peer.discover_characteristics()
            rx = peer.get_characteristics_by_uuid(UUID(RX_UUID))
            tx = peer.get_characteristics_by_uuid(UUID(TX_UUID))
            if not rx or not tx:
                await connection.disconnect()
                raise TransportError(
                    "this device has no tether service", code=LocalCode.UNREACHABLE, temporary=False
                )

            async def send(fragment: bytes) -> None:
                await rx[0].write_value(fragment, with_response=True)

            async def disconnect() -> None:
                try:
                    await connection.disconnect()
                finally:
                    if after_close is not None:
                        await after_close()

            transport = BleTransport(
                peer=f"ble:{address}",
                mtu=lambda: connection.att_mtu,
                send_fragment=send,
                disconnect=disconnect,
            )
            connection.on(connection.EVENT_DISCONNECTION, lambda *_: transport.connection_lost())
            await tx[0].subscribe(lambda value: transport.fragment_received(bytes(value)))
            return transport
    except TimeoutError:
        raise TransportError(
            f"cannot reach the car at {address} over BLE", code=LocalCode.UNREACHABLE
        ) from None


# -- on an HCI transport: a USB dongle, a Linux HCI socket, a serial controller, a virtual one ---
def static_address(vehicle_id: bytes) -> str:
    """The car's BLE address: a random static address (top two bits 1) from its vehicle id.

    Stable across restarts, so a phone that paired over BLE finds the car again.
    """
    from bumble.hci import Address

    raw = vehicle_id[:5] + bytes([vehicle_id[5] | 0xC0])
    return str(Address(raw, Address.RANDOM_DEVICE_ADDRESS))


def parse_url(url: str) -> tuple[str, str]:
    """`ble:<HCI transport>[@<car address>]` -> (HCI transport, address or "")."""
    rest = url.removeprefix("ble:")
    spec, _, address = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not url.startswith("ble:") or not spec:
        raise UsageError(f"not a ble:<HCI transport>[@ADDRESS] address: {peer_text(url, 80)!r}")
    return spec, address


class BleListener:
    """The car's GATT service on one HCI controller; ``address`` is what phones connect to."""

    def __init__(self, service: BleCarService, hci: Any, address: str) -> None:
        self._service = service
        self._hci = hci
        self.address = address

    async def close(self) -> None:
        await self._service.close()
        with contextlib.suppress(Exception):
            await self._service.device.power_off()
        with contextlib.suppress(Exception):
            await self._hci.close()


async def _open_hci(spec: str) -> Any:
    from bumble.transport import open_transport

    try:
        return await open_transport(spec)
    except Exception as exc:  # bumble raises many kinds; all mean "no controller there"
        raise TransportError(
            f"cannot open the Bluetooth controller {spec!r}: {exc}", code=LocalCode.UNREACHABLE
        ) from exc


async def listen(url: str, handler: Handler, *, vehicle_id: bytes) -> BleListener:
    """Serve the tether GATT service on the controller `ble:<HCI transport>` names."""
    from bumble.hci import Address

    spec, _ = parse_url(url)
    hci = await _open_hci(spec)
    address = static_address(vehicle_id)
    device = Device.with_hci(
        "tether car", Address(address, Address.RANDOM_DEVICE_ADDRESS), hci.source, hci.sink
    )
    service = BleCarService(device, handler)
    await service.start()
    return BleListener(service, hci, f"ble:{spec}@{address}")


async def connect_url(url: str, *, timeout: float = 10.0) -> BleTransport:
    """The phone's side on its own controller: `ble:<HCI transport>@<car address>`."""
    from bumble.hci import Address

    spec, address = parse_url(url)
    if not address:
        raise UsageError("a phone needs the car's address: ble:<HCI transport>@ADDRESS")
    hci = await _open_hci(spec)
    device = Device.with_hci(
        "tether phone", Address.generate_static_address(), hci.source, hci.sink
    )

    async def release() -> None:  # after the link: this phone's controller
        with contextlib.suppress(Exception):
            await device.power_off()
        with contextlib.suppress(Exception):
            await hci.close()

    try:
        await device.power_on()
        return await connect(
            device,
            Address(address, Address.RANDOM_DEVICE_ADDRESS),
            timeout=timeout,
            after_close=release,
        )
    except BaseException:
        await release()
        raise
