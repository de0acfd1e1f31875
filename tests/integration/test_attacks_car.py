"""A stranger near the car, over raw TCP to a real `tether vehicle run`: parallel pairing guesses,
a flood that tries to hold every connection slot, a second agent on the same car, a clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tether.errors import TransportError
from tether.phone import client
from tether.phone.wallet import CarKey
from tether.protocol import codec
from tether.protocol.commands import Command
from tether.protocol.crypto import SystemEntropy
from tether.protocol.messages import (
    Error,
    FastProof,
    PairChallenge,
    Record,
)
from tether.protocol.pairing import PhonePairing
from tether.transport import tcp
from tether.vehicle.keystore import MAX_PAIRING_FAILURES, VehicleStore

from .procs import CLI, Agent, tether

CODE_WRONG = "00000000"


def make_car(directory: Path) -> tuple[str, CarKey]:
    """A car with a fresh pairing code and one enrolled owner phone."""
    store = VehicleStore.create(directory, name="target", entropy=SystemEntropy(), now=time.time())
    code = store.new_pairing_code(now=time.time())
    phone = SystemEntropy().new_private_key()
    store.enroll(
        phone.public_key,
        name="owner",
        role="owner",
        rights=frozenset({"unlock", "lock"}),
        not_before=None,
        not_after=None,
        now=time.time(),
    )
    car = CarKey(
        name="c",
        vehicle_key=store.identity.public_key,
        vehicle_name="target",
        address="",
        endpoint_key=phone,
        role="owner",
        persistent_key=None,
        ratchet=0,
        added_at=0,
    )
    store.close()
    return code, car


def test_parallel_pairing_guesses_get_no_more_tries_than_serial_ones(tmp_path: Path) -> None:
    """120 attempts in flight at once, the right code last: only the budget is ever tested."""
    code, _ = make_car(tmp_path / "car")
    wrong = CODE_WRONG if code != CODE_WRONG else "11111111"
    agent = Agent(tmp_path / "car")

    async def attack() -> list[str]:
        guesses = [wrong] * 119 + [code]
        conns, machines = [], []
        for guess in guesses:  # every PairRequest arrives while the code is still fresh
            transport = await tcp.connect(agent.address)
            machine = PhonePairing(
                code=guess,
                endpoint_key=SystemEntropy().new_private_key(),
                name="attacker",
                entropy=SystemEntropy(),
            )
            machine.start()
            machine.receive(await transport.receive(5.0), now=0.0)  # the car's greeting
            for data in machine.data_to_send():
                await transport.send(data)
            conns.append(transport)
            machines.append(machine)
        for transport, machine in zip(conns, machines, strict=True):
            challenge = await transport.receive(5.0)
            assert isinstance(codec.decode(challenge), PairChallenge)
            machine.receive(challenge, now=0.0)
        codes = []
        for transport, machine in zip(conns, machines, strict=True):
            for data in machine.data_to_send():
                await transport.send(data)
            reply = codec.decode(await transport.receive(5.0))
            codes.append(reply.code if isinstance(reply, Error) else type(reply).__name__)
            await transport.close()
        return codes

    try:
        codes = asyncio.run(attack())
    finally:
        agent.stop()
    assert codes.count("wrong_code") == MAX_PAIRING_FAILURES
    assert "PairAccept" not in codes, "the attacker was enrolled as an owner"
    assert codes[-1] == "pairing_locked"  # the right code, after the budget: never tested
    store = VehicleStore.open(tmp_path / "car")
    assert [e.role for e in store.endpoints()] == ["owner"]  # only the real owner
    store.close()
    # And across a restart: the code stays void.
    agent = Agent(tmp_path / "car")
    try:
        pairing = tether("phone", "init", "--dir", str(tmp_path / "p"), "--name", "x", check=False)
        assert pairing.returncode == 0, pairing.stderr
        again = tether(
            "phone",
            "pair",
            "--dir",
            str(tmp_path / "p"),
            "--vehicle",
            agent.address,
            "--code",
            code,
            check=False,
        )
        assert again.returncode != 0 and "locked" in again.stdout + again.stderr
    finally:
        agent.stop()


async def _holder(address: str, stop: asyncio.Event) -> None:
    """One junk connection after another: a random FastProof (the car falls back), then Records
    forever, each of which once reset the car's handshake deadline."""
    while not stop.is_set():
        try:
            transport = await tcp.connect(address, timeout=2.0)
        except TransportError:
            await asyncio.sleep(0.05)
            continue
        try:
            await transport.receive(5.0)  # the car's greeting
            await transport.send(
                codec.encode(FastProof(nonce=os.urandom(16), cryptogram=os.urandom(32)))
            )
            await transport.receive(5.0)  # Fallback
            while not stop.is_set():
                await transport.send(codec.encode(Record(ciphertext=os.urandom(48))))
                await asyncio.sleep(0.2)
        except (TransportError, OSError):
            pass
        finally:
            await transport.close()


