"""The in-memory rig shared by the car-side tests: a real agent, store, body and a phone wallet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tether.phone import client
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy
from tether.transport.memory import MemoryListener
from tether.vehicle.agent import AgentEvent, VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.keystore import VehicleStore


@dataclass
class Rig:
    store: VehicleStore
    body: VirtualBody
    agent: VehicleAgent
    listener: MemoryListener
    wallet: PhoneWallet
    entropy: DeterministicEntropy
    events: list[AgentEvent]

    async def pair(self, code: str | None = None, *, name: str = "car") -> CarKey:
        code = code or self.store.new_pairing_code(now=self.agent.clock())
        key = self.entropy.new_private_key()
        transport = await self.listener.connect()
        paired = await client.pair(
            transport, code=code, endpoint_key=key, name="Ada's phone", entropy=self.entropy
        )
        await transport.close()
        return self.wallet.add_car(
            name=name,
            vehicle_key=paired.vehicle_key,
            vehicle_name=paired.vehicle_name,
            address=self.listener.address,
            endpoint_key=key,
            role="owner",
            now=1.0,
        )

    async def run(
        self, car: CarKey, *commands: Command | str, fast: bool = True
    ) -> list[client.Outcome]:
        car = self.wallet.car(car.name)
        transport = await self.listener.connect()
        try:
            return await client.run_commands(
                transport,
                car,
                list(commands),
                entropy=self.entropy,
                fast=fast,
                persist=lambda key: self.wallet.set_persistent_key(car.name, key),
            )
        finally:
            await transport.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    entropy = DeterministicEntropy(b"agent")
    store = VehicleStore.create(tmp_path / "car", name="Test car", entropy=entropy, now=1000.0)
    body = VirtualBody(tmp_path / "car" / "body.json")
    clock = [1000.0]
    agent = VehicleAgent(
        store,
        body,
        entropy=entropy,
        clock=lambda: clock[0],
        handshake_timeout=0.5,
        idle_timeout=0.5,
    )
    events: list[AgentEvent] = []
    agent.listeners.append(events.append)
    listener = MemoryListener(agent.handle)
    wallet = PhoneWallet.create(tmp_path / "phone", name="Ada's phone", passphrase="test pass")
    yield Rig(store, body, agent, listener, wallet, entropy, events)
    await listener.close()
    store.close()
    wallet.close()
