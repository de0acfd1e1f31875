"""The car's link to the cloud: registration, MQTT push, inbox catch-up, telemetry, audit upload.

Everything the car takes from the cloud is signed by a phone (commands) or an owner (revocations)
and checked by the agent exactly as if it came over Bluetooth; everything it sends is signed by the
car. The link is optional and imported only with ``--server`` (the agent starts fast without it).
When the broker or the server is away the car keeps serving phones, and catches up on its inbox
when they come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

import aiomqtt

from tether.errors import TetherError
from tether.link import topics
from tether.link.b64 import b64, unb64
from tether.link.client import CloudClient
from tether.protocol import remote
from tether.protocol.crypto import sha256
from tether.protocol.names import Role
from tether.vehicle.agent import AgentEvent, AgentEventKind, VehicleAgent

log = logging.getLogger(__name__)

POLL_S = 15.0  # inbox check while MQTT is up (a safety net: pushes are the fast path)
RETRY_S = 1.0  # reconnect and inbox check while MQTT is down (doubled up to MAX_RETRY_S)
MAX_RETRY_S = 60.0
_RESULTS_KEPT = 256
MQTT_TIMEOUT_S = 3.0
MQTT_KEEPALIVE_S = 15


@dataclasses.dataclass(slots=True)
class LinkStats:
    """What the link did (for status pages and tests)."""

    revocations: int = 0
    commands: int = 0
    inbox_checks: int = 0
    mqtt_connects: int = 0


#: The events a car uploads to its owner's audit view.
_UPLOADED = frozenset(
    {
        AgentEventKind.COMMAND,
        AgentEventKind.REFUSED,
        AgentEventKind.REVOKED,
        AgentEventKind.PAIRED,
        AgentEventKind.ERROR,
    }
)


class CloudLink:
    """Connects one car's agent to a tether server and its broker."""

    def __init__(
        self,
        agent: VehicleAgent,
        server: str,
        *,
        address: str = "",
        mqtt: str | None = None,
        poll_interval: float = POLL_S,
    ) -> None:
        self.agent = agent
        self.store = agent.store
        self.vehicle_id = agent.store.vehicle_id
        self.client = CloudClient(server, agent.store.identity)
        self.address = address
        self.mqtt_url = mqtt
        self.poll_interval = poll_interval
        self.stats = LinkStats()
        self.online = asyncio.Event()
        self._mqtt: aiomqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._results: dict[bytes, bytes] = {}  # envelope digest -> signed result (redelivery)
        self._audit_head = -1
        self._dirty = asyncio.Event()
        self._owners: tuple[bytes, ...] = ()
        self._mqtt_login: tuple[str, str] | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register (retrying in the background if the server is away) and start the loops."""
        self.agent.listeners.append(self._on_event)
        self._tasks = [
            asyncio.create_task(self._mqtt_loop()),
            asyncio.create_task(self._poll_loop()),
            asyncio.create_task(self._report_loop()),
        ]

    async def stop(self) -> None:
        # Python 3.11's wait_for (inside aiomqtt) can swallow a cancellation: the loops also
        # check this flag, and the wait below is bounded, so a stop always ends.
        self._stopped = True
        self._dirty.set()
        self.online.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=MQTT_TIMEOUT_S + 2)
        with contextlib.suppress(ValueError):
            self.agent.listeners.remove(self._on_event)
        await self.client.close()

    async def retire(self) -> None:
        """Take the car out of Home Assistant: empty retained discovery and state (a car sold)."""
        client = self._mqtt
        if client is None:
            return
        retained = [*topics.discovery(self.vehicle_id, self.store.name)]
        retained += [topics.ha_state(self.vehicle_id), topics.availability(self.vehicle_id)]
        with contextlib.suppress(aiomqtt.MqttError):
            for topic in retained:
                await client.publish(topic, b"", qos=1, retain=True)

    async def register(self) -> None:
        """Tell the server who this car is and who its owners are (the car's own word)."""
        owners = sorted(
            e.public_key.encoded
            for e in self.store.endpoints()
            if e.role == Role.OWNER and not e.revoked
        )
        answer = await self.client.call(
            "PUT",
            f"/v1/vehicles/{self.vehicle_id.hex()}",
            body={
                "public_key": b64(self.store.identity.public_key.encoded),
                "name": self.store.name,
                "address": self.address,
                "owners": [b64(o) for o in owners],
            },
        )
        self._owners = tuple(owners)
        login = answer.get("mqtt_login")
        if isinstance(login, dict) and {"username", "password"} <= set(login):
            # A broker that cannot check signatures (Mosquitto): the login the server made for us.
            self._mqtt_login = (str(login["username"]), str(login["password"]))
        if self.mqtt_url is None and answer.get("mqtt"):
            self.mqtt_url = str(answer["mqtt"])

    # -- what comes down --------------------------------------------------------------------------
    async def handle(self, message: dict[str, Any]) -> None:
        """One pushed or fetched item: a revocation or a command envelope."""
        kind, raw = message.get("t"), message.get("raw")
        if type(raw) is not bytes or self._stopped:
            # A stopped link acts on nothing, even if a cancellation was swallowed (3.11's
            # wait_for): what it skips waits in the inbox for the next connection.
            return
        if kind == "revocation":
            outcome = self.agent.apply_revocation(raw)
            self.stats.revocations += 1
            receipt = remote.sign_receipt(
                self.store.identity,
                raw,
                seq=outcome.seq,
                ok=outcome.ok,
                reason=outcome.reason,
                now=int(self.agent.now()),
            )
            await self._send("receipt", receipt)
            if outcome.ok:
                await self._maybe_reregister()
        elif kind == "command":
            digest = sha256(raw)
            result = self._results.get(digest)
            if result is None:  # a redelivered envelope gets the first answer again
                result = await self.agent.remote_command(raw)
                self.stats.commands += 1
                self._results[digest] = result
                while len(self._results) > _RESULTS_KEPT:
                    self._results.pop(next(iter(self._results)))
            await self._send("result", result)

    async def _maybe_reregister(self) -> None:
        current = tuple(
            sorted(
                e.public_key.encoded
                for e in self.store.endpoints()
                if e.role == Role.OWNER and not e.revoked
            )
        )
        if current != self._owners:
            with contextlib.suppress(TetherError):
                await self.register()

    async def catch_up(self) -> None:
        """Fetch and handle everything waiting in the inbox."""
        answer = await self.client.call("GET", f"/v1/vehicles/{self.vehicle_id.hex()}/inbox")
        self.stats.inbox_checks += 1
        for text in answer.get("revocations", []):
            await self.handle({"t": "revocation", "raw": unb64(text)})
        for text in answer.get("commands", []):
            await self.handle({"t": "command", "raw": unb64(text)})

    # -- what goes up ---------------------------------------------------------------------------
    async def _send(self, kind: str, body: bytes) -> None:
        """Over MQTT when connected, else over HTTP; both reach the same store on the server."""
        client = self._mqtt
        if client is not None:
            try:
                await client.publish(
                    topics.up(self.vehicle_id),
                    topics.encode({"t": kind, "body": body}),
                    qos=topics.qos(kind),
                )
                return
            except aiomqtt.MqttError:
                pass
        try:
            await self.client.call(
                "POST",
                f"/v1/vehicles/{self.vehicle_id.hex()}/uplink",
                body={"t": kind, "body": b64(body)},
            )
        except TetherError as exc:
            log.info("could not report a %s (the inbox will bring it back): %s", kind, exc)

    def _on_event(self, event: AgentEvent) -> None:
        if event.kind in _UPLOADED:
            self._dirty.set()

    async def report(self) -> None:
        """Publish the car's state (signed, for the server; plain, for Home Assistant) and audit."""
        await self._maybe_reregister()  # a new owner paired, or one was revoked
        signals = self.agent.body.state()
        state = {k: signals[k] for k in topics.TELEMETRY_SIGNALS if k in signals}
        await self._send(
            "state", remote.sign_state(self.store.identity, state, now=int(time.time()))
        )
        client = self._mqtt
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(
                    topics.ha_state(self.vehicle_id), topics.ha_payload(state), qos=1, retain=True
                )
        await self.upload_audit()

    async def upload_audit(self) -> None:
        """Send the audit entries the server does not hold yet (it keeps a copy of the chain)."""
        since = max(self._audit_head, 0)
        entries = self.store.audit_entries(since=since, limit=500)
        if not entries and self._audit_head >= 0:
            return
        answer = await self.client.call(
            "POST",
            f"/v1/vehicles/{self.vehicle_id.hex()}/audit",
            body={"entries": [dataclasses.asdict(e) for e in entries]},
        )
        head = int(answer.get("head", 0))
        if head < since:  # the server has less than we thought (a fresh database): resend
            self._audit_head = head
            await self.upload_audit()
        else:
            self._audit_head = head

    # -- loops ----------------------------------------------------------------------------------
    async def _mqtt_loop(self) -> None:
        delay = RETRY_S
        while not self._stopped:
            started = time.monotonic()
            try:
                if not self.online.is_set():
                    await self.register()
                    self.online.set()
                await self._mqtt_session()
            except TetherError as exc:
                log.info("cloud unreachable (%s); retrying in %.0f s", exc.message, delay)
            except aiomqtt.MqttError as exc:
                log.info("broker unreachable (%s); retrying in %.0f s", exc, delay)
            except Exception:  # the link must outlive any surprise; the car keeps serving phones
                log.exception("cloud link failed; retrying")
            finally:
                self._mqtt = None
            # Back off while the cloud stays away (1 s, 2 s, 4 s ... 60 s); a session that lasted
            # starts again from 1 s. A car on a battery must not hammer a dead broker.
            delay = RETRY_S if time.monotonic() - started > MAX_RETRY_S else delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)

    async def _mqtt_session(self) -> None:
        if not self.mqtt_url:
            await asyncio.sleep(self.poll_interval)
            return
        host, port, level = topics.parse_broker(self.mqtt_url)
        protocol = aiomqtt.ProtocolVersion.V5 if level == 5 else aiomqtt.ProtocolVersion.V311
        will = aiomqtt.Will(topics.availability(self.vehicle_id), b"offline", qos=1, retain=True)
        # The session is bound to the car: its id and a fresh signature (brokers that check it).
        username, password = self._mqtt_login or topics.car_login(
            self.store.identity, int(time.time())
        )
        async with aiomqtt.Client(
            host,
            port,
            protocol=protocol,
            identifier=f"tether-car-{self.vehicle_id.hex()}",
            username=username,
            password=password,
            will=will,
            timeout=MQTT_TIMEOUT_S,  # a broker that died mid-publish must not stall the car
            keepalive=MQTT_KEEPALIVE_S,
            socket_options=topics.NO_DELAY,
        ) as client:
            await client.subscribe(topics.down(self.vehicle_id), qos=1)
            self._mqtt = client
            self.stats.mqtt_connects += 1
            await client.publish(
                topics.availability(self.vehicle_id), b"online", qos=1, retain=True
            )
            for topic, config in topics.discovery(self.vehicle_id, self.store.name).items():
                await client.publish(topic, topics.encode_json(config), qos=1, retain=True)
            await self.catch_up()  # what was queued while we were away
            self._dirty.set()
            async for message in client.messages:
                payload = message.payload
                decoded = topics.decode(bytes(payload)) if isinstance(payload, bytes) else None
                if decoded is not None:
                    await self.handle(decoded)

    async def _poll_loop(self) -> None:
        await self.online.wait()
        while not self._stopped:
            await asyncio.sleep(self.poll_interval if self._mqtt is not None else RETRY_S * 5)
            with contextlib.suppress(TetherError):
                await self.catch_up()

    async def _report_loop(self) -> None:
        await self.online.wait()
        while not self._stopped:
            await self._dirty.wait()
            self._dirty.clear()
            if self._stopped:
                return
            try:
                await self.report()
            except TetherError as exc:
                log.info("could not report state: %s", exc.message)
                await asyncio.sleep(RETRY_S)
                self._dirty.set()
            await asyncio.sleep(0.05)  # coalesce bursts of events
