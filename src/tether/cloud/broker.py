"""An embedded MQTT broker (amqtt, MQTT 3.1.1) so `tether server` runs with nothing else installed.

For real deployments point the server at Mosquitto or EMQX (MQTT 5) with ``--mqtt``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt's broker on a loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1884) -> None:
        self.host, self.port = host, port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt311://{self.host}:{self.port}"

    async def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # amqtt's own deprecations are not ours to fix
            from amqtt.broker import Broker

            self._broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
            await self._broker.start()
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        log.info("embedded broker on %s", self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
