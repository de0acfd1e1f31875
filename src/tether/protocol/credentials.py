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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cbor2

from tether.errors import AuthenticationFailed, Code, MalformedMessage, ProtocolError, WireCode
from tether.protocol.crypto import KEY_ID_SIZE, PublicKey, Signer
from tether.protocol.names import RIGHTS

COSE_SIGN1_TAG = 18
ES256 = -7
SERIAL_SIZE = 16
MAX_CHAIN = 8
DEFAULT_MAX_DEPTH = 2
MAX_CREDENTIAL_SIZE = 8192

# CWT claim keys (RFC 8392) and tether's private claims (text keys, as RFC 8392 allows).
ISS, SUB, AUD, EXP, NBF, IAT, CTI, CNF = 1, 2, 3, 4, 5, 6, 7, 8
RIGHTS_CLAIM, LIMITS_CLAIM, PARENT_CLAIM, LABEL_CLAIM = "rights", "limits", "parent", "label"
_GRANT_CLAIMS = {
    ISS,
    SUB,
    AUD,
    EXP,
    NBF,
    IAT,
    CTI,
    CNF,
    RIGHTS_CLAIM,
    LIMITS_CLAIM,
    PARENT_CLAIM,
    LABEL_CLAIM,
}


class GrantError(ProtocolError):
    """A grant, chain or revocation is refused; ``code`` says why (audited, shown to the user)."""

    code: Code = WireCode.GRANT_REFUSED


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Optional limits: hours of day [start, end), weekdays (0 = Monday), max speed in km/h."""

    hours: tuple[int, int] | None = None
    weekdays: frozenset[int] | None = None
    max_speed: int | None = None

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.hours is not None:
            out["hours"] = list(self.hours)
        if self.weekdays is not None:
            out["weekdays"] = sorted(self.weekdays)
        if self.max_speed is not None:
            out["max_speed"] = self.max_speed
        return out

    @classmethod
    def from_cbor(cls, raw: Any) -> Limits:
        if type(raw) is not dict or not set(raw) <= {"hours", "weekdays", "max_speed"}:
            raise GrantError("grant limits are malformed", code=WireCode.GRANT_MALFORMED)
        hours = raw.get("hours")
        if hours is not None and (
            type(hours) is not list
            or len(hours) != 2
            or not all(type(h) is int and 0 <= h <= 24 for h in hours)
        ):
            raise GrantError("grant hours are malformed", code=WireCode.GRANT_MALFORMED)
        days = raw.get("weekdays")
        if days is not None and (
            type(days) is not list or not all(type(d) is int and 0 <= d <= 6 for d in days)
        ):
            raise GrantError("grant weekdays are malformed", code=WireCode.GRANT_MALFORMED)
        speed = raw.get("max_speed")
        if speed is not None and (type(speed) is not int or not 0 <= speed <= 400):
            raise GrantError("grant speed limit is malformed", code=WireCode.GRANT_MALFORMED)
        return cls(
            hours=(hours[0], hours[1]) if hours is not None else None,
            weekdays=frozenset(days) if days is not None else None,
            max_speed=speed,
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
class Grant:
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
    raw: bytes
    protected: bytes
    payload: bytes
    signature: bytes


def _cose_key(key: PublicKey) -> dict[int, Any]:
    return {1: 2, -1: 1, -2: key.encoded[1:33], -3: key.encoded[33:]}


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes an ES256 COSE_Sign1 signature covers (RFC 9052 §4.4, empty external AAD)."""
    return cbor2.dumps(["Signature1", protected, b"", payload], canonical=True)


def sign1(signer: Signer, payload: bytes) -> bytes:
    """A tagged COSE_Sign1 (ES256) over ``payload``, naming the signer's key id as ``kid``."""
    protected = cbor2.dumps({1: ES256}, canonical=True)
    signature = signer.sign(sig_structure(protected, payload))
    message = [protected, {4: signer.public_key.key_id}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, message), canonical=True)


