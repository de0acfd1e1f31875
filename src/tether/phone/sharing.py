"""What travels between phones when a key is shared: key requests and grant bundles."""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

import cbor2

from tether.errors import MalformedMessage, UsageError
from tether.phone.wallet import CarKey, IssuedGrant, KeyStatus, PhoneWallet
from tether.protocol.credentials import (
    MAX_CHAIN,
    SERIAL_SIZE,
    Grant,
    GrantError,
    Limits,
    decode_chain,
    encode_chain,
    issue_grant,
    issue_revocation,
    parse_grant,
    verify_chain,
)
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

    chain: list[bytes]
    leaf: Grant
    vehicle_key: PublicKey
    vehicle_name: str
    address: str
    #: The root grant's signer (the owner), so that the friend's phone can check every signature
    #: of the chain before it stores anything; None in bundles made before it was carried.
    owner_key: PublicKey | None = None

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
        return LINK_PREFIX + base64.urlsafe_b64encode(self.encode()).decode().rstrip("=")


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
    return REQUEST_LINK_PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=")


def read_request(data: bytes | str) -> KeyRequest:
    """A key request from a file's bytes or a tether://key-request/ link."""
    if isinstance(data, str):
        if not data.startswith(REQUEST_LINK_PREFIX):
            raise UsageError("a key request link starts with tether://key-request/")
        encoded = data[len(REQUEST_LINK_PREFIX) :]
        try:
            data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise UsageError("the key request link is damaged") from None
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
        if not data.startswith(LINK_PREFIX):
            raise UsageError("a grant link starts with tether://grant/")
        encoded = data[len(LINK_PREFIX) :]
        try:
            data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise UsageError("the grant link is damaged") from None
    obj = _load(data, BUNDLE_KIND, "grant")
    try:
        chain = decode_chain(_bytes(obj.get("chain")))
        leaf = parse_grant(chain[-1])
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
        if owner_key.key_id != parse_grant(chain[0]).issuer_id:
            raise UsageError("the grant's owner key did not sign it")
    return Bundle(
        chain=chain,
        leaf=leaf,
        vehicle_key=vehicle_key,
        vehicle_name=name,
        address=address,
        owner_key=owner_key,
    )


def issue(
    issuer: CarKey,
    request: KeyRequest,
    *,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    limits: Limits,
    serial: bytes,
    now: int,
) -> Bundle:
    """Sign a grant for ``request`` from ``issuer``: the owner's key, or a granted key with share.

    A sub-grant inherits the issuer's chain; asking for more than the issuer holds is refused here
    with a sentence (the car would refuse it anyway).
    """
    chain: list[bytes] = []
    parent: Grant | None = None
    if issuer.role != "owner":
        if issuer.credential is None:
            raise UsageError("this key has no grant to share from")
        chain = decode_chain(issuer.credential)
        parent = parse_grant(chain[-1])
        if "share" not in parent.rights:
            raise UsageError("your key does not carry the right to share")
        if not rights <= parent.rights:
            raise UsageError(f"you can only pass on rights you hold: {sorted(parent.rights)}")
        not_before, expires = max(not_before, parent.not_before), min(expires, parent.expires)
        if not limits.within(parent.limits):
            limits = parent.limits
    grant = issue_grant(
        issuer.endpoint_key,
        grantee=request.key,
        vehicle_id=issuer.vehicle_id,
        rights=rights,
        not_before=not_before,
        expires=expires,
        serial=serial,
        issued_at=now,
        limits=limits,
        parent=parent,
        label=request.label,
    )
    return Bundle(
        chain=[*chain, grant],
        leaf=parse_grant(grant),
        vehicle_key=issuer.vehicle_key,
        vehicle_name=issuer.vehicle_name,
        address=issuer.address,
        owner_key=issuer.endpoint_key.public_key if issuer.role == "owner" else None,
    )


