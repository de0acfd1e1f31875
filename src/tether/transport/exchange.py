"""The one loop that drives a protocol machine over a transport, on the car and on the phone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tether.errors import ProtocolError
from tether.protocol.machine import Event, StateMachine
from tether.transport.base import Transport


async def flush(transport: Transport, outbox: Iterable[bytes]) -> None:
    """Send what a machine queued, in order."""
    for data in outbox:
        await transport.send(data)


async def run_exchange(
    machine: StateMachine[Any],
    transport: Transport,
    *,
    receive: Callable[[], Awaitable[bytes]],
    clock: Callable[[], float],
    persist: Callable[[list[Event]], None],
    first: bytes | None = None,
) -> None:
    """Feed ``machine`` what the peer sends until its exchange is done (pairing, a transaction).

    What the machine queued already goes out first; ``first`` is a message the caller read
    before it knew which machine it needed. Each message is stamped with ``clock()`` when it is
    fed, and its events go to ``persist`` before anything the machine queued in answer is sent,
    so nothing is acknowledged before it is durable. On a refusal the machine's ``Error`` is sent
    and the :class:`ProtocolError` raised; a transport's errors (timeouts included) pass through.
    """
    await flush(transport, machine.data_to_send())
    data = first if first is not None else await receive()
    while True:
        try:
            events = machine.receive(data, now=clock())
        except ProtocolError:
            await flush(transport, machine.data_to_send())
            raise
        persist(events)
        await flush(transport, machine.data_to_send())
        if machine.done:
            return
        data = await receive()