def open_sign1(data: bytes, what: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(protected, kid, payload, signature) of a COSE_Sign1 with ES256, strictly checked."""
    if type(data) is not bytes or len(data) > MAX_CREDENTIAL_SIZE:
        raise GrantError(f"{what} is not a COSE_Sign1 message", code=WireCode.GRANT_MALFORMED)
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # any garbage is ours to refuse
        raise GrantError(f"{what} is not valid CBOR", code=WireCode.GRANT_MALFORMED) from exc
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise GrantError(f"{what} is not a COSE_Sign1 message", code=WireCode.GRANT_MALFORMED)
    parts = list(obj.value) if isinstance(obj.value, list | tuple) else None
    if parts is None or len(parts) != 4:
        raise GrantError(f"{what} is not a COSE_Sign1 message", code=WireCode.GRANT_MALFORMED)
    protected, unprotected, payload, signature = parts
    if (
        type(protected) is not bytes
        or type(payload) is not bytes
        or type(signature) is not bytes
        or not isinstance(unprotected, Mapping)
        or type(unprotected.get(4)) is not bytes
    ):
        raise GrantError(f"{what} has malformed COSE fields", code=WireCode.GRANT_MALFORMED)
    try:
        header = cbor2.loads(protected)
    except Exception as exc:
        raise GrantError(
            f"{what} has a malformed protected header", code=WireCode.GRANT_MALFORMED
        ) from exc
    if header != {1: ES256}:
        raise GrantError(f"{what} must be signed with ES256", code=WireCode.GRANT_MALFORMED)
    return protected, unprotected[4], payload, signature


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
    claims: dict[int | str, Any] = {
        ISS: issuer.public_key.key_id.hex(),
        SUB: grantee.key_id.hex(),
        AUD: vehicle_id.hex(),
        EXP: expires,
        NBF: not_before,
        IAT: issued_at,
        CTI: serial,
        CNF: {1: _cose_key(grantee)},
        RIGHTS_CLAIM: sorted(rights),
    }
    if limits is not None and limits.to_cbor():
        claims[LIMITS_CLAIM] = limits.to_cbor()
    if parent is not None:
        claims[PARENT_CLAIM] = parent.serial
    if label:
        claims[LABEL_CLAIM] = label[:64]
    return sign1(issuer, cbor2.dumps(claims, canonical=True))


def _hex_id(value: Any, name: str) -> bytes:
    if type(value) is not str or len(value) != 2 * KEY_ID_SIZE:
        raise GrantError(f"grant claim {name} is malformed", code=WireCode.GRANT_MALFORMED)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise GrantError(
            f"grant claim {name} is malformed", code=WireCode.GRANT_MALFORMED
        ) from None


def parse_grant(data: bytes) -> Grant:
    """Decode one grant strictly (its signature is checked by :func:`verify_chain`)."""
    protected, kid, payload, signature = open_sign1(data, "grant")
    try:
        claims = cbor2.loads(payload)
    except Exception as exc:
        raise GrantError("grant claims are not valid CBOR", code=WireCode.GRANT_MALFORMED) from exc
    if type(claims) is not dict or not set(claims) <= _GRANT_CLAIMS:
        raise GrantError("grant claims are malformed", code=WireCode.GRANT_MALFORMED)
    ints = [claims.get(k) for k in (EXP, NBF, IAT)]
    if not all(type(v) is int and v >= 0 for v in ints):
        raise GrantError("grant times are malformed", code=WireCode.GRANT_MALFORMED)
    serial = claims.get(CTI)
    if type(serial) is not bytes or len(serial) != SERIAL_SIZE:
        raise GrantError("grant serial is malformed", code=WireCode.GRANT_MALFORMED)
    cnf = claims.get(CNF)
    key = cnf.get(1) if type(cnf) is dict else None
    if type(key) is not dict or key.get(1) != 2 or key.get(-1) != 1:
        raise GrantError(
            "grant proof-of-possession key is malformed", code=WireCode.GRANT_MALFORMED
        )
    x, y = key.get(-2), key.get(-3)
    if type(x) is not bytes or type(y) is not bytes or len(x) != 32 or len(y) != 32:
        raise GrantError(
            "grant proof-of-possession key is malformed", code=WireCode.GRANT_MALFORMED
        )
    try:
        grantee = PublicKey(b"\x04" + x + y)
    except MalformedMessage as exc:
        raise GrantError("grant key is not a P-256 point", code=WireCode.GRANT_MALFORMED) from exc
    rights = claims.get(RIGHTS_CLAIM)
    if type(rights) is not list or not all(type(r) is str for r in rights):
        raise GrantError("grant rights are malformed", code=WireCode.GRANT_MALFORMED)
    if not set(rights) <= RIGHTS or not rights:
        raise GrantError("grant names unknown rights", code=WireCode.GRANT_MALFORMED)
    parent = claims.get(PARENT_CLAIM)
    if parent is not None and (type(parent) is not bytes or len(parent) != SERIAL_SIZE):
        raise GrantError("grant parent is malformed", code=WireCode.GRANT_MALFORMED)
    label = claims.get(LABEL_CLAIM, "")
    if type(label) is not str or len(label) > 64:
        raise GrantError("grant label is malformed", code=WireCode.GRANT_MALFORMED)
    issuer_id = _hex_id(claims.get(ISS), "iss")
    if kid != issuer_id or _hex_id(claims.get(SUB), "sub") != grantee.key_id:
        raise GrantError("grant ids do not match its keys", code=WireCode.GRANT_MALFORMED)
    return Grant(
        serial=serial,
        vehicle_id=_hex_id(claims.get(AUD), "aud"),
        issuer_id=issuer_id,
        grantee=grantee,
        rights=frozenset(rights),
        not_before=claims[NBF],
        expires=claims[EXP],
        issued_at=claims[IAT],
        limits=Limits.from_cbor(claims.get(LIMITS_CLAIM, {})),
        parent=parent,
        label=label,
        raw=data,
        protected=protected,
        payload=payload,
        signature=signature,
    )


def encode_chain(chain: Sequence[bytes]) -> bytes:
    """A credential: the grants from the owner's root down to the holder's, as a CBOR array."""
    return cbor2.dumps(list(chain), canonical=True)


def decode_chain(data: bytes) -> list[bytes]:
    if len(data) > MAX_CREDENTIAL_SIZE:
        raise GrantError("credential is too large", code=WireCode.GRANT_MALFORMED)
    try:
        chain = cbor2.loads(data)
    except Exception as exc:
        raise GrantError("credential is not valid CBOR", code=WireCode.GRANT_MALFORMED) from exc
    if (
        type(chain) is not list
        or not 1 <= len(chain) <= MAX_CHAIN
        or not all(type(g) is bytes for g in chain)
    ):
        raise GrantError("credential must be a list of grants", code=WireCode.GRANT_MALFORMED)
    return chain


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedChain:
    """A verified credential: its leaf grant, checked against every grant above it."""

    leaf: Grant
    grants: tuple[Grant, ...]


def verify_chain(
    chain: Sequence[bytes],
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
    if not chain:
        raise GrantError("empty credential", code=WireCode.GRANT_MALFORMED)
    if len(chain) > max_depth:
        raise GrantError(
            f"delegation is {len(chain)} deep; this car allows {max_depth}",
            code=WireCode.GRANT_TOO_DEEP,
        )
    grants = [parse_grant(raw) for raw in chain]
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
            if "share" not in parent.rights:
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
            signer.verify(grant.signature, sig_structure(grant.protected, grant.payload))
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
class Revocation:
    """An owner's signed order: these keys and grants (and everything below them) never again."""

    vehicle_id: bytes
    seq: int
    keys: frozenset[bytes]
    grants: frozenset[bytes]
    issued_at: int
    issuer_id: bytes
    raw: bytes
    protected: bytes
    payload: bytes
    signature: bytes


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
    body = {
        "aud": vehicle_id.hex(),
        "seq": seq,
        "keys": sorted(keys),
        "grants": sorted(grants),
        "iat": issued_at,
    }
    return sign1(owner, cbor2.dumps(body, canonical=True))


def parse_revocation(data: bytes) -> Revocation:
    protected, kid, payload, signature = open_sign1(data, "revocation")
    try:
        body = cbor2.loads(payload)
    except Exception as exc:
        raise GrantError(
            "revocation is not valid CBOR", code=WireCode.REVOCATION_MALFORMED
        ) from exc
    if type(body) is not dict or set(body) != {"aud", "seq", "keys", "grants", "iat"}:
        raise GrantError("revocation is malformed", code=WireCode.REVOCATION_MALFORMED)
    keys, grants = body["keys"], body["grants"]
    if (
        type(body["seq"]) is not int
        or body["seq"] < 1
        or type(body["iat"]) is not int
        or type(keys) is not list
        or type(grants) is not list
        or not all(type(k) is bytes and len(k) == KEY_ID_SIZE for k in keys)
        or not all(type(g) is bytes and len(g) == SERIAL_SIZE for g in grants)
        or len(keys) + len(grants) == 0
        or len(keys) + len(grants) > 256
        or type(kid) is not bytes
    ):
        raise GrantError("revocation is malformed", code=WireCode.REVOCATION_MALFORMED)
    return Revocation(
        vehicle_id=_hex_id(body["aud"], "aud"),
        seq=body["seq"],
        keys=frozenset(keys),
        grants=frozenset(grants),
        issued_at=body["iat"],
        issuer_id=kid,
        raw=data,
        protected=protected,
        payload=payload,
        signature=signature,
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
        owner.verify(revocation.signature, sig_structure(revocation.protected, revocation.payload))
    except AuthenticationFailed:
        raise GrantError(
            "the revocation's signature does not verify", code=WireCode.REVOCATION_BAD_SIGNATURE
        ) from None
    return revocation