def grant(
    issuer: CarKey,
    request: KeyRequest,
    *,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    limits: Limits,
    now: int,
) -> tuple[Bundle, IssuedGrant]:
    """Sign a grant with a fresh serial; the bundle to send and the record for the wallet."""
    serial = os.urandom(SERIAL_SIZE)
    bundle = issue(
        issuer,
        request,
        rights=rights,
        not_before=not_before,
        expires=expires,
        limits=limits,
        serial=serial,
        now=now,
    )
    record = IssuedGrant(
        serial=serial,
        car=issuer.name,
        grantee_id=request.key.key_id,
        label=request.label,
        rights=rights,
        not_before=float(bundle.leaf.not_before),
        not_after=float(bundle.leaf.expires),
        issued_at=float(now),
        revoked_seq=None,
    )
    return bundle, record


def accept(wallet: PhoneWallet, bundle: Bundle, *, name: str, now: float) -> CarKey:
    """Store a received grant for the key this phone requested; refuse foreign or expired ones.

    Everything is checked before anything is bound: the chain's signatures (the owner's too, when
    the bundle carries the owner's key), that it narrows at every step, the window, and that it
    names a key this phone asked for. A bad file changes nothing, so the genuine one still works.
    """
    leaf = bundle.leaf
    check_bundle(bundle, now=now)
    key = wallet.take_request(leaf.grantee.key_id)
    if key is None:
        raise UsageError("this grant is for a key this phone did not request (a foreign grant)")
    name, replaces = _name_for(wallet, bundle, name)
    car = wallet.add_car(
        name=name,
        replaces=replaces,
        vehicle_key=bundle.vehicle_key,
        vehicle_name=bundle.vehicle_name,
        address=bundle.address,
        endpoint_key=key,
        role="friend" if len(bundle.chain) == 1 else "delegate",
        rights=leaf.rights,
        not_before=float(leaf.not_before),
        not_after=float(leaf.expires),
        limits=leaf.limits,
        credential=encode_chain(bundle.chain),
        now=now,
    )
    wallet.drop_request(leaf.grantee.key_id)
    return car


def _name_for(wallet: PhoneWallet, bundle: Bundle, wanted: str) -> tuple[str, str | None]:
    """The new key's name, and the refused key of the same car it replaces (if any).

    A key the car refused (revoked) can never work again, so a new grant for that car takes its
    place instead of sitting beside it as a second key; otherwise a default name gets a suffix.
    """
    cars = {c.name: c for c in wallet.cars()}
    base = wanted or bundle.vehicle_name
    dead = cars.get(base)
    if (
        dead is not None
        and dead.status is KeyStatus.REVOKED
        and dead.vehicle_key.encoded == bundle.vehicle_key.encoded
    ):
        return base, base
    if wanted:
        return wanted, None  # a name the person chose: add_car says if it is taken
    name, suffix = base, 2
    while name in cars:
        name, suffix = f"{base} ({suffix})", suffix + 1
    return name, None


def check_bundle(bundle: Bundle, *, now: float) -> None:
    """The car's own checks of a credential, as far as a phone can make them (UsageError)."""
    if now >= bundle.leaf.expires:
        raise UsageError("this grant has already expired")
    owner = bundle.owner_key
    if owner is None:
        # A bundle a friend re-shared (its phone does not hold the owner's key): the shape was
        # checked when it was read; the signatures are the car's to check at first use.
        return
    starts = max(parse_grant(g).not_before for g in bundle.chain)
    try:
        verify_chain(
            bundle.chain,
            vehicle_id=bundle.vehicle_key.key_id,
            owner_key=lambda key_id: owner if key_id == owner.key_id else None,
            is_revoked=lambda _: False,  # the car knows; the phone cannot
            now=max(now, float(starts)),
            max_depth=MAX_CHAIN,
        )
    except GrantError as exc:
        raise UsageError(f"this grant is damaged or forged ({exc.code}): {exc.message}") from None


def make_revocation(
    wallet: PhoneWallet, car: CarKey, *, keys: list[bytes], serials: list[bytes], now: float
) -> tuple[int, bytes]:
    """(Owner) Sign a revocation of ``keys`` and ``serials`` with the next sequence number."""
    if car.role != "owner":
        raise UsageError("only an owner key can revoke")
    seq = wallet.next_revocation_seq(now)
    raw = issue_revocation(
        car.endpoint_key,
        vehicle_id=car.vehicle_id,
        seq=seq,
        keys=keys,
        grants=serials,
        issued_at=int(now),
    )
    return seq, raw
