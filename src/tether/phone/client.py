"""The phone's client: pair with a car, or run a transaction and commands over any transport."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tether.errors import LocalCode, TransportClosed, TransportError
from tether.phone.wallet import CarKey
from tether.protocol.commands import Command
from tether.protocol.crypto import Entropy, PrivateKey
from tether.protocol.machine import Event
from tether.protocol.messages import CommandResult, RevocationResult
from tether.protocol.pairing import PhonePairing, VehiclePaired
from tether.protocol.session import (
    DataRequested,
    PhoneSession,
    RangingRequested,
    ResultReceived,
    RevocationAnswered,
    SessionClosed,
    SessionState,
)
from tether.protocol.transaction import (
    Established,
    FastFallback,
    PersistentKeyChanged,
    PhoneTransaction,
)
from tether.transport.base import Transport
from tether.transport.exchange import flush, run_exchange

HANDSHAKE_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0
#: The phone's declared turnaround for the timed ranging rounds (§13): what its radio needs.
REPLY_NS = 250_000


async def pair(
    transport: Transport, *, code: str, endpoint_key: PrivateKey, name: str, entropy: Entropy
) -> VehiclePaired:
    """Run owner pairing; return the car's identity. Raises PairingError / PeerError."""
    machine = PhonePairing(code=code, endpoint_key=endpoint_key, name=name, entropy=entropy)
    machine.start()
    paired: list[VehiclePaired] = []
    await run_exchange(
        machine,
        transport,
        receive=lambda: transport.receive(HANDSHAKE_TIMEOUT),
        clock=time.time,
        persist=lambda events: paired.extend(e for e in events if isinstance(e, VehiclePaired)),
    )
    (event,) = paired
    return event


DataResponder = Callable[[DataRequested], Awaitable[tuple[dict[str, Any], list[str]]]]


