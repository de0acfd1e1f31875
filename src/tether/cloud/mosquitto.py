"""Mosquitto configured by tether: no anonymous clients, a login and topic rules per car and per
Home Assistant credential, through Mosquitto's dynamic-security plugin.

``tether server mosquitto-setup --dir D`` writes D/mosquitto.conf, the plugin's initial
D/dynamic-security.json (an admin, the server's login, every default denied) and D/mqtt-secrets.json
(0600). ``tether server --mqtt mqtt://HOST:PORT --mqtt-secrets D/mqtt-secrets.json`` then adds each
car as it registers (``car:<id>``, a password derived from the secrets, only its own topics) and
each Home Assistant login as an owner makes it (only that owner's cars' state), over the plugin's
``$CONTROL`` topic. Every server instance that holds the same secrets derives the same passwords.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether import storage
from tether.errors import UsageError
from tether.link import topics

log = logging.getLogger(__name__)

PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)
CONTROL = "$CONTROL/dynamic-security/v1"
ADMIN_USER = "tether-admin"
_ITERATIONS = 101  # what mosquitto_ctrl uses; the passwords are 256-bit random or derived


def _hashed(password: str) -> dict[str, Any]:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
    }


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def car_password(car_secret: str, vehicle_id: bytes) -> str:
    """A car's Mosquitto password: derived from the deployment's secret, the same everywhere."""
    return hmac.new(car_secret.encode(), b"car " + vehicle_id, hashlib.sha256).hexdigest()


def car_role(vehicle_id: bytes) -> tuple[str, list[dict[str, Any]]]:
    """A car's role: publish on its own uplink and Home Assistant topics, read its own downlink."""
    vid = vehicle_id.hex()
    return f"car-{vid}", [
        _acl("publishClientSend", f"{topics.PREFIX}/{vid}/up"),
        _acl("publishClientSend", f"{topics.PREFIX}/{vid}/ha/#"),
        _acl("publishClientSend", f"{topics.DISCOVERY_PREFIX}/+/tether_{vid}/#"),
        _acl("subscribeLiteral", f"{topics.PREFIX}/{vid}/down"),
        _acl("publishClientReceive", f"{topics.PREFIX}/{vid}/down"),
    ]


def preload_cars(dynsec: Path, keys: dict[str, str], vehicle_ids: Iterable[bytes]) -> int:
    """Write car logins into a broker's plugin file while it is stopped (bulk provisioning,
    e.g. a fleet moving in); the same logins and rules ``add_car`` makes one by one."""
    document = json.loads(dynsec.read_text())
    known = {c["username"] for c in document["clients"]}
    added = 0
    for vehicle_id in vehicle_ids:
        username = topics.CAR_PREFIX + vehicle_id.hex()
        if username in known:
            continue
        role, acls = car_role(vehicle_id)
        document["roles"].append({"rolename": role, "acls": acls})
        password = car_password(keys["cars"], vehicle_id)
        document["clients"].append(
            {"username": username, "roles": [{"rolename": role}], **_hashed(password)}
        )
        added += 1
    owner = dynsec.stat()
    fresh = dynsec.with_suffix(".new")  # whole or not at all: a crash leaves the old file
    _write_private(fresh, json.dumps(document))
    with contextlib.suppress(PermissionError):
        os.chown(fresh, owner.st_uid, owner.st_gid)  # still the broker user's file
    with open(fresh, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(fresh, dynsec)
    return added


def setup(directory: Path, *, port: int = 1883, plugin: str | None = None) -> dict[str, Path]:
    """Write a Mosquitto configuration for tether into ``directory``; the files written."""
    plugin = plugin or next((p for p in PLUGIN_PATHS if Path(p).exists()), None)
    if plugin is None:
        raise UsageError(
            "Mosquitto's dynamic-security plugin was not found (Debian: package mosquitto)"
        )
    secret_file = directory / "mqtt-secrets.json"
    if secret_file.exists():
        raise UsageError(f"{directory} already holds a Mosquitto set-up; use another --dir")
    storage.private_dir(directory)
    # The broker's own files live apart from the server's secrets: Mosquitto started as root
    # drops to its own user, which must read and rewrite the plugin's file (and nothing else).
    broker_dir = storage.private_dir(directory / "broker")
    conf, dynsec = broker_dir / "mosquitto.conf", broker_dir / "dynamic-security.json"
    keys = {k: secrets.token_urlsafe(32) for k in ("admin", "server", "cars")}
    everything = [
        _acl("publishClientSend", "#"),
        _acl("publishClientReceive", "#"),
        _acl("subscribePattern", "#"),
    ]
    control = [
        _acl("publishClientSend", f"{CONTROL}/#"),
        _acl("publishClientReceive", f"{CONTROL}/#"),
        _acl("subscribePattern", f"{CONTROL}/#"),
    ]
    document = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {"username": ADMIN_USER, "roles": [{"rolename": "admin"}], **_hashed(keys["admin"])},
            {
                "username": topics.SERVER_USER,
                "roles": [{"rolename": "tether-server"}],
                **_hashed(keys["server"]),
            },
        ],
        "roles": [
            {"rolename": "admin", "acls": control},
            {"rolename": "tether-server", "acls": everything},
        ],
        "groups": [],
    }
    _write_private(dynsec, json.dumps(document, indent=1))
    _write_private(secret_file, json.dumps(keys))
    _write_private(
        conf,
        "\n".join(
            [
                "# Written by `tether server mosquitto-setup`: no anonymous clients; every login",
                "# and topic rule is tether's, kept by the dynamic-security plugin.",
                f"listener {port} 127.0.0.1",
                "allow_anonymous false",
                f"plugin {plugin}",
                f"plugin_opt_config_file {dynsec}",
                "persistence false",
                "",
            ]
        ),
    )
    _hand_to_broker_user(directory, broker_dir, (conf, dynsec))
    return {"config": conf, "dynamic_security": dynsec, "secrets": secret_file}