@pytest.mark.slow
def test_the_owner_gets_in_during_a_flood_that_holds_every_slot(tmp_path: Path) -> None:
    _, car = make_car(tmp_path / "car")
    agent = Agent(tmp_path / "car")

    async def run() -> tuple[list[float], float]:
        stop = asyncio.Event()
        holders = [asyncio.create_task(_holder(agent.address, stop)) for _ in range(300)]
        await asyncio.sleep(3.0)  # every slot taken, newcomers keep arriving
        times = []
        for i in range(5):
            started = time.perf_counter()
            transport = await tcp.connect(agent.address)
            try:
                (outcome,) = await client.run_commands(
                    transport,
                    car,
                    [Command.UNLOCK if i % 2 else Command.LOCK],
                    entropy=SystemEntropy(),
                    fast=False,
                    persist=lambda key: None,
                )
            finally:
                await transport.close()
            assert outcome.result.ok
            times.append(time.perf_counter() - started)
        # A junk connection holds its slot for the handshake deadline at most (5 s).
        probe = await tcp.connect(agent.address)
        await probe.receive(5.0)  # the car's greeting
        await probe.send(codec.encode(FastProof(nonce=os.urandom(16), cryptogram=os.urandom(32))))
        await probe.receive(5.0)  # Fallback
        held = time.perf_counter()
        try:
            while True:
                await probe.send(codec.encode(Record(ciphertext=os.urandom(48))))
                await asyncio.sleep(0.2)
                if time.perf_counter() - held > 20:
                    break
        except (TransportError, OSError):
            pass
        held = time.perf_counter() - held
        await probe.close()
        stop.set()
        await asyncio.gather(*holders, return_exceptions=True)
        return times, held

    try:
        times, held = asyncio.run(run())
    finally:
        err = agent.stop()
    print(f"\nowner time-to-unlock under a 300-connection flood: {[round(t, 3) for t in times]} s")
    assert max(times) < 3.0, "the owner was kept out"
    assert held < 7.0, f"a junk connection held its slot for {held:.1f} s"
    assert "Traceback" not in err


def test_a_second_agent_on_one_car_is_refused_and_a_stop_is_clean(tmp_path: Path) -> None:
    make_car(tmp_path / "car")
    first = Agent(tmp_path / "car")
    try:
        second = subprocess.run(
            [
                *CLI,
                "vehicle",
                "run",
                "--dir",
                str(tmp_path / "car"),
                "--listen",
                "tcp://127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 2
        assert "already serving the car" in second.stderr and "Traceback" not in second.stderr
        # A head-unit viewer is attached when the agent is told to stop.
        viewer = subprocess.Popen(
            [*CLI, "vehicle", "headunit", "--dir", str(tmp_path / "car")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        first.proc.send_signal(signal.SIGTERM)
        _, err = first.proc.communicate(timeout=15)
        assert first.proc.returncode == 0 and "Traceback" not in err, err
        _, verr = viewer.communicate(timeout=15)
        assert "Traceback" not in verr, verr
    finally:
        first.kill()
    # Secret files are the owner's only.
    for name in ("vehicle.db", "agent.lock"):
        assert (tmp_path / "car" / name).stat().st_mode & 0o077 == 0, name
    assert (tmp_path / "car").stat().st_mode & 0o077 == 0


def test_stored_markup_prints_as_itself(tmp_path: Path) -> None:
    """Text that reached a store before it was checked (an older version, another tool) prints
    literally: no style ends, no traceback."""
    make_car(tmp_path / "car")
    store = VehicleStore.open(tmp_path / "car")
    store.audit(now=time.time(), key_id=None, command="[bold]", result="error", detail="[/red]x")
    store.close()
    shown = tether("vehicle", "audit", "--dir", str(tmp_path / "car"))
    assert "[/red]x" in shown.stdout and "[bold]" in shown.stdout
