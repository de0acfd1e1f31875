"""`tether server`: the API, the MQTT relay and (by default) an embedded broker, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tether import storage
from tether.cloud import db, telemetry
from tether.cloud.api import Hub, create_app
from tether.cloud.broker import EmbeddedBroker
from tether.cloud.relay import Relay
from tether.cloud.wakeup import Listener
from tether.errors import UsageError
from tether.link.topics import SERVER_USER

log = logging.getLogger(__name__)
UPKEEP_S = 3600.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Where the server keeps its data and which broker it uses (None: an embedded one)."""

    directory: Path
    listen: str = "http://127.0.0.1:8000"
    database: str | None = None
    mqtt: str | None = None
    embedded_mqtt_port: int = 1884
    #: With --mqtt: the secrets of a Mosquitto that `tether server mosquitto-setup` configured.
    mqtt_secrets: Path | None = None
    #: Share the port with the other workers of `--workers N` (the kernel spreads connections).
    reuse_port: bool = False
    #: Days of telemetry kept (whole monthly partitions dropped past it); 0 keeps everything.
    telemetry_days: float = 400.0


class Server:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` and ``mqtt_url`` once started."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        clock: Callable[[], float] = time.time,
        mount: Callable[[Any], None] | None = None,
    ) -> None:
        self.settings = settings
        self.mount = mount  # adds more routes to the app (the demo's console)
        self.clock = clock
        self.broker: EmbeddedBroker | None = None
        self.relay: Relay | None = None
        self.hub: Hub | None = None
        self.listener: Listener | None = None
        self.url = ""
        self.mqtt_url = settings.mqtt or ""
        self._uvicorn: object | None = None
        self._task: asyncio.Task[None] | None = None
        self._upkeep: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        parts = urlsplit(self.settings.listen)
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"--listen is http://HOST:PORT, not {self.settings.listen!r}")
        port = parts.port if parts.port is not None else 8000
        # Bind first: a port in use is one clear sentence, before anything else has started.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.settings.reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Accepted connections inherit it: the response's head and body go out at once instead of
        # waiting ~40 ms for the client's delayed ACK on every keep-alive request (Nagle).
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            listener.bind((parts.hostname, port))
        except OSError as exc:
            listener.close()
            raise UsageError(
                f"cannot listen on {parts.hostname}:{port} ({exc.strerror}); pick another port"
            ) from None
        storage.private_dir(self.settings.directory)
        url = self.settings.database or db.default_url(self.settings.directory)
        engine = db.make_engine(url)
        await asyncio.to_thread(db.upgrade, engine)
        await asyncio.to_thread(self._maintain, engine)
        self._upkeep = asyncio.create_task(self._upkeep_loop(engine))
        self.hub = Hub(engine=engine, clock=self.clock)
        if Listener.applies(engine):  # results stored by other instances wake requests here
            self.listener = Listener(self.hub, engine)
            await self.listener.start()
        login = await self._broker_login(self.hub)
        self.relay = Relay(self.hub, self.mqtt_url, login=login)
        self.hub.publish = self.relay.publish
        await self.relay.start()
        app = create_app(self.hub)
        app.state.mqtt_url = self.mqtt_url
        if self.mount is not None:
            self.mount(app)
        config = uvicorn.Config(
            app,
            host=parts.hostname,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=5,  # long-polls and sockets may not hold a stop forever
        )
        server = uvicorn.Server(config)
        self._uvicorn = server
        self._task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            if self._task.done():
                await self._task
                raise UsageError(f"cannot listen on {self.settings.listen}")
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.relay.connected.wait(), 5.0)
        log.info("server on %s, broker %s, database %s", self.url, self.mqtt_url, engine.url)

    def _maintain(self, engine: Any) -> None:
        telemetry.maintain(engine, self.clock(), retention_days=self.settings.telemetry_days)

    async def _upkeep_loop(self, engine: Any) -> None:
        """Hourly: next months' telemetry partitions made, old ones dropped (any instance)."""
        while True:
            await asyncio.sleep(UPKEEP_S)
            try:
                await asyncio.to_thread(self._maintain, engine)
            except Exception:  # the database is away: the next hour tries again
                log.warning("telemetry upkeep failed", exc_info=True)

    async def _broker_login(self, hub: Hub) -> tuple[str, str] | None:
        """Start the embedded broker, or read the secrets of a Mosquitto tether set up; the
        server's own broker login."""
        if not self.mqtt_url:
            self.broker = EmbeddedBroker(port=self.settings.embedded_mqtt_port, directory=hub)
            await self.broker.start()
            self.mqtt_url = self.broker.url
            return (SERVER_USER, self.broker.secret)
        if self.settings.mqtt_secrets is None:
            return None
        from tether.cloud import mosquitto
        from tether.link import topics

        keys = mosquitto.read_secrets(self.settings.mqtt_secrets)
        host, port, _ = topics.parse_broker(self.mqtt_url)
        hub.dynsec = mosquitto.DynamicSecurity(host, port, keys)
        return (SERVER_USER, keys["server"])

    async def stop(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True  # type: ignore[attr-defined]
            try:
                await asyncio.wait_for(self._task, 10.0)
            except TimeoutError:
                log.warning("the HTTP server did not stop in 10 s; abandoning it")
        if self.relay is not None:
            await self.relay.stop()
        if self.listener is not None:
            await self.listener.stop()
        if self.broker is not None:
            try:
                await asyncio.wait_for(self.broker.stop(), 10.0)
            except TimeoutError:
                log.warning("the embedded broker did not stop in 10 s; abandoning it")
        if self.hub is not None:
            self.hub.engine.dispose()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
