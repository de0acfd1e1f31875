"""Key requests and grant bundles: what a friend's phone and an owner's phone hand each other
(as a file, a link or a QR code), and what the server's mailbox carries; read strictly, once."""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2

from tether.errors import GrantError, MalformedMessage, UsageError
from tether.link.b64 import b64, unb64
from tether.protocol.credentials import Grant, encode_chain, read_credential
from tether.protocol.crypto import PublicKey

REQUEST_KIND = "tether/key-request"
BUNDLE_KIND = "tether/grant"
LINK_PREFIX = "tether://grant/"
_MAX_FILE = 16 * 1024


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeyRequest:
    """A friend's new public key, to be named in a grant."""

    key: PublicKey
    label: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A credential and what the friend's phone needs to reach the car."""

    #: The credential's grants, root first, each decoded once when the bundle was read or made.
    grants: tuple[Grant, ...]
    vehicle_key: PublicKey
    vehicle_name: str
    address: str
    #: The root grant's signer (the owner), so that the friend's phone can check every signature
    #: of the chain before it stores anything; None in bundles made before it was carried.
    owner_key: PublicKey | None = None

    @property
    def chain(self) -> list[bytes]:
        """The grants as signed (the credential the car is shown)."""
        return [grant.raw for grant in self.grants]

    @property
    def leaf(self) -> Grant:
        """The grant given to this bundle's holder."""
        return self.grants[-1]

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "kind": BUNDLE_KIND,
            "v": 1,
            "chain": encode_chain(self.chain),
            "vehicle_key": self.vehicle_key.encoded,
            "vehicle_name": self.vehicle_name,
            "address": self.address,
        }
        if self.owner_key is not None:
            body["owner_key"] = self.owner_key.encoded
        return cbor2.dumps(body, canonical=True)

    def link(self) -> str:
        return LINK_PREFIX + b64(self.encode())


def _bytes(value: Any) -> bytes:
    return value if type(value) is bytes else b""


def _load(data: bytes, kind: str, what: str) -> dict[str, Any]:
    if len(data) > _MAX_FILE:
        raise UsageError(f"this {what} is too large to be one")
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # any garbage: one clear sentence
        raise UsageError(f"this is not a tether {what} (not CBOR)") from exc
    if type(obj) is not dict or obj.get("kind") != kind or obj.get("v") != 1:
        raise UsageError(f"this is not a tether {what}")
    return obj


REQUEST_LINK_PREFIX = "tether://key-request/"


def make_request(key: PublicKey, label: str) -> bytes:
    return cbor2.dumps({"kind": REQUEST_KIND, "v": 1, "key": key.encoded, "label": label[:64]})


def request_link(data: bytes) -> str:
    """A key request as a link (for a message or a QR code)."""
    return REQUEST_LINK_PREFIX + b64(data)


def _unlink(link: str, prefix: str, what: str) -> bytes:
    if not link.startswith(prefix):
        raise UsageError(f"a {what} link starts with {prefix}")
    try:
        return unb64(link[len(prefix) :])
    except MalformedMessage:
        raise UsageError(f"the {what} link is damaged") from None


def read_request(data: bytes | str) -> KeyRequest:
    """A key request from a file's bytes or a tether://key-request/ link."""
    if isinstance(data, str):
        data = _unlink(data, REQUEST_LINK_PREFIX, "key request")
    obj = _load(data, REQUEST_KIND, "key request")
    label = obj.get("label", "")
    try:
        key = PublicKey(_bytes(obj.get("key")))
    except MalformedMessage:
        raise UsageError("the key request holds no valid public key") from None
    if type(label) is not str:
        raise UsageError("the key request's name is not text")
    return KeyRequest(key=key, label=label[:64])


def read_bundle(data: bytes | str) -> Bundle:
    """A grant bundle from a file's bytes or a tether:// link."""
    if isinstance(data, str):
        if data.startswith("tether://invite/"):
            raise UsageError(
                "this is an invitation, not a grant: answer it with `phone request-key LINK`"
            )
        data = _unlink(data, LINK_PREFIX, "grant")
    obj = _load(data, BUNDLE_KIND, "grant")
    try:
        grants = tuple(read_credential(_bytes(obj.get("chain"))))
        leaf = grants[-1]
        vehicle_key = PublicKey(_bytes(obj.get("vehicle_key")))
    except (GrantError, MalformedMessage) as exc:
        raise UsageError(f"the grant is damaged: {exc.message}") from None
    if vehicle_key.key_id != leaf.vehicle_id:
        raise UsageError("the grant names a different car than the key it came with")
    name, address = obj.get("vehicle_name"), obj.get("address")
    if type(name) is not str or type(address) is not str:
        raise UsageError("the grant's car name or address is malformed")
    owner_key = None
    if "owner_key" in obj:
        try:
            owner_key = PublicKey(_bytes(obj.get("owner_key")))
        except MalformedMessage:
            raise UsageError("the grant's owner key is damaged") from None
        if owner_key.key_id != grants[0].issuer_id:
            raise UsageError("the grant's owner key did not sign it")
    return Bundle(
        grants=grants,
        vehicle_key=vehicle_key,
        vehicle_name=name,
        address=address,
        owner_key=owner_key,
    )
