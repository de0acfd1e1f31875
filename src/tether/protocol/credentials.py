"""Grants and revocations (docs/protocol.md §9): COSE_Sign1 (ES256) over CWT claims, offline.

A **grant** lets the holder of one P-256 key (the CWT ``cnf`` proof-of-possession key) use one car
(``aud``) with some rights, in a time window, under optional limits. The owner signs root grants;
a grant holding the ``share`` right may sign sub-grants that only narrow it, up to a depth the car
sets. A **revocation** is signed by an owner key and names keys and grant serials; it carries a
sequence number that must grow. Everything here is pure: the caller passes the time and looks up
owner keys and revoked ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import cbor2

from tether.errors import AuthenticationFailed, GrantError, MalformedMessage, WireCode
from tether.protocol import codec, cose
from tether.protocol.codec import (
    Shape,
    array,
    bstr,
    hexid,
    item_bytes,
    item_text,
    item_uint,
    nested,
    shape,
    tstr,
    uint,
)
from tether.protocol.cose import Sign1, Signed, open_sign1, sign1
from tether.protocol.crypto import KEY_ID_SIZE, PublicKey, Signer
from tether.protocol.names import RIGHTS, Right

SERIAL_SIZE = 16
MAX_CHAIN = 8
DEFAULT_MAX_DEPTH = 2
MAX_CREDENTIAL_SIZE = 8192
#: At most this many keys and grants in one revocation.
MAX_REVOKED = 256

# CWT claim keys (RFC 8392) and tether's private claims (text keys, as RFC 8392 allows).
ISS, SUB, AUD, EXP, NBF, IAT, CTI, CNF = 1, 2, 3, 4, 5, 6, 7, 8


# -- the declared payloads (docs/protocol.md §9) ----------------------------------------------
@shape
class LimitsClaim(Shape):
    """The ``limits`` claim: hours of day [start, end), weekdays (0 = Monday), km/h."""

    hours: tuple[int, ...] | None = array(
        "hours", item_uint(max_value=24), min_size=2, max_size=2, default=None
    )
    weekdays: tuple[int, ...] | None = array(
        "weekdays", item_uint(max_value=6), max_size=7, default=None
    )
    max_speed: int | None = uint("max_speed", max_value=400, default=None)


@shape
class CoseKey(Shape):
    """An EC2 P-256 COSE_Key (RFC 9053): the grantee's key, by its coordinates."""

    kty: int = uint(1, min_value=2, max_value=2)
    crv: int = uint(-1, min_value=1, max_value=1)
    x: bytes = bstr(-2, size=32)
    y: bytes = bstr(-3, size=32)


@shape
class Confirmation(Shape):
    """The ``cnf`` claim (RFC 8747): the proof-of-possession key."""

    key: CoseKey = nested(1, CoseKey)


@shape
class GrantClaims(Shape):
    """A grant's CWT claims; ids are hex text (CWT's StringOrURI), as every ``aud`` is."""

    iss: bytes = hexid(ISS, size=KEY_ID_SIZE)
    sub: bytes = hexid(SUB, size=KEY_ID_SIZE)
    aud: bytes = hexid(AUD, size=KEY_ID_SIZE)
    exp: int = uint(EXP)
    nbf: int = uint(NBF)
    iat: int = uint(IAT)
    cti: bytes = bstr(CTI, size=SERIAL_SIZE)
    cnf: Confirmation = nested(CNF, Confirmation)
    rights: tuple[str, ...] = array("rights", item_text(max_size=16), min_size=1, max_size=16)
    limits: LimitsClaim | None = nested("limits", LimitsClaim, default=None)
    parent: bytes | None = bstr("parent", size=SERIAL_SIZE, default=None)
    label: str | None = tstr("label", max_size=256, default=None)


