"""One contract every transport passes (as python-can's back2back tests): run per implementation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from tether.errors import BadFrame, FrameTooLarge, TransportClosed, TransportError, UsageError
from tether.transport.base import MAX_FRAME, LinkKind, Transport
from tether.transport.memory import MemoryListener, memory_pair
from tether.transport.tcp import connect, listen, parse_address

Pair = tuple[Transport, Transport]
Factory = Callable[[], Coroutine[Any, Any, tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]]]


async def memory_factory() -> tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]:
    a, b = memory_pair()

    async def cleanup() -> None:
        await a.close()
        await b.close()

    return (a, b), cleanup


class _ServerEnds:
    """A listener's handler that hands each server end to the test and keeps it open."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[Transport] = asyncio.Queue()
        self.done = asyncio.Event()

    async def handler(self, server_side: Transport) -> None:
        await self.accepted.put(server_side)
        await self.done.wait()


async def memory_listener_factory() -> tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]:
    server_ends = _ServerEnds()
    listener = MemoryListener(server_ends.handler)
    client = await listener.connect()
    server = await server_ends.accepted.get()

    async def cleanup() -> None:
        server_ends.done.set()
        await client.close()
        await listener.close()

    return (client, server), cleanup


async def _socket_factory(
    listen_: Callable[[str, Any], Coroutine[Any, Any, Any]],
    connect_: Callable[[str], Coroutine[Any, Any, Transport]],
    url: str,
) -> tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]:
    """A listener on a free loopback port and one client connected to it."""
    server_ends = _ServerEnds()
    listener = await listen_(url, server_ends.handler)
    client = await connect_(listener.address)
    server = await server_ends.accepted.get()

    async def cleanup() -> None:
        server_ends.done.set()
        await client.close()
        await listener.close()

    return (client, server), cleanup


async def tcp_factory() -> tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]:
    return await _socket_factory(listen, connect, "tcp://127.0.0.1:0")


async def ble_factory() -> tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]:
    """Both ends in this process over bumble's virtual link: a real BLE stack, no radio."""
    from bumble.testing.test_utils import TwoDevices

    from tether.transport import ble

    server_ends = _ServerEnds()
    devices = TwoDevices()
    phone, car = devices.devices
    service = ble.BleCarService(car, server_ends.handler)
    await phone.power_on()
    await service.start()
    client = await ble.connect(phone, car.random_address)
    server = await server_ends.accepted.get()

    async def cleanup() -> None:
        server_ends.done.set()
        await client.close()
        await service.close()

    return (client, server), cleanup


async def ws_factory() -> tuple[Pair, Callable[[], Coroutine[Any, Any, None]]]:
    from tether.transport import ws

    return await _socket_factory(ws.listen, ws.connect, "ws://127.0.0.1:0")


FACTORIES = {
    "memory": memory_factory,
    "memory-listener": memory_listener_factory,
    "tcp": tcp_factory,
    "ble": ble_factory,
    "ws": ws_factory,
}
KINDS = {
    "memory": LinkKind.MEMORY,
    "memory-listener": LinkKind.MEMORY,
    "tcp": LinkKind.TCP,
    "ble": LinkKind.BLE,
    "ws": LinkKind.WEBSOCKET,
}


@pytest.fixture(params=list(FACTORIES))
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    ends, cleanup = await FACTORIES[request.param]()
    yield ends
    await cleanup()


@pytest.mark.parametrize("name", list(FACTORIES))
async def test_each_transport_says_what_carries_it(name: str) -> None:
    (a, b), cleanup = await FACTORIES[name]()
    try:
        assert a.kind is b.kind is KINDS[name]
        assert a.kind.near is (name == "ble")  # only a short-range radio puts the phone near
    finally:
        await cleanup()


async def test_messages_arrive_whole_and_in_order_both_ways(pair: Pair) -> None:
    a, b = pair
    messages = [bytes([i]) * (i * 37 + 1) for i in range(20)]
    for m in messages:
        await a.send(m)
    assert [await b.receive(1) for _ in messages] == messages
    await b.send(b"back")
    assert await a.receive(1) == b"back"


async def test_largest_message_passes_and_larger_is_refused(pair: Pair) -> None:
    a, b = pair
    big = b"\xaa" * MAX_FRAME
    await a.send(big)
    assert await b.receive(5) == big
    with pytest.raises(FrameTooLarge):
        await a.send(big + b"!")


async def test_empty_message_is_refused(pair: Pair) -> None:
    a, _ = pair
    with pytest.raises(TransportError):
        await a.send(b"")


