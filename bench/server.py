"""The server past one machine: 10,000 cars each on its own MQTT connection, against raw engines.

Starts a Mosquitto configured by `tether mosquitto-setup` (no anonymous clients, a login and topic
rules per car, the cars' logins preloaded in bulk) and `tether server` processes on one PostgreSQL
(a fresh database ``tether_bench``). Every simulated car is its own MQTT connection, logged in as
that car with the password the server derives for it; it verifies every envelope (signature,
counter, expiry, as the agent does) and signs its result. Each figure has its raw engine,
measured in the same run:

- remote command p50/p99 (one signed POST that answers with the car's signed result) against the
  transport floor: a raw MQTT request/response to the same car through the same broker, plus a
  raw HTTP request to the same server stack (its health route);
- commands per second with N phones at once on one instance, then spread over two;
- revocation fan-out: one owner-signed revocation per car through the fleet bulk API (1,000 per
  request), until every car has its own, against a raw publish of the same messages to the same
  topics;
- telemetry: one signed state from every car, until PostgreSQL holds them all, against a COPY of
  the very same rows into a table of the same shape;
- memory: the broker's and the simulator's per connected car, and the server's (no per-car state).

Set-up (registering cars, owners and a fleet) writes the database directly; only the measured
paths go through the API. Ends with exactly one line:
``relay_p99_over_floor=R1 revoke_fanout_over_raw=R2 telemetry_over_copy=R3``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
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

from tether.cloud import db, mosquitto
from tether.link import topics
from tether.link.client import signed_headers as client_headers
from tether.protocol import credentials, remote
from tether.protocol.commands import Command
from tether.protocol.crypto import PrivateKey, PublicKey, SystemEntropy

console = Console()


RAW = b"RAW:"  # the floor's payloads: not tether messages (the server ignores them)


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
    """Simulated cars, each on an MQTT connection of its own, logged in as that car."""

    def __init__(self, cars: list[SimCar], host: str, port: int, keys: dict[str, str]) -> None:
        self.cars = {c.vid: c for c in cars}
        self.host, self.port, self.keys = host, port, keys
        self.clients: dict[bytes, aiomqtt.Client] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.revoked: dict[bytes, float] = {}
        self.all_revoked = asyncio.Event()
        self.expected = 0

    async def connect(self) -> None:
        async def one(car: SimCar) -> None:
            client = aiomqtt.Client(
                self.host,
                self.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                username=topics.CAR_PREFIX + car.vid.hex(),
                password=mosquitto.car_password(self.keys["cars"], car.vid),
                timeout=60,
                keepalive=300,
                socket_options=topics.NO_DELAY,
            )
            await client.__aenter__()
            await client.subscribe(topics.down(car.vid), qos=1)
            self.clients[car.vid] = client
            self.tasks.append(asyncio.create_task(self._serve(car, client)))

        sem = asyncio.Semaphore(200)

        async def limited(car: SimCar) -> None:
            async with sem:
                await one(car)

        await asyncio.gather(*(limited(c) for c in self.cars.values()))

    async def _serve(self, car: SimCar, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                await self._handle(car, client, bytes(message.payload))
        except aiomqtt.MqttError:
            pass
        except Exception:  # a bench bug must show, not hang the run
            console.print_exception()
            raise

    async def _handle(self, car: SimCar, client: aiomqtt.Client, payload: bytes) -> None:
        if payload.startswith(RAW):  # the floor: echo on the car's own uplink
            await client.publish(topics.up(car.vid), payload, qos=0)
            return
        decoded = topics.decode(payload)
        if decoded is None:
            return
        if decoded.get("t") == "revocation":
            if car.vid not in self.revoked:
                self.revoked[car.vid] = time.perf_counter()
                if len(self.revoked) >= self.expected:
                    self.all_revoked.set()
            return
        raw = decoded["raw"]
        env = remote.verify_envelope(
            raw,
            vehicle_id=car.vid,
            endpoint_key=car.endpoint_key,
            last_counter=car.last_counter,
            now=time.time(),
        )
        car.counters[env.key_id] = env.counter
        result = remote.sign_result(
            car.key, raw, ok=True, reason="", message="Done.", now=int(time.time())
        )
        await client.publish(
            topics.up(car.vid),
            topics.encode({"t": "result", "body": result}),
            qos=topics.qos("result"),
        )

    @staticmethod
    def states(cars: list[SimCar], now: int) -> list[bytes]:
        """One signed state per car (signed ahead: the cars' crypto is not the server's)."""
        return [
            remote.sign_state(car.key, {"Vehicle.Speed": 0, "Vehicle.Bench": 1}, now=now)
            for car in cars
        ]

    async def report_state(self, cars: list[SimCar], bodies: list[bytes]) -> None:
        """Each of ``cars`` publishes its state at once, as the agent does on a change."""
        sem = asyncio.Semaphore(1000)

        async def one(car: SimCar, body: bytes) -> None:
            async with sem:
                await self.clients[car.vid].publish(
                    topics.up(car.vid), topics.encode({"t": "state", "body": body}), qos=1
                )

        await asyncio.gather(*(one(c, b) for c, b in zip(cars, bodies, strict=True)))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()

        async def leave(client: aiomqtt.Client) -> None:
            with contextlib.suppress(aiomqtt.MqttError, Exception):
                await client.__aexit__(None, None, None)

        await asyncio.gather(*(leave(c) for c in self.clients.values()))


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


async def raw_floor(
    client: aiomqtt.Client,
    http: httpx.AsyncClient,
    car: SimCar,
    waiters: dict[bytes, asyncio.Future[None]],
) -> float:
    """The transport floor: an MQTT request/response to the same car through the same broker,
    plus a plain HTTP request to the same server stack (its health route, one database read)."""
    nonce = RAW + secrets.token_hex(8).encode()
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters[nonce] = future
    started = time.perf_counter()
    await client.publish(topics.down(car.vid), nonce, qos=0)
    await asyncio.wait_for(future, 10)
    (await http.get("/v1/health")).raise_for_status()
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss(pid: int | str = "self") -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Instance:
    """One `tether server` process on the bench's database and broker."""

    def __init__(self, work: Path, db_url: str, mqtt: str, secrets_file: Path) -> None:
        self.port = free_port()
        self.log = (work / f"server-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tether", "server", "--dir", str(work)),
                *("--listen", f"http://127.0.0.1:{self.port}", "--db", db_url),
                *("--mqtt", mqtt, "--mqtt-secrets", str(secrets_file)),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise SystemExit(f"server did not start: {line!r} (log: {self.log.name})")
        self.url = line.split()[1]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)
        self.log.close()