def _hand_to_broker_user(top: Path, broker_dir: Path, files: tuple[Path, ...]) -> None:
    """When run as root, give the broker's files to the user Mosquitto drops to."""
    if os.geteuid() != 0:
        return
    import pwd

    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    top.chmod(0o711)  # others may pass through to broker/, not list or read the secrets
    for path in (broker_dir, *files):
        os.chown(path, user.pw_uid, user.pw_gid)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_secrets(path: Path) -> dict[str, str]:
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the MQTT secrets in {path}: {exc}") from None
    if not isinstance(keys, dict) or not {"admin", "server", "cars"} <= set(keys):
        raise UsageError(f"{path} is not a file written by `tether server mosquitto-setup`")
    return {k: str(v) for k, v in keys.items()}


class DynamicSecurity:
    """The server's admin session to the plugin: add cars and Home Assistant logins."""

    def __init__(self, host: str, port: int, keys: dict[str, str]) -> None:
        self.host, self.port, self.keys = host, port, keys
        self._lock = asyncio.Lock()

    def car_login(self, vehicle_id: bytes) -> tuple[str, str]:
        return topics.CAR_PREFIX + vehicle_id.hex(), car_password(self.keys["cars"], vehicle_id)

    async def _send(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import aiomqtt

        correlation = secrets.token_hex(8)
        for number, command in enumerate(commands):
            command["correlationData"] = f"{correlation}-{number}"
        async with (
            self._lock,
            aiomqtt.Client(
                self.host,
                self.port,
                username=ADMIN_USER,
                password=self.keys["admin"],
                protocol=aiomqtt.ProtocolVersion.V5,
                timeout=5.0,
            ) as client,
        ):
            await client.subscribe(f"{CONTROL}/response", qos=1)
            await client.publish(CONTROL, json.dumps({"commands": commands}), qos=1)
            async with asyncio.timeout(5.0):
                async for message in client.messages:
                    answer = json.loads(bytes(message.payload))
                    responses = answer.get("responses", [])
                    mine = [
                        r
                        for r in responses
                        if str(r.get("correlationData", "")).startswith(correlation)
                    ]
                    if mine:
                        return mine
        return []  # pragma: no cover - the timeout above raises first

    async def add_car(self, vehicle_id: bytes) -> None:
        """The car's login and its topics only (idempotent: replaced on each registration)."""
        role, acls = car_role(vehicle_id)
        username, password = self.car_login(vehicle_id)
        await self._replace(role, acls, username, password)

    async def add_home_assistant(
        self, username: str, password: str | None, vehicle_ids: Iterable[bytes]
    ) -> None:
        """A Home Assistant login that receives only these cars' discovery and state."""
        acls = [
            _acl("subscribePattern", f"{topics.DISCOVERY_PREFIX}/#"),
            _acl("subscribePattern", f"{topics.PREFIX}/+/ha/#"),
        ]
        for vid in sorted(v.hex() for v in vehicle_ids):
            acls.append(_acl("publishClientReceive", f"{topics.DISCOVERY_PREFIX}/+/tether_{vid}/#"))
            acls.append(_acl("publishClientReceive", f"{topics.PREFIX}/{vid}/ha/#"))
        await self._replace(f"ha-{username}", acls, username, password)

    async def remove(self, username: str, role: str) -> None:
        await self._send(
            [
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": role},
            ]
        )

    async def _replace(
        self, role: str, acls: list[dict[str, Any]], username: str, password: str | None
    ) -> None:
        commands: list[dict[str, Any]] = [
            {"command": "deleteRole", "rolename": role},
            {"command": "createRole", "rolename": role, "acls": acls},
        ]
        if password is not None:
            commands += [
                {"command": "deleteClient", "username": username},
                {
                    "command": "createClient",
                    "username": username,
                    "password": password,
                    "roles": [{"rolename": role}],
                },
            ]
        else:
            commands.append({"command": "addClientRole", "username": username, "rolename": role})
        answers = await self._send(commands)
        failed = [
            a
            for a in answers
            if a.get("error") and a.get("command") not in ("deleteRole", "deleteClient")
        ]
        if failed:
            log.warning("Mosquitto refused %s: %s", role, failed[0].get("error"))
