"""Key requests and grant bundles: what a friend's phone and an owner's phone hand each other
(as a file, a link or a QR code), and what the server's mailbox carries; read strictly, once."""

from __future__ import annotations

import dataclasses

from tether.errors import GrantError, MalformedMessage, UsageError
from tether.link.b64 import b64, unb64
from tether.protocol import codec
from tether.protocol.codec import SH, Shape, bstr, shape, tstr, uint
from tether.protocol.credentials import MAX_CREDENTIAL_SIZE, Grant, encode_chain, read_credential
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
        return codec.dump(
            BundleDoc(
                kind=BUNDLE_KIND,
                v=1,
                chain=encode_chain(self.chain),
                vehicle_key=self.vehicle_key.encoded,
                vehicle_name=self.vehicle_name,
                address=self.address,
                owner_key=self.owner_key.encoded if self.owner_key is not None else None,
            )
        )

    def link(self) -> str:
        return LINK_PREFIX + b64(self.encode())


@shape
class RequestDoc(Shape):
    """A key request as a file or link carries it."""

    kind: str = tstr("kind", max_size=32)
    v: int = uint("v", min_value=1, max_value=1)
    key: bytes = bstr("key", size=65)
    label: str | None = tstr("label", max_size=256, default=None)


@shape
class BundleDoc(Shape):
    """A grant bundle as a file, link or the server's mailbox carries it."""

    kind: str = tstr("kind", max_size=32)
    v: int = uint("v", min_value=1, max_value=1)
    chain: bytes = bstr("chain", max_size=MAX_CREDENTIAL_SIZE)
    vehicle_key: bytes = bstr("vehicle_key", size=65)
    vehicle_name: str = tstr("vehicle_name", max_size=256)
    address: str = tstr("address", max_size=512)
    owner_key: bytes | None = bstr("owner_key", size=65, default=None)


def _load(data: bytes, cls: type[SH], kind: str, what: str) -> SH:
    if len(data) > _MAX_FILE:
        raise UsageError(f"this {what} is too large to be one")
    try:
        # Not signed and passed around by people: any encoding of the declared map will do.
        doc = codec.load(data, cls, what, deterministic=False)
    except MalformedMessage as exc:
        raise UsageError(f"this is not a tether {what} ({exc.message})") from None
    if getattr(doc, "kind", None) != kind:
        raise UsageError(f"this is not a tether {what}")
    return doc


REQUEST_LINK_PREFIX = "tether://key-request/"


def make_request(key: PublicKey, label: str) -> bytes:
    return codec.dump(RequestDoc(kind=REQUEST_KIND, v=1, key=key.encoded, label=label[:64]))


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
    doc = _load(data, RequestDoc, REQUEST_KIND, "key request")
    try:
        key = PublicKey(doc.key)
    except MalformedMessage:
        raise UsageError("the key request holds no valid public key") from None
    return KeyRequest(key=key, label=(doc.label or "")[:64])


def read_bundle(data: bytes | str) -> Bundle:
    """A grant bundle from a file's bytes or a tether:// link."""
    if isinstance(data, str):
        if data.startswith("tether://invite/"):
            raise UsageError(
                "this is an invitation, not a grant: answer it with `phone request-key LINK`"
            )
        data = _unlink(data, LINK_PREFIX, "grant")
    doc = _load(data, BundleDoc, BUNDLE_KIND, "grant")
    try:
        grants = tuple(read_credential(doc.chain))
        vehicle_key = PublicKey(doc.vehicle_key)
        owner_key = PublicKey(doc.owner_key) if doc.owner_key is not None else None
    except (GrantError, MalformedMessage) as exc:
        raise UsageError(f"the grant is damaged: {exc.message}") from None
    if vehicle_key.key_id != grants[-1].vehicle_id:
        raise UsageError("the grant names a different car than the key it came with")
    if owner_key is not None and owner_key.key_id != grants[0].issuer_id:
        raise UsageError("the grant's owner key did not sign it")
    return Bundle(
        grants=grants,
        vehicle_key=vehicle_key,
        vehicle_name=doc.vehicle_name,
        address=doc.address,
        owner_key=owner_key,
    )
