"""A whole cloud in one process: server, a car (agent + cloud link) and phones, on real sockets."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tether.cloud.server import Server
from tether.phone import client
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.commands import Command
from tether.protocol.crypto import SystemEntropy
from tether.transport import tcp
from tether.vehicle.agent import AgentEvent, VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.cloud_link import CloudLink
from tether.vehicle.keystore import VehicleStore

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 10.0, every: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last: {value!r})")
        await asyncio.sleep(every)


@dataclass
class Car:
    store: VehicleStore
    body: VirtualBody
    agent: VehicleAgent
    listener: tcp.TcpListener
    link: CloudLink | None = None
    events: list[AgentEvent] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.listener.address

    async def connect(self, server: str, *, poll: float = 15.0) -> CloudLink:
        self.link = CloudLink(self.agent, server, address=self.address, poll_interval=poll)
        await self.link.start()
        await asyncio.wait_for(self.link.online.wait(), 10)
        return self.link

    async def disconnect(self) -> None:
        if self.link is not None:
            await self.link.stop()
            self.link = None

    async def close(self) -> None:
        if self.link is not None:
            await self.link.retire()  # leave no retained messages on the shared broker
        await self.disconnect()
        await self.listener.close()
        self.store.close()


async def make_car(directory: Path, name: str = "Ada's car") -> Car:
    store = VehicleStore.create(directory, name=name, entropy=SystemEntropy(), now=time.time())
    body = VirtualBody(directory / "body.json")
    agent = VehicleAgent(store, body)
    listener = await tcp.listen("tcp://127.0.0.1:0", agent.handle)
    car = Car(store, body, agent, listener)
    agent.listeners.append(car.events.append)
    return car


async def pair_owner(car: Car, wallet: PhoneWallet, name: str = "car") -> CarKey:
    code = car.store.new_pairing_code(now=time.time())
    key = SystemEntropy().new_private_key()
    transport = await tcp.connect(car.address)
    try:
        paired = await client.pair(
            transport, code=code, endpoint_key=key, name=wallet.name, entropy=SystemEntropy()
        )
    finally:
        await transport.close()
    return wallet.add_car(
        name=name,
        vehicle_key=paired.vehicle_key,
        vehicle_name=paired.vehicle_name,
        address=car.address,
        endpoint_key=key,
        role="owner",
        now=time.time(),
    )


async def run(wallet: PhoneWallet, name: str, *commands: Command) -> list[client.Outcome]:
    """Commands over TCP at the car (standard transaction, so start works too)."""
    car = wallet.car(name)
    transport = await tcp.connect(car.address)
    try:
        return await client.run_commands(
            transport,
            car,
            list(commands),
            entropy=SystemEntropy(),
            fast=False,
            persist=lambda key: wallet.set_persistent_key(car.name, key),
        )
    finally:
        await transport.close()


async def start_server(directory: Path, *, database: str | None, mqtt: str | None) -> Server:
    from tether.cloud.server import ServerSettings

    server = Server(
        ServerSettings(
            directory=directory,
            listen="http://127.0.0.1:0",
            database=database,
            mqtt=mqtt,
            embedded_mqtt_port=free_port(),
        )
    )
    await server.start()
    return server


SERVER = [sys.executable, "-m", "tether", "server"]


class Instance:
    """One `tether server` process (`python -m tether server ...`)."""

    def __init__(self, directory: Path, db: str, mqtt_port: int, secrets: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                *SERVER,
                *("--dir", str(directory), "--listen", self.url, "--db", db),
                *("--mqtt", f"mqtt://127.0.0.1:{mqtt_port}", "--mqtt-secrets", str(secrets)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), line

    def health(self) -> dict[str, object]:
        answer: dict[str, object] = httpx.get(f"{self.url}/v1/health", timeout=5).json()
        return answer

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()