async def deny_all(request: DataRequested) -> tuple[dict[str, Any], list[str]]:
    """The answer of a phone that shares nothing."""
    return {}, [item.category for item in request.items]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one command."""

    result: CommandResult
    fast: bool
    fell_back: bool


async def _establish(
    transport: Transport,
    car: CarKey,
    *,
    entropy: Entropy,
    fast: bool,
    persist: Callable[[bytes], None],
    early: list[str],
    timeout: float,
) -> tuple[PhoneSession, bool]:
    """Run one transaction (presenting the credential until the car knows this key)."""
    machine = PhoneTransaction(
        endpoint_key=car.endpoint_key,
        vehicle_key=car.vehicle_key,
        persistent_key=car.persistent_key,
        entropy=entropy,
        fast=fast,
        early_commands=early,
        credential=None if car.enrolled else car.credential,
    )
    machine.start()
    sessions: list[PhoneSession] = []
    fell_back = False

    def keep(events: list[Event]) -> None:
        nonlocal fell_back
        for event in events:
            if isinstance(event, PersistentKeyChanged):
                persist(event.key)
            elif isinstance(event, Established):
                assert isinstance(event.session, PhoneSession)
                sessions.append(event.session)
            elif isinstance(event, FastFallback):
                fell_back = True

    await run_exchange(
        machine,
        transport,
        receive=lambda: transport.receive(timeout),
        clock=time.time,
        persist=keep,
    )
    (session,) = sessions
    return session, fell_back


async def _answer(transport: Transport, session: PhoneSession, timeout: float) -> list[Event]:
    try:
        data = await transport.receive(timeout)
    except TransportError as exc:
        # The request reached the car, which may have acted on it before the link failed.
        raise TransportError(
            f"no answer from the car: {exc.message}",
            code=LocalCode.NO_ANSWER,
            may_have_succeeded=True,
        ) from exc
    events = session.receive(data, now=time.time())
    if any(isinstance(e, SessionClosed) for e in events):
        raise TransportClosed("the car closed the session", may_have_succeeded=True)
    return events


async def run_commands(
    transport: Transport,
    car: CarKey,
    commands: list[Command | str],
    *,
    entropy: Entropy,
    fast: bool,
    persist: Callable[[bytes], None],
    timeout: float = COMMAND_TIMEOUT,
    data: DataResponder = deny_all,
    linger: Callable[[list[Outcome]], Awaitable[None]] | None = None,
) -> list[Outcome]:
    """One transaction carrying the commands (sent right behind the proof), then a clean close.

    ``persist`` stores the car's new persistent key as soon as the car confirms the session.
    ``linger``, if given, is awaited with the outcomes before the session closes: the phone stays
    connected (while the driver is in the car, the head unit keeps showing their data).
    """
    session, fell_back = await _establish(
        transport,
        car,
        entropy=entropy,
        fast=fast,
        persist=persist,
        early=[str(c) for c in commands],
        timeout=timeout,
    )
    outcomes: list[Outcome] = []
    while len(outcomes) < len(commands):
        for event in await _answer(transport, session, timeout):
            if isinstance(event, ResultReceived):
                outcomes.append(
                    Outcome(result=event.result, fast=session.fast, fell_back=fell_back)
                )
            else:
                await _serve_request(transport, session, event, data)
    if linger is not None:
        await linger(outcomes)
    session.close()
    await flush(transport, session.data_to_send())
    return outcomes


async def _serve_request(
    transport: Transport, session: PhoneSession, event: object, data: DataResponder
) -> None:
    """Answer what the car asks within a session: data by consent, ranging setup at once."""
    if isinstance(event, DataRequested):
        # The head unit asks (before it starts the car, or on demand): consent decides.
        granted, denied = await data(event)
        session.respond_data(event.request_id, granted=granted, denied=denied)
    elif isinstance(event, RangingRequested):
        session.ranging_ready(event.request_id, reply_ns=REPLY_NS)
    await flush(transport, session.data_to_send())


async def drive(
    transport: Transport,
    car: CarKey,
    *,
    entropy: Entropy,
    persist: Callable[[bytes], None],
    stop: Awaitable[object],
    data: DataResponder = deny_all,
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    """Hold a session open (the phone in the driver's pocket) until ``stop`` or the car ends it.

    Meanwhile the phone answers what the car asks: ranging setup, so the car can measure where
    it is (passive entry, walk-away lock, the start button), and data requests by consent. Returns
    why the session ended.
    """
    session, _ = await _establish(
        transport, car, entropy=entropy, fast=True, persist=persist, early=[], timeout=timeout
    )
    stopping = asyncio.ensure_future(stop)
    try:
        while True:
            receiving = asyncio.ensure_future(transport.receive(None))
            done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                receiving.cancel()
                await asyncio.gather(receiving, return_exceptions=True)
                session.close()
                await flush(transport, session.data_to_send())
                return "stopped"
            try:
                message = receiving.result()
            except TransportClosed:
                return "the car ended the session"
            for event in session.receive(message, now=time.time()):
                if isinstance(event, SessionClosed):
                    return "the car closed the session"
                await _serve_request(transport, session, event, data)
    finally:
        stopping.cancel()


async def deliver_revocation(
    transport: Transport,
    car: CarKey,
    revocation: bytes,
    *,
    entropy: Entropy,
    persist: Callable[[bytes], None],
    timeout: float = COMMAND_TIMEOUT,
) -> RevocationResult:
    """Hand an owner-signed revocation to the car in a session; the answer says if it is durable."""
    session, _ = await _establish(
        transport, car, entropy=entropy, fast=True, persist=persist, early=[], timeout=timeout
    )
    session.deliver_revocation(revocation)
    await flush(transport, session.data_to_send())
    while True:
        for event in await _answer(transport, session, timeout):
            if isinstance(event, RevocationAnswered):
                if session.state is SessionState.OPEN:
                    session.close()
                    await flush(transport, session.data_to_send())
                return event.result