@shape
class RevocationClaims(Shape):
    """A revocation's payload: these keys and grant serials, in order ``seq``, for car ``aud``."""

    aud: bytes = hexid("aud", size=KEY_ID_SIZE)
    seq: int = uint("seq", min_value=1)
    keys: tuple[bytes, ...] = array("keys", item_bytes(size=KEY_ID_SIZE), max_size=MAX_REVOKED)
    grants: tuple[bytes, ...] = array("grants", item_bytes(size=SERIAL_SIZE), max_size=MAX_REVOKED)
    iat: int = uint("iat")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Optional limits: hours of day [start, end), weekdays (0 = Monday), max speed in km/h."""

    hours: tuple[int, int] | None = None
    weekdays: frozenset[int] | None = None
    max_speed: int | None = None

    @classmethod
    def from_claim(cls, claim: LimitsClaim | None) -> Limits:
        if claim is None:
            return cls()
        if claim.hours is not None and len(claim.hours) != 2:
            raise GrantError("grant hours are malformed", code=WireCode.GRANT_MALFORMED)
        return cls(
            hours=(claim.hours[0], claim.hours[1]) if claim.hours is not None else None,
            weekdays=frozenset(claim.weekdays) if claim.weekdays is not None else None,
            max_speed=claim.max_speed,
        )

    def to_cbor(self) -> dict[str, Any]:
        """The limits as plain data, the ``limits`` claim's form (stores keep them so)."""
        claim = self.to_claim()
        return {str(k): v for k, v in codec.to_map(claim).items()} if claim else {}

    @classmethod
    def from_cbor(cls, raw: Any) -> Limits:
        """Limits from :meth:`to_cbor`'s form, checked as a grant's claim is."""
        try:
            return cls.from_claim(codec.from_map(LimitsClaim, raw, "grant limits"))
        except MalformedMessage as exc:
            raise GrantError(exc.message, code=WireCode.GRANT_MALFORMED) from None

    def to_claim(self) -> LimitsClaim | None:
        if self.hours is None and self.weekdays is None and self.max_speed is None:
            return None
        return LimitsClaim(
            hours=self.hours,
            weekdays=tuple(sorted(self.weekdays)) if self.weekdays is not None else None,
            max_speed=self.max_speed,
        )

    def hour_set(self) -> frozenset[int]:
        if self.hours is None:
            return frozenset(range(24))
        start, end = self.hours
        return (
            frozenset(range(start, end))
            if start <= end
            else frozenset([*range(start, 24), *range(0, end)])
        )

    def within(self, parent: Limits) -> bool:
        """True if these limits are at least as strict as ``parent``'s."""
        if not self.hour_set() <= parent.hour_set():
            return False
        if parent.weekdays is not None and (
            self.weekdays is None or not self.weekdays <= parent.weekdays
        ):
            return False
        return parent.max_speed is None or (
            self.max_speed is not None and self.max_speed <= parent.max_speed
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Grant(Signed):
    """One decoded grant; its signature is checked only by :func:`verify_chain`."""

    serial: bytes
    vehicle_id: bytes
    issuer_id: bytes
    grantee: PublicKey
    rights: frozenset[str]
    not_before: int
    expires: int
    issued_at: int
    limits: Limits
    parent: bytes | None
    label: str
    signed: Sign1


def issue_grant(
    issuer: Signer,
    *,
    grantee: PublicKey,
    vehicle_id: bytes,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    serial: bytes,
    issued_at: int,
    limits: Limits | None = None,
    parent: Grant | None = None,
    label: str = "",
) -> bytes:
    """Sign a grant (the owner's phone, or a holder of ``share`` for a sub-grant)."""
    unknown = rights - RIGHTS
    if unknown or not rights:
        raise GrantError(f"unknown or no rights: {sorted(unknown)}", code=WireCode.GRANT_BAD_RIGHTS)
    if expires <= not_before:
        raise GrantError("a grant must end after it starts", code=WireCode.GRANT_BAD_WINDOW)
    claims = GrantClaims(
        iss=issuer.public_key.key_id,
        sub=grantee.key_id,
        aud=vehicle_id,
        exp=expires,
        nbf=not_before,
        iat=issued_at,
        cti=serial,
        cnf=Confirmation(
            key=CoseKey(kty=2, crv=1, x=grantee.encoded[1:33], y=grantee.encoded[33:])
        ),
        rights=tuple(sorted(rights)),
        limits=limits.to_claim() if limits is not None else None,
        parent=parent.serial if parent is not None else None,
        label=label[:64] or None,
    )
    return sign1(issuer, codec.dump(claims))


def _open(data: bytes, what: str, code: WireCode) -> Sign1:
    try:
        return open_sign1(data, what)
    except MalformedMessage as exc:
        raise GrantError(exc.message, code=code) from None


def parse_grant(data: bytes) -> Grant:
    """Decode one grant strictly, once (its signature is checked by :func:`verify_chain`)."""
    signed = _open(data, "grant", WireCode.GRANT_MALFORMED)
    try:
        claims = codec.load(signed.payload, GrantClaims, "grant claims")
        key = claims.cnf.key
        grantee = PublicKey(b"\x04" + key.x + key.y)
    except MalformedMessage as exc:
        raise GrantError(exc.message, code=WireCode.GRANT_MALFORMED) from None
    if not set(claims.rights) <= RIGHTS:
        raise GrantError("grant names unknown rights", code=WireCode.GRANT_MALFORMED)
    if signed.kid != claims.iss or claims.sub != grantee.key_id:
        raise GrantError("grant ids do not match its keys", code=WireCode.GRANT_MALFORMED)
    return Grant(
        serial=claims.cti,
        vehicle_id=claims.aud,
        issuer_id=claims.iss,
        grantee=grantee,
        rights=frozenset(claims.rights),
        not_before=claims.nbf,
        expires=claims.exp,
        issued_at=claims.iat,
        limits=Limits.from_claim(claims.limits),
        parent=claims.parent,
        label=claims.label or "",
        signed=signed,
    )


def encode_chain(chain: Sequence[bytes]) -> bytes:
    """A credential: the grants from the owner's root down to the holder's, as a CBOR array."""
    return cbor2.dumps(list(chain), canonical=True)


def decode_chain(data: bytes) -> list[bytes]:
    """A credential's grants as signed, root first: an array of one to eight byte strings."""
    if len(data) > MAX_CREDENTIAL_SIZE:
        raise GrantError("credential is too large", code=WireCode.GRANT_MALFORMED)
    try:
        chain = codec.load_array(
            data,
            item_bytes(max_size=cose.MAX_SIGNED_SIZE),
            "credential",
            min_size=1,
            max_size=MAX_CHAIN,
        )
    except MalformedMessage as exc:
        raise GrantError(exc.message, code=WireCode.GRANT_MALFORMED) from None
    return list(chain)


def read_credential(data: bytes) -> list[Grant]:
    """A credential's grants, each decoded once, root first."""
    return [parse_grant(raw) for raw in decode_chain(data)]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedChain:
    """A verified credential: its leaf grant, checked against every grant above it."""

    leaf: Grant
    grants: tuple[Grant, ...]


def verify_chain(
    grants: Sequence[Grant],
    *,
    vehicle_id: bytes,
    owner_key: Callable[[bytes], PublicKey | None],
    is_revoked: Callable[[bytes], bool],
    now: float,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> VerifiedChain:
    """Check a credential offline; return it, or raise :class:`GrantError` saying why not.

    The root must be signed by an enrolled owner key; each further grant by the key the grant
    above it was given to, which must hold ``share``; rights, window and limits may only narrow.
    """
    if not grants:
        raise GrantError("empty credential", code=WireCode.GRANT_MALFORMED)
    if len(grants) > max_depth:
        raise GrantError(
            f"delegation is {len(grants)} deep; this car allows {max_depth}",
            code=WireCode.GRANT_TOO_DEEP,
        )
    parent: Grant | None = None
    for grant in grants:
        if grant.vehicle_id != vehicle_id:
            raise GrantError("this grant is for another car", code=WireCode.GRANT_WRONG_VEHICLE)
        if parent is None:
            signer = owner_key(grant.issuer_id)
            if signer is None:
                raise GrantError(
                    "the grant's issuer is not an owner of this car",
                    code=WireCode.GRANT_UNKNOWN_ISSUER,
                )
            if grant.parent is not None:
                raise GrantError("a root grant cannot name a parent", code=WireCode.GRANT_MALFORMED)
        else:
            if grant.issuer_id != parent.grantee.key_id or grant.parent != parent.serial:
                raise GrantError(
                    "the chain is broken: wrong issuer or parent", code=WireCode.GRANT_BROKEN_CHAIN
                )
            if Right.SHARE not in parent.rights:
                raise GrantError(
                    "the issuer of a sub-grant may not share", code=WireCode.GRANT_NO_SHARE_RIGHT
                )
            if not grant.rights <= parent.rights:
                raise GrantError(
                    "a sub-grant may not add rights", code=WireCode.GRANT_WIDENS_RIGHTS
                )
            if grant.not_before < parent.not_before or grant.expires > parent.expires:
                raise GrantError(
                    "a sub-grant may not widen the time window", code=WireCode.GRANT_WIDENS_WINDOW
                )
            if not grant.limits.within(parent.limits):
                raise GrantError(
                    "a sub-grant may not loosen its limits", code=WireCode.GRANT_WIDENS_LIMITS
                )
            signer = parent.grantee
        try:
            grant.signed.verify(signer)
        except AuthenticationFailed:
            raise GrantError(
                "a grant's signature does not verify", code=WireCode.GRANT_BAD_SIGNATURE
            ) from None
        ids = (grant.serial, grant.grantee.key_id, grant.issuer_id)
        if any(is_revoked(i) for i in ids):
            raise GrantError("this grant has been revoked", code=WireCode.GRANT_REVOKED)
        if now < grant.not_before:
            raise GrantError("this grant is not valid yet", code=WireCode.GRANT_NOT_YET_VALID)
        if now >= grant.expires:
            raise GrantError("this grant has expired", code=WireCode.GRANT_EXPIRED)
        parent = grant
    return VerifiedChain(leaf=grants[-1], grants=tuple(grants))


# -- revocations ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Revocation(Signed):
    """An owner's signed order: these keys and grants (and everything below them) never again."""

    vehicle_id: bytes
    seq: int
    keys: frozenset[bytes]
    grants: frozenset[bytes]
    issued_at: int
    issuer_id: bytes
    signed: Sign1


def issue_revocation(
    owner: Signer,
    *,
    vehicle_id: bytes,
    seq: int,
    keys: Sequence[bytes] = (),
    grants: Sequence[bytes] = (),
    issued_at: int,
) -> bytes:
    if seq < 1 or not (keys or grants):
        raise GrantError(
            "a revocation needs a sequence number and a target", code=WireCode.REVOCATION_MALFORMED
        )
    claims = RevocationClaims(
        aud=vehicle_id,
        seq=seq,
        keys=tuple(sorted(keys)),
        grants=tuple(sorted(grants)),
        iat=issued_at,
    )
    return sign1(owner, codec.dump(claims))


def parse_revocation(data: bytes) -> Revocation:
    """Decode one revocation strictly, once (:func:`verify_revocation` checks who signed it)."""
    signed = _open(data, "revocation", WireCode.REVOCATION_MALFORMED)
    try:
        claims = codec.load(signed.payload, RevocationClaims, "revocation")
    except MalformedMessage as exc:
        raise GrantError(exc.message, code=WireCode.REVOCATION_MALFORMED) from None
    if not 1 <= len(claims.keys) + len(claims.grants) <= MAX_REVOKED:
        raise GrantError("revocation is malformed", code=WireCode.REVOCATION_MALFORMED)
    return Revocation(
        vehicle_id=claims.aud,
        seq=claims.seq,
        keys=frozenset(claims.keys),
        grants=frozenset(claims.grants),
        issued_at=claims.iat,
        issuer_id=signed.kid,
        signed=signed,
    )


def verify_revocation(
    data: bytes, *, vehicle_id: bytes, owner_key: Callable[[bytes], PublicKey | None]
) -> Revocation:
    """Decode and check a revocation's signature by an owner of this car."""
    revocation = parse_revocation(data)
    if revocation.vehicle_id != vehicle_id:
        raise GrantError(
            "this revocation is for another car", code=WireCode.REVOCATION_WRONG_VEHICLE
        )
    owner = owner_key(revocation.issuer_id)
    if owner is None:
        raise GrantError(
            "revocations must be signed by an owner of this car",
            code=WireCode.REVOCATION_UNKNOWN_ISSUER,
        )
    try:
        revocation.signed.verify(owner)
    except AuthenticationFailed:
        raise GrantError(
            "the revocation's signature does not verify", code=WireCode.REVOCATION_BAD_SIGNATURE
        ) from None
    return revocation