class Broker:
    """A Mosquitto set up by `tether mosquitto-setup`, the cars' logins preloaded."""

    def __init__(self, work: Path, cars: list[SimCar]) -> None:
        self.port = free_port()
        top = work / "mqtt"
        files = mosquitto.setup(top, port=self.port)
        self.secrets = files["secrets"]
        self.keys = mosquitto.read_secrets(self.secrets)
        mosquitto.preload_cars(files["dynamic_security"], self.keys, [c.vid for c in cars])

        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(files["config"])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                break
            if time.monotonic() > deadline:
                raise SystemExit("mosquitto did not start")
            time.sleep(0.05)
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def fresh_database(admin: str) -> str:
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS tether_bench WITH (FORCE)"))
        conn.execute(sa.text("CREATE DATABASE tether_bench"))
    engine.dispose()
    url = admin.rsplit("/", 1)[0] + "/tether_bench"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return url


async def throughput(
    urls: list[str], cars: list[SimCar], concurrency: int, seconds: float
) -> float:
    """Commands per second with ``concurrency`` phones sending one after the other, spread over
    ``urls``; each phone has cars of its own (its counters only grow)."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def phone(index: int) -> None:
        nonlocal done
        mine = cars[index::concurrency]
        async with httpx.AsyncClient(base_url=urls[index % len(urls)], timeout=30) as http:
            n = 0
            while time.perf_counter() < stop_at:
                await relay_round_trip(http, mine[n % len(mine)])
                done += 1
                n += 1

    started = time.perf_counter()
    await asyncio.gather(*(phone(i) for i in range(concurrency)))
    return done / (time.perf_counter() - started)


async def telemetry_rates(fleet: Fleet, cars: list[SimCar], url: str) -> tuple[float, float]:
    """Rows per second: signed states through the broker and the server into PostgreSQL, and a
    COPY of the very same rows into a table of the same shape (index included)."""
    engine = db.make_engine(url)
    try:

        def count() -> int:
            with engine.begin() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM telemetry")).scalar() or 0)

        before = await asyncio.to_thread(count)
        bodies = fleet.states(cars, int(time.time()))
        started = time.perf_counter()
        await fleet.report_state(cars, bodies)
        while await asyncio.to_thread(count) < before + len(cars):
            await asyncio.sleep(0.05)
            if time.perf_counter() - started > 600:
                raise SystemExit("the server stored too few states")
        served = len(cars) / (time.perf_counter() - started)

        def copy() -> float:
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("SELECT vehicle_id, at, state::text FROM telemetry")
                rows = cur.fetchall()
                cur.execute("CREATE TABLE bench_copy (LIKE telemetry INCLUDING DEFAULTS)")
                cur.execute("CREATE INDEX ON bench_copy (vehicle_id, at)")
                raw.commit()
                began = time.perf_counter()
                with cur.copy("COPY bench_copy (vehicle_id, at, state) FROM STDIN") as out:
                    for row in rows:
                        out.write_row(row)
                raw.commit()
                return len(rows) / (time.perf_counter() - began)
            finally:
                raw.close()

        return served, await asyncio.to_thread(copy)
    finally:
        engine.dispose()


async def main(args: argparse.Namespace) -> None:
    # One socket per car, here and in the broker (which inherits the limit).
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="tether-bench-server-"))
    work.chmod(0o711)  # the broker's user reads its files below
    console.print(f"Making {args.cars} car identities and owners...")
    cars = [SimCar() for _ in range(args.cars)]
    fleet_key = SystemEntropy().new_private_key()
    db_url = fresh_database(args.pg)
    setup_database(db_url, cars, fleet_key)
    broker = Broker(work, cars)
    one = Instance(work, db_url, broker.url, broker.secrets)
    two: Instance | None = None
    fleet = Fleet(cars, "127.0.0.1", broker.port, broker.keys)
    try:
        broker_idle, sim_idle = rss(broker.proc.pid), rss()
        console.print(f"Connecting {args.cars} cars, each on its own MQTT connection, as itself...")
        began = time.perf_counter()
        await fleet.connect()
        connect_s = time.perf_counter() - began
        # Mosquitto's RSS hardly moves per connection (its heap is already there): the whole
        # resident size over the cars is an upper bound, the growth a lower one.
        broker_busy = rss(broker.proc.pid)
        broker_per_car = broker_busy / args.cars
        broker_growth = (broker_busy - broker_idle) / args.cars
        sim_per_car = (rss() - sim_idle) / args.cars
        server_rss = rss(one.proc.pid)

        # -- remote command latency vs the transport floor ---------------------------------
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=30) as http,
            aiomqtt.Client(
                "127.0.0.1",
                broker.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                username=topics.SERVER_USER,
                password=broker.keys["server"],
                socket_options=topics.NO_DELAY,
            ) as requester,
        ):
            waiters: dict[bytes, asyncio.Future[None]] = {}
            await requester.subscribe(topics.UPLINK_FILTER, qos=0)

            async def route() -> None:
                async for message in requester.messages:
                    future = waiters.pop(bytes(message.payload), None)
                    if future is not None and not future.done():
                        future.set_result(None)

            router = asyncio.create_task(route())
            for car in cars[:20]:  # warm-up
                await relay_round_trip(http, car)
                await raw_floor(requester, http, car, waiters)
            relay: list[float] = []
            floor: list[float] = []
            for i in range(args.commands):
                car = cars[(i * 7919) % len(cars)]
                relay.append(await relay_round_trip(http, car))
                floor.append(await raw_floor(requester, http, car, waiters))
            router.cancel()

        # -- commands per second: one instance, then two ----------------------------------
        console.print("Throughput, one instance, then two...")
        rate_one = await throughput([one.url], cars, args.concurrency, args.seconds)
        two = Instance(work, db_url, broker.url, broker.secrets)
        rate_two = await throughput([one.url, two.url], cars, args.concurrency, args.seconds)

        # -- revocation fan-out vs raw publishing ------------------------------------------
        console.print(f"Revocation fan-out to {args.cars} cars...")
        revocations = [
            credentials.issue_revocation(
                c.owner, vehicle_id=c.vid, seq=1, keys=[os.urandom(16)], issued_at=int(time.time())
            )
            for c in cars
        ]
        fleet.expected = len(cars)
        fleet.revoked.clear()
        fleet.all_revoked.clear()
        path = f"/v1/fleets/{fleet_key.public_key.key_id.hex()}/revocations"
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=one.url, timeout=300) as http:
            for i in range(0, len(revocations), 1000):  # one batch after the other
                chunk = revocations[i : i + 1000]
                body = json.dumps({"revocations": [b64(r) for r in chunk]}).encode()
                response = await http.post(
                    path, content=body, headers=signed_headers(fleet_key, "POST", path, "", body)
                )
                response.raise_for_status()
            posted_s = time.perf_counter() - started
        await asyncio.wait_for(fleet.all_revoked.wait(), 600)
        fanout_s = max(fleet.revoked.values()) - started

        fleet.revoked.clear()
        fleet.all_revoked.clear()
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            protocol=aiomqtt.ProtocolVersion.V5,
            username=topics.SERVER_USER,
            password=broker.keys["server"],
            socket_options=topics.NO_DELAY,
        ) as publisher:
            started = time.perf_counter()
            for car, revocation in zip(cars, revocations, strict=True):
                await publisher.publish(
                    topics.down(car.vid),
                    topics.encode({"t": "revocation", "raw": revocation}),
                    qos=1,
                )
            await asyncio.wait_for(fleet.all_revoked.wait(), 600)
        raw_fanout_s = max(fleet.revoked.values()) - started

        # -- telemetry rows per second vs COPY ---------------------------------------------
        console.print(f"Telemetry: one signed state from each of {args.cars} cars...")
        served_rows, copy_rows = await telemetry_rates(fleet, cars, db_url)
    except BaseException:
        console.print(f"[red]failed; the servers' logs are in {work}[/red]")
        raise
    finally:
        await fleet.close()
        one.stop()
        if two is not None:
            two.stop()
        broker.stop()

    table = Table(
        "measure", "p50 ms", "p99 ms", title=f"{args.cars} cars online, {args.commands} commands"
    )
    table.add_row(
        "remote command via the server (HTTP + MQTT, signed both ways, stored)",
        f"{statistics.median(relay) * 1000:.2f}",
        f"{pct(relay, 0.99) * 1000:.2f}",
    )
    table.add_row(
        "floor: raw MQTT request/response + raw HTTP request, same broker and server",
        f"{statistics.median(floor) * 1000:.2f}",
        f"{pct(floor, 0.99) * 1000:.2f}",
    )
    console.print(table)
    other = Table("measure", "value", title="throughput, fan-out, telemetry, memory")
    other.add_row(f"commands/s, one instance ({args.concurrency} phones)", f"{rate_one:.0f}")
    other.add_row("commands/s, two instances", f"{rate_two:.0f}")
    other.add_row(f"revocation fan-out to {args.cars} cars via the server, s", f"{fanout_s:.3f}")
    other.add_row("  of which the bulk requests were answered, s", f"{posted_s:.3f}")
    other.add_row("raw publish of the same messages to the same topics, s", f"{raw_fanout_s:.3f}")
    other.add_row("telemetry rows/s through the broker and the server", f"{served_rows:.0f}")
    other.add_row("COPY of the same rows, rows/s", f"{copy_rows:.0f}")
    other.add_row(f"connecting {args.cars} cars, s", f"{connect_s:.1f}")
    other.add_row(
        "broker memory per connected car, KiB (all of its RSS / growth)",
        f"{broker_per_car / 1024:.1f} / {broker_growth / 1024:.1f}",
    )
    other.add_row("simulator memory per car (aiomqtt client), KiB", f"{sim_per_car / 1024:.1f}")
    other.add_row(
        "server process memory (holds no per-car state), MiB", f"{server_rss / 2**20:.0f}"
    )
    console.print(other)
    print(
        f"relay_p99_over_floor={pct(relay, 0.99) / pct(floor, 0.99):.2f} "
        f"revoke_fanout_over_raw={fanout_s / raw_fanout_s:.2f} "
        f"telemetry_over_copy={served_rows / copy_rows:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--cars", type=int, default=10_000, help="cars online, each connected")
    parser.add_argument("--commands", type=int, default=300, help="remote commands to time")
    parser.add_argument("--concurrency", type=int, default=32, help="phones in the rate test")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each rate test")
    parser.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL admin URL (the bench makes a database tether_bench)",
    )
    asyncio.run(main(parser.parse_args()))
