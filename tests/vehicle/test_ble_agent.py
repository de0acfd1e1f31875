"""The car agent over Bluetooth LE (bumble's virtual link): pairing, commands, and the owner's
switch that makes app commands over BLE need the phone measured at the car."""

from __future__ import annotations

import random
import time
from pathlib import Path

from bumble.testing.test_utils import TwoDevices

from tether.phone import client
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.ranging import ranging_key
from tether.transport import ble
from tether.vehicle.agent import VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.hands_free import Reading
from tether.vehicle.keystore import VehicleStore
from tether.vehicle.ranging import locate
from tether.vehicle.simulation import SimulatedRanger


async def test_pair_and_command_over_ble_with_and_without_ranging(tmp_path: Path) -> None:
    entropy = DeterministicEntropy(b"ble")
    store = VehicleStore.create(tmp_path / "car", name="BLE car", entropy=entropy, now=time.time())
    agent = VehicleAgent(store, VirtualBody(), entropy=entropy)
    devices = TwoDevices()
    phone_device, car_device = devices.devices
    service = ble.BleCarService(car_device, agent.handle)
    await phone_device.power_on()
    await service.start()
    wallet = PhoneWallet.create(tmp_path / "phone", name="p", passphrase="p")

    code = store.new_pairing_code(now=time.time())
    key = entropy.new_private_key()
    transport = await ble.connect(phone_device, car_device.random_address)
    paired = await client.pair(transport, code=code, endpoint_key=key, name="p", entropy=entropy)
    await transport.close()
    car = wallet.add_car(
        name="car",
        vehicle_key=paired.vehicle_key,
        vehicle_name="c",
        address="ble",
        endpoint_key=key,
        role="owner",
        now=1.0,
    )

    async def command(which: Command) -> str | None:
        current: CarKey = wallet.car("car")
        link = await ble.connect(phone_device, car_device.random_address)
        try:
            (outcome,) = await client.run_commands(
                link,
                current,
                [which],
                entropy=entropy,
                fast=True,
                persist=lambda k: wallet.set_persistent_key("car", k),
            )
        finally:
            await link.close()
        return outcome.result.reason

    assert await command(Command.UNLOCK) is None  # switch off: app commands need no ranging
    assert await command(Command.LOCK) is None
    agent.ranging_for_app = True
    assert await command(Command.UNLOCK) == "ranging_required"
    rng = random.Random(1)
    sim = SimulatedRanger(phone=(-1.6, 0.4), rng=rng, secrets_source=rng.randbytes)
    location = locate(sim.measure(ranging_key(b"\x01" * 32)))
    await agent.hands_free([Reading(key_id=car.endpoint_id.hex(), location=location)])
    assert await command(Command.LOCK) is None  # lock never needs ranging
    assert await command(Command.UNLOCK) is None  # measured at the door just now
    entries = [(e.command, e.result, e.reason) for e in store.audit_entries()]
    assert ("unlock", "denied", "ranging_required") in entries
    await service.close()
    store.close()
    wallet.close()
