"""The cloud relay under load: remote commands with 1,000 cars online, revocation fan-out to 10,000.

Runs `tether server` as its own process against a real broker (Mosquitto, mqtt://127.0.0.1:1883 by
default) and simulates the cars in this process: each car is an MQTT connection that verifies
every envelope (signature, counter, expiry, as the agent does) and signs its result.

- relay: phones send signed remote commands through the server's HTTP API (one POST that answers
  with the car's signed result); round trip p50/p99 over a raw MQTT request/response between this
  process and the same simulated cars through the same broker (no HTTP, no crypto, no database);
- fan-out: the operator posts one owner-signed revocation for each of 10,000 cars (bulk, 1,000
  per request); time until every car received its own, over raw publishing of the same payloads
  to the same topics.

Set-up (registering the cars, their owners and the fleet) writes the server's SQLite database
directly; only the measured paths go through the API. Ends with exactly one line:
``relay_p99_over_mqtt=R1 revoke_fanout_over_raw=R2``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from tether.cloud import db, topics
from tether.cloud.client import signed_headers as client_headers
from tether.protocol import credentials, remote
from tether.protocol.commands import Command
from tether.protocol.crypto import PrivateKey, PublicKey, SystemEntropy

console = Console()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimCar:
    """One car's identity and its owner's key."""

    def __init__(self) -> None:
        entropy = SystemEntropy()
        self.key = entropy.new_private_key()
        self.owner = entropy.new_private_key()
        self.vid = self.key.public_key.key_id
        self.counters: dict[bytes, int] = {}

    def endpoint_key(self, key_id: bytes) -> PublicKey | None:
        return self.owner.public_key if key_id == self.owner.public_key.key_id else None

    def last_counter(self, key_id: bytes) -> int:
        return self.counters.get(key_id, 0)


class Fleet:
    """Many simulated cars sharing a few MQTT connections (``per_conn`` cars each)."""

    def __init__(self, cars: list[SimCar], host: str, port: int, per_conn: int) -> None:
        self.cars = {c.vid: c for c in cars}
        self.host, self.port, self.per_conn = host, port, per_conn
        self.clients: list[aiomqtt.Client] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.revoked: dict[bytes, float] = {}
        self.all_revoked = asyncio.Event()
        self.raw_seen: dict[bytes, float] = {}
        self.all_raw = asyncio.Event()
        self.expected = 0

    async def connect(self) -> None:
        cars = list(self.cars.values())
        groups = [cars[i : i + self.per_conn] for i in range(0, len(cars), self.per_conn)]

        async def one(group: list[SimCar]) -> None:
            client = aiomqtt.Client(
                self.host,
                self.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                timeout=30,
                socket_options=topics.NO_DELAY,
            )
            await client.__aenter__()
            for car in group:
                await client.subscribe(topics.down(car.vid), qos=1)
                await client.subscribe(f"bench/raw/{car.vid.hex()}/req", qos=0)
                await client.subscribe(f"bench/fan/{car.vid.hex()}", qos=1)
            self.clients.append(client)
            self.tasks.append(asyncio.create_task(self._serve(client)))

        sem = asyncio.Semaphore(50)

        async def limited(group: list[SimCar]) -> None:
            async with sem:
                await one(group)

        await asyncio.gather(*(limited(g) for g in groups))

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            await self._loop(client)
        except aiomqtt.MqttError:
            pass
        except Exception:  # a bench bug must show, not hang the run
            console.print_exception()
            raise

    async def _loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = bytes(message.payload)
            if topic.startswith("bench/raw/"):
                await client.publish(topic[:-3] + "resp", payload, qos=0)
                continue
            if topic.startswith("bench/fan/"):
                self._count_raw(bytes.fromhex(topic.split("/")[2]))
                continue
            vid = topics.vehicle_of(topic)
            decoded = topics.decode(payload)
            if vid is None or decoded is None:
                continue
            car = self.cars[vid]
            if decoded.get("t") == "revocation":
                if vid not in self.revoked:
                    self.revoked[vid] = time.perf_counter()
                    if len(self.revoked) >= self.expected:
                        self.all_revoked.set()
                continue
            raw = decoded["raw"]
            env = remote.verify_envelope(
                raw,
                vehicle_id=vid,
                endpoint_key=car.endpoint_key,
                last_counter=car.last_counter,
                now=time.time(),
            )
            car.counters[env.key_id] = env.counter
            result = remote.sign_result(
                car.key, raw, ok=True, reason="", message="Done.", now=int(time.time())
            )
            await client.publish(
                topics.up(vid),
                topics.encode({"t": "result", "body": result}),
                qos=topics.qos("result"),
            )

    def _count_raw(self, vid: bytes) -> None:
        if vid not in self.raw_seen:
            self.raw_seen[vid] = time.perf_counter()
            if len(self.raw_seen) >= self.expected:
                self.all_raw.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for client in self.clients:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)


def setup_database(url: str, cars: list[SimCar], fleet_key: PrivateKey) -> None:
    """Register cars, owners and one fleet holding every car (set-up only, not measured)."""
    engine = db.make_engine(url)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(db.principals),
            [
                {
                    "key_id": c.vid,
                    "public_key": c.key.public_bytes,
                    "kind": "vehicle",
                    "created_at": now,
                }
                for c in cars
            ]
            + [
                {
                    "key_id": c.owner.public_key.key_id,
                    "public_key": c.owner.public_bytes,
                    "kind": "phone",
                    "created_at": now,
                }
                for c in cars
            ]
            + [
                {
                    "key_id": fleet_key.public_key.key_id,
                    "public_key": fleet_key.public_bytes,
                    "kind": "fleet",
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            sa.insert(db.vehicles),
            [
                {
                    "vehicle_id": c.vid,
                    "public_key": c.key.public_bytes,
                    "name": "sim",
                    "address": "",
                    "registered_at": now,
                    "last_seen": now,
                    "state": {},
                    "state_at": 0.0,
                }
                for c in cars
            ],
        )
        conn.execute(
            sa.insert(db.members),
            [
                {
                    "vehicle_id": c.vid,
                    "key_id": c.owner.public_key.key_id,
                    "role": "owner",
                    "not_after": None,
                    "revoked": False,
                }
                for c in cars
            ],
        )
        conn.execute(
            sa.insert(db.fleets).values(
                fleet_id=fleet_key.public_key.key_id, name="bench", created_at=now
            )
        )
        conn.execute(
            sa.insert(db.fleet_vehicles),
            [
                {"fleet_id": fleet_key.public_key.key_id, "vehicle_id": c.vid, "added_at": now}
                for c in cars
            ],
        )
    engine.dispose()


def signed_headers(
    key: PrivateKey, method: str, path: str, query: str, body: bytes
) -> dict[str, str]:
    headers = client_headers(key, method, path, query, body, now=time.time())
    headers["Content-Type"] = "application/json"
    return headers


async def relay_round_trip(http: httpx.AsyncClient, car: SimCar) -> float:
    started = time.perf_counter()
    counter = car.counters.get(car.owner.public_key.key_id, 0) + 1 + int(time.time() * 1000)
    envelope = remote.sign_envelope(
        car.owner, vehicle_id=car.vid, command=Command.LOCK, counter=counter, now=int(time.time())
    )
    path = f"/v1/vehicles/{car.vid.hex()}/commands"
    body = json.dumps({"envelope": b64(envelope)}).encode()
    # One round trip, as the phone does it: the POST answers with the car's signed result.
    answer = await http.post(
        path,
        params={"wait": "10"},
        content=body,
        headers=signed_headers(car.owner, "POST", path, "wait=10", body),
    )
    answer.raise_for_status()
    result = answer.json()
    assert result["status"] == "done", result
    remote.verify_result(
        base64.urlsafe_b64decode(result["result"] + "=" * (-len(result["result"]) % 4)),
        vehicle_key=car.key.public_key,
        envelope_raw=envelope,
    )
    return time.perf_counter() - started


async def raw_round_trip(
    client: aiomqtt.Client, car: SimCar, waiters: dict[str, asyncio.Future[None]]
) -> float:
    topic = f"bench/raw/{car.vid.hex()}"
    nonce = secrets.token_hex(8)
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters[nonce] = future
    started = time.perf_counter()
    await client.publish(topic + "/req", nonce.encode(), qos=0)
    await asyncio.wait_for(future, 10)
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    host, port, _ = topics.parse_broker(args.mqtt)
    work = Path(tempfile.mkdtemp(prefix="tether-bench-server-"))
    http_port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether.cli",
            "server",
            "--dir",
            str(work),
            "--listen",
            f"http://127.0.0.1:{http_port}",
            "--mqtt",
            args.mqtt,
        ],
        stdout=subprocess.PIPE,
        stderr=(work / "server.log").open("w"),
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("ready "):
        server.kill()
        raise SystemExit(f"server did not start: {line!r}")
    base = line.split()[1]
    total = max(args.cars, args.fanout)
    console.print(f"Making {total} car identities and owners...")
    cars = [SimCar() for _ in range(total)]
    fleet_key = SystemEntropy().new_private_key()
    setup_database(db.default_url(work), cars, fleet_key)
    console.print(f"Connecting {total} simulated cars ({args.per_conn} per MQTT connection)...")
    fleet = Fleet(cars, host, port, args.per_conn)
    await fleet.connect()
    relay_cars = cars[: args.cars]
    try:
        # -- remote commands through the relay vs raw MQTT request/response -------------------
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            aiomqtt.Client(
                host, port, protocol=aiomqtt.ProtocolVersion.V5, socket_options=topics.NO_DELAY
            ) as requester,
        ):
            waiters: dict[str, asyncio.Future[None]] = {}
            await requester.subscribe("bench/raw/+/resp", qos=0)

            async def route() -> None:
                async for message in requester.messages:
                    nonce = bytes(message.payload).decode()
                    future = waiters.pop(nonce, None)
                    if future is not None and not future.done():
                        future.set_result(None)

            router = asyncio.create_task(route())
            for car in relay_cars[:20]:  # warm-up
                await relay_round_trip(http, car)
                await raw_round_trip(requester, car, waiters)
            relay: list[float] = []
            raw: list[float] = []
            for i in range(args.commands):
                car = relay_cars[(i * 7919) % len(relay_cars)]
                relay.append(await relay_round_trip(http, car))
                raw.append(await raw_round_trip(requester, car, waiters))
            router.cancel()

        # -- revocation fan-out vs raw publishing ----------------------------------------------
        fan_cars = cars[: args.fanout]
        revocations = [
            credentials.issue_revocation(
                c.owner, vehicle_id=c.vid, seq=1, keys=[os.urandom(16)], issued_at=int(time.time())
            )
            for c in fan_cars
        ]
        fleet.expected = len(fan_cars)
        fleet.revoked.clear()
        fleet.all_revoked.clear()
        path = f"/v1/fleets/{fleet_key.public_key.key_id.hex()}/revocations"
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, timeout=300) as http:

            async def post(chunk: list[bytes]) -> None:
                body = json.dumps({"revocations": [b64(r) for r in chunk]}).encode()
                response = await http.post(
                    path, content=body, headers=signed_headers(fleet_key, "POST", path, "", body)
                )
                response.raise_for_status()

            # One batch after the other, as an operator's phone sends them.
            for i in range(0, len(revocations), 1000):
                await post(revocations[i : i + 1000])
            posted_s = time.perf_counter() - started
        await asyncio.wait_for(fleet.all_revoked.wait(), 600)
        fanout_s = max(fleet.revoked.values()) - started

        fleet.raw_seen.clear()
        fleet.all_raw.clear()
        async with aiomqtt.Client(
            host, port, protocol=aiomqtt.ProtocolVersion.V5, socket_options=topics.NO_DELAY
        ) as publisher:
            started = time.perf_counter()
            for car, revocation in zip(fan_cars, revocations, strict=True):
                await publisher.publish(
                    f"bench/fan/{car.vid.hex()}",
                    topics.encode({"t": "revocation", "raw": revocation}),
                    qos=1,
                )
            await asyncio.wait_for(fleet.all_raw.wait(), 600)
        raw_fanout_s = max(fleet.raw_seen.values()) - started
    except Exception:
        console.print(f"[red]failed; the server's log is {work / 'server.log'}[/red]")
        raise
    finally:
        await fleet.close()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    table = Table(
        "measure", "p50 ms", "p99 ms", title=f"{args.cars} cars online, {args.commands} commands"
    )
    table.add_row(
        "remote command via the server (HTTP + MQTT, signed both ways)",
        f"{statistics.median(relay) * 1000:.2f}",
        f"{pct(relay, 0.99) * 1000:.2f}",
    )
    table.add_row(
        "raw MQTT request/response, same broker and cars",
        f"{statistics.median(raw) * 1000:.2f}",
        f"{pct(raw, 0.99) * 1000:.2f}",
    )
    console.print(table)
    fan = Table("measure", "seconds", title=f"revocation fan-out to {args.fanout} cars")
    fan.add_row(
        "owner-signed revocations via the server (bulk API, verified, stored, pushed)",
        f"{fanout_s:.3f}",
    )
    fan.add_row(
        "  of which the bulk requests were answered (verified and stored)", f"{posted_s:.3f}"
    )
    fan.add_row("raw publish of the same payloads to the same topics", f"{raw_fanout_s:.3f}")
    console.print(fan)
    print(
        f"relay_p99_over_mqtt={pct(relay, 0.99) / pct(raw, 0.99):.2f} "
        f"revoke_fanout_over_raw={fanout_s / raw_fanout_s:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--cars", type=int, default=1000, help="cars online for the relay test")
    parser.add_argument("--fanout", type=int, default=10_000, help="cars for the fan-out test")
    parser.add_argument("--commands", type=int, default=300, help="remote commands to time")
    parser.add_argument("--per-conn", type=int, default=10, help="cars per MQTT connection")
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="the broker (MQTT 5)")
    asyncio.run(main(parser.parse_args()))
