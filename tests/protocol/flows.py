"""Test helpers: deterministic parties, an in-memory directory, and scripted runs of every flow."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

from tether.errors import PairingError, WireCode
from tether.protocol import codec
from tether.protocol.codec import Kind, Message
from tether.protocol.crypto import DeterministicEntropy, PrivateKey
from tether.protocol.machine import Event
from tether.protocol.pairing import CodeState, PhonePairing, VehiclePairing
from tether.protocol.pump import pump
from tether.protocol.session import PhoneSession, VehicleSession
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PersistentKeyChanged,
    PhoneTransaction,
    VehicleTransaction,
)

CODE = "31415926"


Directory = MemoryDirectory


@dataclasses.dataclass
class World:
    """A car and one paired phone, deterministic from a seed."""

    vehicle_key: PrivateKey
    phone_key: PrivateKey
    directory: Directory
    entropy: DeterministicEntropy
    phone_persistent: bytes | None = None

    @classmethod
    def make(cls, seed: bytes = b"world", *, enrolled: bool = True) -> World:
        entropy = DeterministicEntropy(seed)
        world = cls(
            vehicle_key=entropy.new_private_key(),
            phone_key=entropy.new_private_key(),
            directory=Directory(),
            entropy=entropy,
        )
        if enrolled:
            world.directory.enroll(world.phone_key.public_key, owner=True)
        return world

    def phone_tx(
        self, *, fast: bool = True, early_commands: Sequence[str] = ()
    ) -> PhoneTransaction:
        return PhoneTransaction(
            endpoint_key=self.phone_key,
            vehicle_key=self.vehicle_key.public_key,
            persistent_key=self.phone_persistent,
            entropy=self.entropy,
            fast=fast,
            early_commands=early_commands,
        )

    def vehicle_tx(self) -> VehicleTransaction:
        return VehicleTransaction(
            vehicle_key=self.vehicle_key, directory=self.directory, entropy=self.entropy
        )

    def apply(self, side: object, events: list[Event]) -> None:
        """Persist events as the runtimes will: the car's directory, the phone's wallet."""
        for event in events:
            if isinstance(event, PersistentKeyChanged):
                if isinstance(side, VehicleTransaction):
                    self.directory.persistent[event.endpoint_id] = event.key
                else:
                    self.phone_persistent = event.key

    def transact(
        self, *, fast: bool = True, tap: Any = None
    ) -> tuple[PhoneSession, VehicleSession, list[Event]]:
        phone, car = self.phone_tx(fast=fast), self.vehicle_tx()
        phone.start()
        events = pump(phone, car, now=0.0, on_events=self.apply, tap=tap)
        established = [e for e in events if isinstance(e, Established)]
        assert len(established) == 2, events
        car_session, phone_session = (e.session for e in established)
        assert isinstance(phone_session, PhoneSession)
        assert isinstance(car_session, VehicleSession)
        return phone_session, car_session, events


def code_state(**overrides: Any) -> CodeState:
    values: dict[str, Any] = {
        "code": CODE,
        "expires_at": 1_000.0,
        "used": False,
        "failures": 0,
        "max_failures": 5,
    }
    values.update(overrides)
    return CodeState(**values)


def pairing_pair(
    seed: bytes = b"pairing", *, phone_code: str = CODE, **code: Any
) -> tuple[PhonePairing, VehiclePairing]:
    entropy = DeterministicEntropy(seed)
    vehicle_key = entropy.new_private_key()
    phone_key = entropy.new_private_key()
    phone = PhonePairing(
        code=phone_code, endpoint_key=phone_key, name="Ada's phone", entropy=entropy
    )
    car = VehiclePairing(
        code=code_state(**code),
        vehicle_key=vehicle_key,
        name="Test car",
        entropy=entropy,
        reserve_guess=GuessBudget(5),
    )
    return phone, car


class GuessBudget:
    """A store's atomic "spend one guess" for machine tests: counts down, then locks."""

    def __init__(self, guesses: int) -> None:
        self.left = guesses

    def __call__(self) -> int:
        if self.left <= 0:
            raise PairingError("pairing is locked", code=WireCode.PAIRING_LOCKED)
        self.left -= 1
        return self.left


def sample_value(spec: codec.FieldSpec) -> Any:
    """A valid value for one field spec."""
    if spec.kind is Kind.BYTES:
        return b"\x07" * (spec.size if spec.size is not None else 8)
    if spec.kind is Kind.UINT:
        return 7
    if spec.kind is Kind.TEXT:
        return "seven"
    if spec.kind is Kind.BOOL:
        return True
    return {"Vehicle.Speed": 0.0}


def sample_message(cls: type[Message]) -> Message:
    """A valid instance of any registered message class (content meaningless)."""
    kwargs = {name: sample_value(spec) for name, spec in cls._SPECS}
    return cls(**kwargs)


def all_messages() -> list[Message]:
    return [sample_message(cls) for cls in codec.registered_types().values()]


def state_names(states: type[enum.Enum]) -> list[str]:
    return [s.name for s in states]
