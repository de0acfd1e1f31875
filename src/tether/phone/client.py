"""The phone's client: pair with a car, or run a transaction and commands over any transport."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tether.errors import LocalProtocolError, ProtocolError, TransportError
from tether.phone.wallet import CarKey
from tether.protocol.commands import Command
from tether.protocol.crypto import Entropy, PrivateKey
from tether.protocol.messages import CommandResult
from tether.protocol.pairing import PairingState, PhonePairing, VehiclePaired
from tether.protocol.session import PhoneSession, ResultReceived, SessionClosed
from tether.protocol.transaction import (
    Established,
    PersistentKeyChanged,
    PhoneTransaction,
)
from tether.transport.base import Transport, TransportClosed

HANDSHAKE_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0


async def _flush(transport: Transport, outbox: list[bytes]) -> None:
    for data in outbox:
        await transport.send(data)


async def pair(
    transport: Transport, *, code: str, endpoint_key: PrivateKey, name: str, entropy: Entropy
) -> VehiclePaired:
    """Run owner pairing; return the car's identity. Raises PairingError / PeerError."""
    machine = PhonePairing(code=code, endpoint_key=endpoint_key, name=name, entropy=entropy)
    machine.start()
    await _flush(transport, machine.data_to_send())
    while True:
        try:
            events = machine.receive(await transport.receive(HANDSHAKE_TIMEOUT))
        except ProtocolError:
            await _flush(transport, machine.data_to_send())
            raise
        await _flush(transport, machine.data_to_send())
        for event in events:
            if isinstance(event, VehiclePaired):
                return event
        if machine.state is PairingState.DONE:  # pragma: no cover - DONE always carries the event
            raise LocalProtocolError("pairing ended without the car's identity")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one command."""

    result: CommandResult
    fast: bool
    fell_back: bool


async def run_commands(
    transport: Transport,
    car: CarKey,
    commands: list[Command | str],
    *,
    entropy: Entropy,
    fast: bool,
    persist: Callable[[bytes], None],
    timeout: float = COMMAND_TIMEOUT,
) -> list[Outcome]:
    """One transaction carrying the commands (sent right behind the proof), then a clean close.

    ``persist`` stores the car's new persistent key as soon as the car confirms the session.
    """
    machine = PhoneTransaction(
        endpoint_key=car.endpoint_key,
        vehicle_key=car.vehicle_key,
        persistent_key=car.persistent_key,
        entropy=entropy,
        fast=fast,
        early_commands=[str(c) for c in commands],
    )
    machine.start()
    await _flush(transport, machine.data_to_send())
    session: PhoneSession | None = None
    fell_back = False
    while session is None:
        try:
            events = machine.receive(await transport.receive(timeout))
        except ProtocolError:
            await _flush(transport, machine.data_to_send())
            raise
        for event in events:
            if isinstance(event, PersistentKeyChanged):
                persist(event.key)
            elif isinstance(event, Established):
                assert isinstance(event.session, PhoneSession)
                session = event.session
            else:
                fell_back = True
        await _flush(transport, machine.data_to_send())
    outcomes: list[Outcome] = []
    while len(outcomes) < len(commands):
        try:
            data = await transport.receive(timeout)
        except TransportError as exc:
            # The command reached the car, which may have run it before the link failed.
            raise TransportError(
                f"no answer from the car: {exc.message}",
                code="no_answer",
                may_have_succeeded=True,
            ) from exc
        for event in session.receive(data):
            if isinstance(event, ResultReceived):
                outcomes.append(
                    Outcome(result=event.result, fast=session.fast, fell_back=fell_back)
                )
            elif isinstance(event, SessionClosed):
                raise TransportClosed("the car closed the session", may_have_succeeded=True)
    session.close()
    await _flush(transport, session.data_to_send())
    return outcomes
