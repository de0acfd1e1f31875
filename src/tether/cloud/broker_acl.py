"""amqtt plugins that bind MQTT sessions to identities and topics (the embedded broker's ACL).

A car logs in as ``car:<id>`` with a fresh signature by its identity key and may use only its own
topics; the server logs in with a per-process secret; anyone else (Home Assistant) may only read
discovery and plain state. The rules are :func:`tether.cloud.topics.may`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from collections.abc import Callable

from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from tether.cloud import topics
from tether.protocol.crypto import PublicKey

#: Per broker (by its port): the server's secret and how to find a car's public key.
AUTHORITIES: dict[str, tuple[str, Callable[[bytes], PublicKey | None]]] = {}


class TetherAuth(BaseAuthPlugin):
    """Logins: the server's secret, a car's signature, or anonymous (read-only, see TetherAcl)."""

    @dataclasses.dataclass
    class Config:
        authority: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        secret, lookup = AUTHORITIES[str(self._get_config_option("authority", ""))]
        username, password = session.username or "", str(session.password or "")
        if not username:
            return True  # anonymous: the topic plugin keeps it read-only
        if username == topics.SERVER_USER:
            return hmac.compare_digest(password.encode(), secret.encode())
        if username.startswith(topics.CAR_PREFIX) and len(username) == len(topics.CAR_PREFIX) + 32:
            try:
                vid = bytes.fromhex(username[len(topics.CAR_PREFIX) :])
            except ValueError:
                return False
            key = await asyncio.to_thread(lookup, vid)
            return key is not None and topics.check_car_login(username, password, key, time.time())
        return False


class TetherAcl(BaseTopicPlugin):
    """Which topics each login may publish, subscribe to and receive."""

    @dataclasses.dataclass
    class Config:
        authority: str = ""

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: object = None
    ) -> bool | None:
        if topic is None or action is None:
            return False
        username = session.username if session is not None else None
        return topics.may(username, topic, str(getattr(action, "value", action)))