async def test_close_ends_the_peer_receive(pair: Pair) -> None:
    a, b = pair
    await a.send(b"last")
    await a.close()
    assert await b.receive(1) == b"last"
    with pytest.raises(TransportClosed):
        await b.receive(1)
    with pytest.raises(TransportClosed):
        await a.send(b"after close")
    await a.close()  # idempotent


async def test_receive_times_out_with_a_typed_error(pair: Pair) -> None:
    _, b = pair
    with pytest.raises(TransportError) as info:
        await b.receive(0.05)
    assert info.value.code == "timeout"
    assert not isinstance(info.value, TransportClosed)


async def test_peer_names_are_set(pair: Pair) -> None:
    a, b = pair
    assert a.peer and b.peer


# -- TCP framing specifics --------------------------------------------------------------------------
async def _raw_server() -> tuple[str, asyncio.Queue[bytes | Exception], Any]:
    results: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    async def handler(transport: Transport) -> None:
        try:
            await results.put(await transport.receive(1))
        except TransportError as exc:
            await results.put(exc)

    listener = await listen("tcp://127.0.0.1:0", handler)
    return listener.address, results, listener


async def test_tcp_refuses_oversized_and_zero_frames_and_cut_frames() -> None:
    address, results, listener = await _raw_server()
    host, port = parse_address(address)
    for raw, expected in [
        ((MAX_FRAME + 1).to_bytes(4, "big"), FrameTooLarge),
        ((0).to_bytes(4, "big"), FrameTooLarge),
        ((10).to_bytes(4, "big") + b"abc", TransportClosed),
        (b"\x00\x00", TransportClosed),
    ]:
        _reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        await writer.drain()
        writer.write_eof()
        got = await asyncio.wait_for(results.get(), 2)
        assert isinstance(got, expected), (raw[:8], got)
        writer.close()
    await listener.close()


async def test_tcp_connect_failure_is_unreachable() -> None:
    listener = await listen("tcp://127.0.0.1:0", lambda t: asyncio.sleep(0))
    address = listener.address
    await listener.close()
    with pytest.raises(TransportError) as info:
        await connect(address)
    assert info.value.code == "unreachable"


@pytest.mark.parametrize(
    "bad", ["127.0.0.1", "tcp://:80", "tcp://host:http", "tcp://h:0", "tcp://h:70000"]
)
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="tcp://HOST:PORT"):  # exit code 2, not "unreachable"
        parse_address(bad)


async def test_memory_listener_refuses_after_close() -> None:
    listener = MemoryListener(lambda t: asyncio.sleep(0))
    await listener.close()
    with pytest.raises(TransportError):
        await listener.connect()


# -- WebSocket specifics ----------------------------------------------------------------------------
async def test_ws_refuses_text_and_oversized_messages() -> None:
    from websockets.asyncio.client import connect as raw_connect
    from websockets.exceptions import ConnectionClosed

    from tether.transport import ws

    results: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    async def handler(transport: Transport) -> None:
        try:
            await results.put(await transport.receive(2))
        except TransportError as exc:
            await results.put(exc)

    listener = await ws.listen("ws://127.0.0.1:0", handler)
    try:
        async with raw_connect(listener.address) as raw:
            await raw.send("a text message")
            assert isinstance(await asyncio.wait_for(results.get(), 2), BadFrame)
        async with raw_connect(listener.address, max_size=None) as raw:
            await raw.send(b"\x00" * (MAX_FRAME + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await raw.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await listener.close()


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1", "ws://127.0.0.1:0", "wss://127.0.0.1:1", "ws://h:1/path", "ws://:1"]
)
def test_ws_addresses_are_checked(url: str) -> None:
    from tether.transport import ws

    with pytest.raises(UsageError):
        ws.parse_address(url)


async def test_ws_connect_failure_is_unreachable() -> None:
    from tether.transport import ws

    listener = await ws.listen("ws://127.0.0.1:0", lambda t: asyncio.sleep(0))
    address = listener.address
    await listener.close()
    with pytest.raises(TransportError) as info:
        await ws.connect(address)
    assert info.value.code == "unreachable"


@pytest.mark.parametrize("url", ["udp://1.2.3.4:5", "tcp://h", "ble:", "ws://h:0", "ble:usb:0"])
def test_the_registry_names_what_it_accepts(url: str) -> None:
    from tether.transport import registry

    with pytest.raises(UsageError):
        registry.check(url)  # a phone's address: ble: needs the car's @ADDRESS


def test_the_registry_accepts_each_scheme_for_listening() -> None:
    from tether.transport import registry

    for url in ("tcp://127.0.0.1:0", "ws://127.0.0.1:0", "ble:usb:0", "ble:tcp-client:127.0.0.1:9"):
        assert registry.check(url, listening=True) == url
