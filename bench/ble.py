"""Pairing, standard and fast unlock over bumble's virtual BLE link against the same in process.

The car is the real agent with its real store; the phone is the CLI's client code. Over BLE both
run bumble's full host stack (HCI, L2CAP, ATT, GATT, tether's fragmentation) on a virtual link
without a radio; in process they run over the in-memory transport. Each sample is timed end to
end from an open link to the phone holding the result (for pairing: the car's identity); opening
the BLE link (connect, MTU exchange, discovery, subscription) is timed apart. Samples of both
transports are interleaved. Ends with exactly one line:
``ble_fast_ms=M ble_fast_over_memory=R1 ble_standard_over_memory=R2 ble_pairing_over_memory=R3``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bumble.testing.test_utils import TwoDevices
from rich.console import Console
from rich.table import Table

from tether.phone import client
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.commands import Command
from tether.protocol.crypto import SystemEntropy
from tether.transport import ble
from tether.transport.base import Transport
from tether.transport.memory import MemoryListener
from tether.vehicle.agent import VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.keystore import VehicleStore

Opener = Callable[[], Awaitable[Transport]]


class _Bench:
    def __init__(self, root: Path) -> None:
        self.entropy = SystemEntropy()
        self.store = VehicleStore.create(
            root / "car", name="bench", entropy=self.entropy, now=time.time()
        )
        self.agent = VehicleAgent(self.store, VirtualBody(), entropy=self.entropy)
        self.memory = MemoryListener(self.agent.handle)
        self.wallet = PhoneWallet.create(root / "phone", name="p", passphrase="bench")
        devices = TwoDevices()
        self.phone_device, self.car_device = devices.devices
        self.service = ble.BleCarService(self.car_device, self.agent.handle)
        self.connect_times: list[float] = []

    async def start(self) -> None:
        await self.phone_device.power_on()
        await self.service.start()

    async def open_ble(self) -> Transport:
        started = time.perf_counter()
        transport = await ble.connect(self.phone_device, self.car_device.random_address)
        self.connect_times.append(time.perf_counter() - started)
        return transport

    async def open_memory(self) -> Transport:
        return await self.memory.connect()

    async def pair(self, opener: Opener, name: str) -> float:
        code = self.store.new_pairing_code(now=time.time())
        key = self.entropy.new_private_key()
        transport = await opener()
        try:
            started = time.perf_counter()
            paired = await client.pair(
                transport, code=code, endpoint_key=key, name="p", entropy=self.entropy
            )
            elapsed = time.perf_counter() - started
        finally:
            await transport.close()
        self.wallet.add_car(
            name=name,
            vehicle_key=paired.vehicle_key,
            vehicle_name=paired.vehicle_name,
            address="bench",
            endpoint_key=key,
            role="owner",
            now=1.0,
        )
        return elapsed

    async def unlock(self, opener: Opener, name: str, *, fast: bool) -> float:
        car: CarKey = self.wallet.car(name)
        transport = await opener()
        try:
            started = time.perf_counter()
            (outcome,) = await client.run_commands(
                transport,
                car,
                [Command.UNLOCK],
                entropy=self.entropy,
                fast=fast,
                persist=lambda k: self.wallet.set_persistent_key(name, k),
            )
            elapsed = time.perf_counter() - started
        finally:
            await transport.close()
        if not outcome.result.ok or outcome.fast is not fast:
            raise SystemExit(f"an unlock failed during the benchmark: {outcome.result.message}")
        return elapsed


async def _run(n: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as root:
        bench = _Bench(Path(root))
        await bench.start()
        samples: dict[str, dict[str, list[float]]] = {
            flow: {"ble": [], "memory": []} for flow in ("pairing", "standard", "fast")
        }
        openers = {"ble": bench.open_ble, "memory": bench.open_memory}
        for link, opener in openers.items():  # one paired car per transport; warm both up
            await bench.pair(opener, link)
            await bench.unlock(opener, link, fast=False)
        bench.connect_times.clear()
        for i in range(n):
            for link, opener in openers.items():
                samples["pairing"][link].append(await bench.pair(opener, f"{link}-{i}"))
                samples["standard"][link].append(await bench.unlock(opener, link, fast=False))
                samples["fast"][link].append(await bench.unlock(opener, link, fast=True))
        await bench.service.close()
        await bench.memory.close()
        bench.agent.flush_summaries(force=True)
        bench.store.close()
        medians = {
            flow: {link: statistics.median(values) for link, values in by_link.items()}
            for flow, by_link in samples.items()
        }
        medians["link setup"] = {"ble": statistics.median(bench.connect_times), "memory": 0.0}
        return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="samples of each flow on each transport")
    args = parser.parse_args()
    medians = asyncio.run(_run(args.n))
    table = Table(
        title=f"Over bumble's virtual BLE link vs. in process, {args.n} samples (medians)"
    )
    table.add_column("flow")
    table.add_column("BLE ms", justify="right")
    table.add_column("in process ms", justify="right")
    table.add_column("BLE / in process", justify="right")
    for flow, by_link in medians.items():
        shown = f"{by_link['ble'] / by_link['memory']:.2f}" if by_link["memory"] else "-"
        table.add_row(flow, f"{by_link['ble'] * 1e3:.2f}", f"{by_link['memory'] * 1e3:.2f}", shown)
    Console(stderr=True).print(table)

    def ratio(flow: str) -> float:
        return medians[flow]["ble"] / medians[flow]["memory"]

    print(
        f"ble_fast_ms={medians['fast']['ble'] * 1e3:.2f} "
        f"ble_fast_over_memory={ratio('fast'):.2f} "
        f"ble_standard_over_memory={ratio('standard'):.2f} "
        f"ble_pairing_over_memory={ratio('pairing'):.2f}"
    )


if __name__ == "__main__":
    main()
