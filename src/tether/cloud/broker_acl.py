"""amqtt plugins that bind MQTT sessions to identities and topics (the embedded broker's ACL).

A car logs in as ``car:<id>`` with a fresh signature by its identity key and may use only its own
topics; the server logs in with a per-process secret; Home Assistant logs in with a credential an
owner made and reads only that owner's cars; anonymous clients are refused. The rules are
:func:`tether.link.topics.may`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from typing import Protocol

from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from tether.link import topics
from tether.protocol.crypto import PublicKey


class Directory(Protocol):
    """What the broker asks the server: cars' keys, Home Assistant logins and their cars."""

    def vehicle_key(self, vehicle_id: bytes) -> PublicKey | None: ...

    def ha_login(self, cred_id: bytes, secret: str) -> bool: ...

    def ha_cars(self, cred_id: bytes) -> frozenset[bytes]: ...


#: Per broker (by its port): the server's secret and its directory.
AUTHORITIES: dict[str, tuple[str, Directory]] = {}
HA_CARS_TTL = 5.0  # how long a Home Assistant login's list of cars is trusted (a revoked owner)


def _ha_id(username: str) -> bytes | None:
    text = username[len(topics.HA_PREFIX) :]
    if not username.startswith(topics.HA_PREFIX) or len(text) != 32:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


class TetherAuth(BaseAuthPlugin):
    """Logins: the server's secret, a car's signature, or a Home Assistant credential made by an
    owner. Anonymous clients are refused: no one reads any car's state without standing."""

    @dataclasses.dataclass
    class Config:
        authority: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        secret, directory = AUTHORITIES[str(self._get_config_option("authority", ""))]
        username, password = session.username or "", str(session.password or "")
        if not username:
            return False
        cred = _ha_id(username)
        if cred is not None:
            return await asyncio.to_thread(directory.ha_login, cred, password)
        if username == topics.SERVER_USER:
            return hmac.compare_digest(password.encode(), secret.encode())
        if username.startswith(topics.CAR_PREFIX) and len(username) == len(topics.CAR_PREFIX) + 32:
            try:
                vid = bytes.fromhex(username[len(topics.CAR_PREFIX) :])
            except ValueError:
                return False
            key = await asyncio.to_thread(directory.vehicle_key, vid)
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
        cars: frozenset[bytes] = frozenset()
        cred = _ha_id(username) if username else None
        if cred is not None:
            cars = await self._cars(cred)
        return topics.may(username, topic, str(getattr(action, "value", action)), cars=cars)

    async def _cars(self, cred: bytes) -> frozenset[bytes]:
        cache: dict[bytes, tuple[float, frozenset[bytes]]] = self.__dict__.setdefault("_cache", {})
        hit = cache.get(cred)
        now = time.monotonic()
        if hit is not None and now - hit[0] < HA_CARS_TTL:
            return hit[1]
        _, directory = AUTHORITIES[str(self._get_config_option("authority", ""))]
        cars = await asyncio.to_thread(directory.ha_cars, cred)
        if len(cache) > 1024:
            cache.clear()
        cache[cred] = (now, cars)
        return cars
