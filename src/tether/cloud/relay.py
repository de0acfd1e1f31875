"""The server's side of MQTT: pushes revocations and commands to cars, takes in what they sign.

Publishing is fire-and-forget on purpose: everything pushed is also in the database until the
car's signed receipt or result comes back, and a car asks for its inbox whenever it (re)connects,
so a broker restart or an offline car delays delivery but never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import aiomqtt
from anyio import to_thread

from tether.cloud.api import Hub, accept_uplinks
from tether.link import topics

log = logging.getLogger(__name__)
RECONNECT_S = 0.5
STOP_S = 5.0
#: Uplink messages stored in one transaction at most; a batch is whatever has arrived meanwhile,
#: so one lone result is stored at once and a burst costs one commit per BATCH messages.
BATCH = 500
#: Messages taken off the broker and not yet stored; beyond this the relay stops reading (the
#: broker holds the rest) rather than grow without bound.
BACKLOG = 20_000


class Relay:
    """One MQTT connection for the server process: publish down, subscribe up."""

    def __init__(
        self,
        hub: Hub,
        broker: str,
        *,
        client_id: str = "",
        group: str = "",
        login: tuple[str, str] | None = None,
    ) -> None:
        self.hub = hub
        self.login = login
        # Server processes of one deployment (one database) share the uplink; two deployments
        # on one broker must not take each other's messages.
        url = hub.engine.url.render_as_string(hide_password=True)
        self.group = group or "tether-" + hashlib.sha256(url.encode()).hexdigest()[:12]
        self.host, self.port, self.level = topics.parse_broker(broker)
        self.client_id = client_id
        self._client: aiomqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.received = 0
        self._stopped = False
        self._backlog: asyncio.Queue[tuple[bytes, dict[str, Any]]] = asyncio.Queue(BACKLOG)
        self._store_task: asyncio.Task[None] | None = None

    def publish(self, vehicle_id: bytes, message: dict[str, Any]) -> None:
        """Queue a message for a car; callable from any thread (the API's workers)."""
        loop, client = self._loop, self._client
        if loop is None or client is None:
            return  # the car will find it in its inbox
        payload = topics.encode(message)
        qos = topics.qos(str(message.get("t", "")))

        def go() -> None:
            task = loop.create_task(self._publish(client, topics.down(vehicle_id), payload, qos))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

        loop.call_soon_threadsafe(go)

    @staticmethod
    async def _publish(client: aiomqtt.Client, topic: str, payload: bytes, qos: int) -> None:
        try:
            await client.publish(topic, payload, qos=qos)
        except aiomqtt.MqttError as exc:
            log.info("publish to %s failed (the inbox has it): %s", topic, exc)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.hub.loop = self._loop
        self._task = asyncio.create_task(self._run())
        self._store_task = asyncio.create_task(self._store())

    async def stop(self) -> None:
        self._stopped = True  # 3.11's wait_for can swallow the cancel below; the loop checks this
        for task in (self._task, self._store_task):
            if task is not None:
                task.cancel()
                # A database call in a worker thread cannot be cancelled: do not wait forever.
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, STOP_S)

    async def _run(self) -> None:
        protocol = aiomqtt.ProtocolVersion.V5 if self.level == 5 else aiomqtt.ProtocolVersion.V311
        # With MQTT 5 several server processes share the uplink (each message to one of them).
        uplink = (
            f"$share/{self.group}/{topics.UPLINK_FILTER}"
            if self.level == 5
            else topics.UPLINK_FILTER
        )
        while not self._stopped:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    protocol=protocol,
                    identifier=self.client_id or None,
                    username=self.login[0] if self.login else None,
                    password=self.login[1] if self.login else None,
                    timeout=3.0,
                    keepalive=15,
                    socket_options=topics.NO_DELAY,
                ) as client:
                    await client.subscribe(uplink, qos=1)
                    self._client = client
                    self.connected.set()
                    log.info("relay connected to mqtt://%s:%d", self.host, self.port)
                    async for message in client.messages:
                        await self._handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                log.warning("broker unreachable (%s); retrying", exc)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(RECONNECT_S)

    async def _handle(self, topic: str, payload: Any) -> None:
        vehicle_id = topics.vehicle_of(topic)
        message = topics.decode(bytes(payload)) if isinstance(payload, bytes | bytearray) else None
        if vehicle_id is None or message is None:
            return
        self.received += 1
        await self._backlog.put((vehicle_id, message))

    async def _store(self) -> None:
        """Store what the cars sent, a batch per transaction, in arrival order."""
        while True:
            batch = [await self._backlog.get()]
            while len(batch) < BATCH and not self._backlog.empty():
                batch.append(self._backlog.get_nowait())
            try:
                outcomes = await to_thread.run_sync(accept_uplinks, self.hub, batch)
            except Exception:  # a database hiccup must not stop the relay; the car resends
                log.exception("could not store %d uplink message(s)", len(batch))
                continue
            for (vehicle_id, _), outcome in zip(batch, outcomes, strict=True):
                if outcome not in ("stored", "duplicate"):
                    log.info("uplink from %s dropped: %s", vehicle_id.hex()[:12], outcome)
