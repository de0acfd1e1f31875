"""An embedded MQTT broker (amqtt, MQTT 3.1.1) so `tether server` runs with nothing else installed.

For real deployments point the server at Mosquitto or EMQX (MQTT 5) with ``--mqtt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.cloud.broker_acl import Directory


log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt's broker on a loopback port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1884,
        *,
        directory: Directory | None = None,
    ) -> None:
        self.host, self.port = host, port
        #: The server's MQTT password (random per process); cars log in with signatures.
        self.secret = secrets.token_urlsafe(24)
        self.directory = directory
        self._broker: Any = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt311://{self.host}:{self.port}"

    def _plugins(self) -> dict[str, Any]:
        if self.directory is None:  # no identities to check against: an open development broker
            return {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        from tether.cloud.broker_acl import AUTHORITIES

        name = f"{self.host}:{self.port}"
        AUTHORITIES[name] = (self.secret, self.directory)
        return {
            "tether.cloud.broker_acl.TetherAuth": {"authority": name},
            "tether.cloud.broker_acl.TetherAcl": {"authority": name},
        }

    async def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # amqtt's own deprecations are not ours to fix
            from amqtt.broker import Broker

            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                    "plugins": self._plugins(),
                }
            )
            handle = broker.stream_connected
            writers = self._writers

            # amqtt leaves some connections' sockets open when a client goes away or at shutdown:
            # close every one ourselves when its handler ends, and whatever is left at stop().
            async def tracked(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
            ) -> None:
                writers.add(writer)
                sock = writer.get_extra_info("socket")
                if sock is not None:  # small MQTT packets must not wait for delayed ACKs (Nagle)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    await handle(reader, writer, listener_name)
                finally:
                    writers.discard(writer)
                    writer.close()

            broker.stream_connected = tracked
            self._broker = broker
            await broker.start()
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        log.info("embedded broker on %s", self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            # amqtt warns twice, in its own words, of messages queued when it stops (a closing
            # car's last will, with nobody left to hear it): say it once, in ours.
            unsent = _Unsent()
            amqtt_log = logging.getLogger("amqtt.broker")
            amqtt_log.addFilter(unsent)
            try:
                await self._broker.shutdown()
            finally:
                amqtt_log.removeFilter(unsent)
            if unsent.count:
                log.info(
                    "broker stopped; %d queued message(s) had no one left to deliver to",
                    unsent.count,
                )
            self._broker = None
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._writers.clear()


class _Unsent(logging.Filter):
    """Drops amqtt's "N messages not broadcasted" warnings at shutdown, keeping their count."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.endswith("messages not broadcasted"):
            head = text.split(" ", 1)[0]
            self.count = max(self.count, int(head) if head.isdigit() else 1)
            return False
        return True
