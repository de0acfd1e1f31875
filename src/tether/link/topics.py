"""MQTT topics and payloads shared by the server and the cars, and Home Assistant discovery."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import cbor2

from tether.errors import AuthenticationFailed, UsageError
from tether.protocol import vss
from tether.protocol.crypto import PublicKey, Signer

PREFIX = "tether/v1"
UPLINK_FILTER = f"{PREFIX}/+/up"
DISCOVERY_PREFIX = "homeassistant"
MAX_PAYLOAD = 16 * 1024
#: paho-mqtt leaves Nagle's algorithm on: small QoS 1 messages then wait on delayed ACKs (~40 ms).
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: The signals a car reports to the cloud: its body, never the driver's seat or climate profile.
TELEMETRY_SIGNALS = (
    *vss.DOORS,
    vss.TRUNK_OPEN,
    vss.TRUNK_LOCKED,
    vss.POWER,
    vss.POWERTRAIN,
    vss.BATTERY,
    vss.SPEED,
    vss.LATITUDE,
    vss.LONGITUDE,
)


def down(vehicle_id: bytes) -> str:
    """Server → car: revocations and command envelopes (CBOR)."""
    return f"{PREFIX}/{vehicle_id.hex()}/down"


def up(vehicle_id: bytes) -> str:
    """Car → server: signed results, receipts and state (CBOR)."""
    return f"{PREFIX}/{vehicle_id.hex()}/up"


def ha_state(vehicle_id: bytes) -> str:
    """Car → Home Assistant: the car's state as JSON (retained)."""
    return f"{PREFIX}/{vehicle_id.hex()}/ha/state"


def availability(vehicle_id: bytes) -> str:
    return f"{PREFIX}/{vehicle_id.hex()}/ha/availability"


def vehicle_of(topic: str) -> bytes | None:
    """The car a ``tether/v1/<id>/...`` topic is about, or None."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX or len(parts[2]) != 32:
        return None
    try:
        return bytes.fromhex(parts[2])
    except ValueError:
        return None


def qos(kind: str) -> int:
    """QoS for a message kind: 0 for commands and results, whose latency matters and whose truth
    is the server's database (a lost one is found again through the inbox); 1 for the rest.
    (QoS 1 also costs a broker that leaves Nagle on, as Mosquitto does by default, ~40 ms.)"""
    return 0 if kind in ("command", "result") else 1


def encode(message: dict[str, Any]) -> bytes:
    return cbor2.dumps(message, canonical=True)


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def decode(payload: bytes) -> dict[str, Any] | None:
    """A CBOR map from a payload, or None for anything else (garbage on a topic is dropped)."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        obj = cbor2.loads(payload)
    except Exception:  # any garbage
        return None
    return obj if type(obj) is dict else None


def parse_broker(url: str) -> tuple[str, int, int]:
    """(host, port, MQTT protocol level) from mqtt://HOST:PORT (v5) or mqtt311://HOST:PORT."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtt311") or not parts.hostname:
        raise UsageError(f"a broker is mqtt://HOST:PORT, not {url!r}")
    return parts.hostname, parts.port or 1883, 5 if parts.scheme == "mqtt" else 4


def discovery(vehicle_id: bytes, name: str) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery messages (topic → config) for one car: state only.

    The lock is a binary sensor of device class ``lock``: Home Assistant shows it, but cannot
    change it, because every action on the car needs a phone's signature (docs/cloud.md).
    """
    vid = vehicle_id.hex()
    device = {
        "identifiers": [f"tether_{vid}"],
        "name": name,
        "manufacturer": "tether",
        "model": "virtual car" if name else "car",
    }
    common = {
        "state_topic": ha_state(vehicle_id),
        "availability_topic": availability(vehicle_id),
        "device": device,
    }
    entities: dict[str, dict[str, Any]] = {
        f"binary_sensor/tether_{vid}/lock": {
            "name": "Lock",
            "device_class": "lock",
            "value_template": "{{ 'OFF' if value_json.locked else 'ON' }}",
        },
        f"binary_sensor/tether_{vid}/door": {
            "name": "Driver door",
            "device_class": "door",
            "value_template": "{{ 'ON' if value_json.door_open else 'OFF' }}",
        },
        f"binary_sensor/tether_{vid}/trunk": {
            "name": "Trunk",
            "device_class": "opening",
            "value_template": "{{ 'ON' if value_json.trunk_open else 'OFF' }}",
        },
        f"sensor/tether_{vid}/battery": {
            "name": "Battery",
            "device_class": "battery",
            "unit_of_measurement": "%",
            "value_template": "{{ value_json.battery }}",
        },
        f"device_tracker/tether_{vid}/location": {
            "name": "Location",
            "source_type": "gps",
            "json_attributes_topic": ha_state(vehicle_id),
            "json_attributes_template": (
                '{{ {"latitude": value_json.latitude, "longitude": value_json.longitude,'
                ' "gps_accuracy": 10} | tojson }}'
            ),
            "value_template": "{{ 'not_home' }}",
        },
    }
    out = {}
    for path, config in entities.items():
        component, node, obj = path.split("/")
        config = {**common, **config, "unique_id": f"{node}_{obj}", "object_id": f"{node}_{obj}"}
        out[f"{DISCOVERY_PREFIX}/{component}/{node}/{obj}/config"] = config
    return out


