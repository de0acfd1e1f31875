"""Two `tether server` processes on one PostgreSQL and one Mosquitto serve the same cars.

Any request works on either instance; a result the broker hands to one instance wakes the request
waiting on the other at once (LISTEN/NOTIFY, not the safety-net re-read); revocations and grants
posted to either reach the car; one instance killed mid-stream loses no acknowledged command.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cloud.conftest import reset_pg
from tests.cloud.rig import SERVER, Car, Instance, eventually, free_port, make_car, pair_owner, run
from tether.errors import PeerError
from tether.link.b64 import b64
from tether.phone import cloud
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol import remote
from tether.protocol.commands import Command
from tether.protocol.credentials import Limits

SAFETY_NET_S = 5.0  # how long a request would wait without a notification


async def _post(key: CarKey, wallet: PhoneWallet, url: str, which: Command) -> dict[str, object]:
    """POST a signed command and wait for its result (one round trip); the server's answer."""
    envelope = remote.sign_envelope(
        key.endpoint_key,
        vehicle_id=key.vehicle_id,
        command=which,
        counter=wallet.next_remote_counter(key.name, time.time()),
        now=int(time.time()),
    )
    async with cloud.client_for(url, key.endpoint_key) as http:
        answer: dict[str, object] = await http.call(
            "POST",
            f"/v1/vehicles/{key.vehicle_id.hex()}/commands",
            body={"envelope": b64(envelope)},
            params={"wait": 15},
            timeout=25,
        )
    return answer


async def test_two_instances_serve_the_same_cars(
    instances: tuple[Instance, Instance], tmp_path: Path
) -> None:
    a, b = instances
    assert a.health()["listening"] and b.health()["listening"]
    assert a.health()["instance"] != b.health()["instance"]
    cars: list[Car] = []
    wallets: list[PhoneWallet] = []
    keys: list[CarKey] = []
    try:
        for i in range(3):
            car = await make_car(tmp_path / f"car{i}", name=f"Car {i}")
            wallet = PhoneWallet.create(tmp_path / f"owner{i}", name=f"Owner {i}", passphrase="p")
            keys.append(await pair_owner(car, wallet))
            await car.connect(a.url if i % 2 == 0 else b.url, poll=2.0)
            cars.append(car)
            wallets.append(wallet)

        # Commands posted to A and B in turn; the broker hands each result to one of them (one
        # shared subscription), so many results arrive at the instance the request is not
        # waiting on, and must wake it at once.
        async def ready(i: int) -> bool:
            try:
                return (await _post(keys[i], wallets[i], a.url, Command.LOCK))["status"] == "done"
            except Exception:
                return False  # the car has not told the servers about its owner yet

        for i in range(3):
            await eventually(functools.partial(ready, i), timeout=30, every=0.5)
        took: list[float] = []
        for n in range(24):
            i = n % 3
            start = time.monotonic()
            answer = await _post(keys[i], wallets[i], (a, b)[n % 2].url, Command.LOCK)
            took.append(time.monotonic() - start)
            assert answer["status"] == "done"
        assert max(took) < SAFETY_NET_S / 2, took  # nobody waited for the re-read

        # A grant posted to A, fetched from B; a revocation posted to B, applied by the car.
        friend = PhoneWallet.create(tmp_path / "friend", name="Bea", passphrase="b")
        wallets.append(friend)
        link = await cloud.invite(keys[0], a.url, label="Bea")
        await cloud.request_key(friend, link.replace(a.url, b.url), label="Bea", now=time.time())
        now = int(time.time())
        [issued] = await cloud.grant_requests(
            wallets[0],
            keys[0],
            a.url,
            rights=frozenset({"unlock"}),
            not_before=now - 60,
            expires=now + 3600,
            limits=Limits(),
            now=now,
        )
        [bea] = await cloud.fetch_grants(friend, b.url, now=time.time())
        [unlock] = await run(friend, bea.name, Command.UNLOCK)
        assert unlock.result.ok
        await cloud.revoke(
            wallets[0], keys[0], b.url, keys=[], serials=[issued.serial], now=time.time()
        )

        async def applied() -> bool:
            return [s.status for s in await cloud.revocations(keys[0], a.url)] == ["applied"]

        await eventually(applied, timeout=30)
        with pytest.raises(PeerError):
            await run(friend, bea.name, Command.UNLOCK)

        # Commands to both instances while B is killed: every command either instance
        # acknowledged (200 done or 202 pending) ends done; the others were never accepted.
        acknowledged: list[tuple[int, str]] = []
        refused = 0
        b_took = asyncio.Event()

        async def stream(url: str, offset: int) -> None:
            nonlocal refused
            for n in range(30):
                i = (n + offset) % 3
                try:
                    answer = await _post(keys[i], wallets[i], url, Command.LOCK)
                except Exception:
                    refused += 1  # that instance is gone: the phone was told, nothing was taken
                    continue
                acknowledged.append((i, str(answer["id"])))
                if url == b.url and n >= 5:
                    b_took.set()

        async def kill_b() -> None:
            await b_took.wait()
            b.kill()  # mid-stream: requests in flight on B, results perhaps on their way to it

        await asyncio.gather(stream(a.url, 0), stream(b.url, 1), kill_b())
        assert refused > 0 and len(acknowledged) > 30

        async def all_done() -> bool:
            for i, command_id in acknowledged:
                async with cloud.client_for(a.url, keys[i].endpoint_key) as http:
                    state = await http.call("GET", f"/v1/commands/{command_id}")
                if state["status"] != "done":
                    return False
            return True

        await eventually(all_done, timeout=30, every=0.5)
    finally:
        for car in cars:
            with contextlib.suppress(Exception):
                await car.close()
        for wallet in wallets:
            wallet.close()


def _instances_seen(url: str, tries: int = 40) -> set[object]:
    seen = set()
    for _ in range(tries):  # a new connection each time: the kernel spreads them over workers
        with contextlib.suppress(httpx.HTTPError):
            seen.add(httpx.get(f"{url}/v1/health", timeout=5).json()["instance"])
    return seen


def test_workers_share_one_port_and_a_dead_one_is_replaced(
    pg_url: str, broker: tuple[int, Path], tmp_path: Path
) -> None:
    reset_pg(pg_url)
    port, secrets = broker
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [
            *SERVER,
            *("--dir", str(tmp_path), "--listen", url, "--db", pg_url, "--workers", "2"),
            *("--mqtt", f"mqtt://127.0.0.1:{port}", "--mqtt-secrets", str(secrets)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"ready {url} ")
        first = _instances_seen(url)
        assert len(first) == 2
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(children) == 2
        subprocess.run(["kill", "-9", children[0]], check=True)
        deadline = time.monotonic() + 30
        while len(_instances_seen(url, 10) - first) < 1:  # a fresh worker took the dead one's place
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    left = subprocess.run(["pgrep", "-f", f"--listen {url}"], capture_output=True, check=False)
    assert left.stdout == b""  # the workers stopped with their supervisor


def test_several_workers_need_a_shared_database_and_broker(tmp_path: Path) -> None:
    done = subprocess.run(
        [*SERVER, "--dir", str(tmp_path), "--workers", "2"],
        capture_output=True,
        check=False,
        text=True,
    )
    assert done.returncode == 2
    assert "--workers N needs --db postgresql://" in done.stdout + done.stderr
