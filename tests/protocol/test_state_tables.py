"""Every state of every protocol state machine, fed every message type (as h2 does).

Legal (state, message) pairs must move to a state the table allows; every other pair must raise a
typed error and leave the machine failed; a failed machine refuses everything.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tether.errors import LocalProtocolError, PeerError, ProtocolError, UnexpectedMessage
from tether.protocol import codec
from tether.protocol.machine import StateMachine
from tether.protocol.messages import Error
from tether.protocol.pairing import PairingState
from tether.protocol.transaction import TxState

from .flows import World, pairing_pair, sample_message

Machine = StateMachine[enum.Enum]


@dataclass
class Scenario:
    """A live pair of machines; the one under test is `role` ("phone" or "car")."""

    name: str
    make: Callable[[], tuple[Machine, Machine]]  # (phone, car), phone not yet started


def _pairing() -> tuple[Machine, Machine]:
    return pairing_pair()  # type: ignore[return-value]


def _standard() -> tuple[Machine, Machine]:
    world = World.make(b"tables")
    return world.phone_tx(fast=False), world.vehicle_tx()  # type: ignore[return-value]


def _fast(*, fallback: bool) -> Callable[[], tuple[Machine, Machine]]:
    def make() -> tuple[Machine, Machine]:
        world = World.make(b"tables")
        world.transact(fast=False)
        if fallback:
            world.directory.persistent.clear()
        phone = world.phone_tx(fast=True, early_commands=["unlock"] if fallback else ())
        return phone, world.vehicle_tx()  # type: ignore[return-value]

    return make


SCENARIOS = [
    Scenario("pairing", _pairing),
    Scenario("standard", _standard),
    Scenario("fast", _fast(fallback=False)),
    Scenario("fallback", _fast(fallback=True)),
]


def walk(scenario: Scenario, role: str) -> list[tuple[enum.Enum, bytes | None]]:
    """Every state `role` passes through, with the legal message that arrives in it (if any)."""
    phone, car = scenario.make()
    me = phone if role == "phone" else car
    seen: list[tuple[enum.Enum, bytes | None]] = []
    if role == "phone":
        seen.append((phone.state, None))  # before start(): nothing may arrive yet
    phone.start()  # type: ignore[attr-defined]
    # The car speaks first (its greeting, queued when it was made), then the phone.
    queue: list[tuple[Machine, bytes]] = [(phone, d) for d in car.data_to_send()]
    queue += [(car, d) for d in phone.data_to_send()]
    while queue:
        dst, data = queue.pop(0)
        if dst.state.name in ("ESTABLISHED", "DONE"):
            continue  # early commands for the session that follows, not for the machine
        if dst is me:
            seen.append((me.state, data))
        dst.receive(data, now=0.0)
        src = dst
        other = car if src is phone else phone
        queue.extend((other, d) for d in src.data_to_send())
    seen.append((me.state, None))
    return seen


def reach(scenario: Scenario, role: str, index: int) -> Machine:
    """A fresh machine of `role` driven into the state at position `index` of its walk."""
    phone, car = scenario.make()
    me = phone if role == "phone" else car
    if role == "phone" and index == 0:
        return me
    phone.start()  # type: ignore[attr-defined]
    steps = 1 if role == "phone" else 0
    # The car speaks first (its greeting, queued when it was made), then the phone.
    queue: list[tuple[Machine, bytes]] = [(phone, d) for d in car.data_to_send()]
    queue += [(car, d) for d in phone.data_to_send()]
    while steps < index:
        dst, data = queue.pop(0)
        if dst.state.name in ("ESTABLISHED", "DONE"):
            continue
        if dst is me:
            steps += 1
        dst.receive(data, now=0.0)
        other = car if dst is phone else phone
        queue.extend((other, d) for d in dst.data_to_send())
    return me


CASES = [
    pytest.param(scenario, role, index, state, legal, id=f"{scenario.name}-{role}-{state.name}")
    for scenario in SCENARIOS
    for role in ("phone", "car")
    for index, (state, legal) in enumerate(walk(scenario, role))
]


@pytest.mark.parametrize(("scenario", "role", "index", "state", "legal"), CASES)
def test_every_message_in_every_state(
    scenario: Scenario, role: str, index: int, state: enum.Enum, legal: bytes | None
) -> None:
    table = type(reach(scenario, role, index)).TRANSITIONS
    for cls in codec.registered_types().values():
        machine = reach(scenario, role, index)
        assert machine.state is state
        if legal is not None and type(codec.decode(legal)) is cls:
            machine.receive(legal, now=0.0)
            assert machine.state in table[(state, cls)].next_states
            continue
        data = codec.encode(sample_message(cls))
        if (state, cls) in table:
            # A legal type with made-up content: either a legal move or a typed refusal.
            try:
                machine.receive(data, now=0.0)
            except ProtocolError:
                assert machine.state is type(machine).FAILED
            else:
                assert machine.state in table[(state, cls)].next_states
            continue
        with pytest.raises(PeerError if cls is Error else UnexpectedMessage):
            machine.receive(data, now=0.0)
        assert machine.state is type(machine).FAILED
        with pytest.raises(LocalProtocolError):
            machine.receive(data, now=0.0)


def test_every_table_entry_is_exercised() -> None:
    covered = set()
    for scenario in SCENARIOS:
        for role in ("phone", "car"):
            phone, car = scenario.make()
            machine = phone if role == "phone" else car
            for state, legal in walk(scenario, role):
                if legal is not None:
                    covered.add((type(machine).__name__, state, type(codec.decode(legal))))
    tables = {}
    for scenario in SCENARIOS:
        phone, car = scenario.make()
        for machine in (phone, car):
            tables[type(machine).__name__] = type(machine).TRANSITIONS
    expected = {(name, s, m) for name, table in tables.items() for (s, m) in table}
    assert expected == covered


def test_state_enums_have_no_unused_members() -> None:
    used = {
        s for scenario in SCENARIOS for role in ("phone", "car") for s, _ in walk(scenario, role)
    }
    for enum_type in (PairingState, TxState):
        unused = {s for s in enum_type if s not in used and s.name != "FAILED"}
        assert not unused, unused


def _machine_classes() -> list[type[Machine]]:
    from tether.protocol.pairing import PhonePairing, VehiclePairing
    from tether.protocol.session import PhoneSession, VehicleSession
    from tether.protocol.transaction import PhoneTransaction, VehicleTransaction

    return [
        PhonePairing,
        VehiclePairing,
        PhoneTransaction,
        VehicleTransaction,
        PhoneSession,
        VehicleSession,
    ]


@pytest.mark.parametrize("machine", _machine_classes(), ids=lambda m: m.__name__)
def test_each_rule_names_the_handler_of_its_message_type(machine: type[Machine]) -> None:
    """One table says which handler runs: each handler takes exactly its key's message type
    and the arrival time, so no handler has to test what it was given."""
    import typing

    assert machine.TRANSITIONS
    for (state, message_type), found in machine.TRANSITIONS.items():
        hints = typing.get_type_hints(found.handler)
        assert hints["msg"] is message_type, (state, message_type, found.handler)
        assert hints["now"] is float
        assert found.next_states and all(isinstance(s, type(state)) for s in found.next_states)
        assert machine.FAILED not in found.next_states


def test_time_comes_with_each_message_not_with_the_machine() -> None:
    # The same car, the same code: the PairRequest's own arrival time decides if it has expired.
    for now, expired in ((999.0, False), (1_000.0, True)):
        phone, car = pairing_pair(expires_at=1_000.0)
        phone.start()
        (greeting,) = car.data_to_send()
        phone.receive(greeting, now=now)
        (request,) = phone.data_to_send()
        if expired:
            with pytest.raises(ProtocolError) as info:
                car.receive(request, now=now)
            assert info.value.code == "code_expired"
        else:
            car.receive(request, now=now)
            assert car.state is PairingState.SENT_CHALLENGE