def ha_payload(signals: dict[str, Any]) -> bytes:
    """The state Home Assistant reads, from VSS signals (no personal data)."""
    state = {
        "locked": bool(signals.get(vss.DRIVER_DOOR_LOCKED, True)),
        "door_open": bool(signals.get(vss.DRIVER_DOOR_OPEN, False)),
        "trunk_open": bool(signals.get(vss.TRUNK_OPEN, False)),
        "battery": signals.get(vss.BATTERY),
        "latitude": signals.get(vss.LATITUDE),
        "longitude": signals.get(vss.LONGITUDE),
        "speed": signals.get(vss.SPEED, 0),
    }
    return json.dumps(state, sort_keys=True).encode()


# -- who may use which topic (the embedded broker enforces it; docs/cloud.md for Mosquitto) ------
SERVER_USER = "tether-server"
CAR_PREFIX = "car:"
_LOGIN_CONTEXT = b"tether-mqtt-login-v1|"
LOGIN_SKEW = 300


def car_login(key: Signer, now: int) -> tuple[str, str]:
    """MQTT username and password for a car: its id, and a fresh signature by its key."""
    vid = key.public_key.key_id.hex()
    signature = key.sign(_LOGIN_CONTEXT + f"{vid}|{now}".encode())
    return CAR_PREFIX + vid, f"{now}.{base64.urlsafe_b64encode(signature).decode()}"


def check_car_login(username: str, password: str, key: PublicKey, now: float) -> bool:
    """Whether ``password`` is a fresh login signature by the car named in ``username``."""
    vid = username[len(CAR_PREFIX) :]
    stamp, _, encoded = password.partition(".")
    if not username.startswith(CAR_PREFIX) or vid != key.key_id.hex() or not stamp.isdigit():
        return False
    if abs(now - int(stamp)) > LOGIN_SKEW:
        return False
    try:
        key.verify(base64.urlsafe_b64decode(encoded), _LOGIN_CONTEXT + f"{vid}|{stamp}".encode())
    except (ValueError, AuthenticationFailed):
        return False
    return True


HA_PREFIX = "ha:"


def car_of_discovery(topic: str) -> bytes | None:
    """The car a ``homeassistant/<component>/tether_<id>/...`` topic is about, or None."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != DISCOVERY_PREFIX or not parts[2].startswith("tether_"):
        return None
    try:
        vid = bytes.fromhex(parts[2][len("tether_") :])
    except ValueError:
        return None
    return vid if len(vid) == 16 else None


def may(
    username: str | None, topic: str, action: str, *, cars: frozenset[bytes] = frozenset()
) -> bool:
    """The topic rules: the server anything; a car only its own topics; a Home Assistant login
    only what its owner may see (``cars``: the cars that owner holds now): discovery and plain
    state, nothing to publish. Anonymous clients and anyone else: nothing at all."""
    if username == SERVER_USER:
        return True
    parts = topic.split("/")
    if username and username.startswith(CAR_PREFIX):
        vid = username[len(CAR_PREFIX) :]
        own = topic.startswith(f"{PREFIX}/{vid}/")
        if action in {"subscribe", "receive"}:
            return topic == f"{PREFIX}/{vid}/down"
        return (own and parts[3] in ("up", "ha")) or (
            len(parts) >= 3 and parts[0] == DISCOVERY_PREFIX and parts[2] == f"tether_{vid}"
        )
    if not username or not username.startswith(HA_PREFIX) or action == "publish":
        return False
    if action == "subscribe" and topic in (f"{DISCOVERY_PREFIX}/#", f"{PREFIX}/+/ha/#"):
        return True  # the filter is broad; each message is checked as it is delivered
    about = vehicle_of(topic) if topic.startswith(PREFIX) else car_of_discovery(topic)
    if topic.startswith(PREFIX) and (len(parts) < 4 or parts[3] != "ha"):
        return False
    return about is not None and about in cars
