"""Grants and revocations: what a car accepts offline, and every way a credential is refused."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import GrantError
from tether.protocol import cose, credentials
from tether.protocol.credentials import Limits, issue_grant, verify_chain
from tether.protocol.crypto import DeterministicEntropy, PrivateKey

ENTROPY = DeterministicEntropy(b"credentials")
OWNER = ENTROPY.new_private_key()
FRIEND = ENTROPY.new_private_key()
CHILD = ENTROPY.new_private_key()
GRANDCHILD = ENTROPY.new_private_key()
STRANGER = ENTROPY.new_private_key()
VEHICLE = ENTROPY.new_private_key().public_key.key_id
NOW = 1_800_000_000
DAY = 86_400


def grant(
    issuer: PrivateKey = OWNER,
    grantee: PrivateKey = FRIEND,
    *,
    rights: frozenset[str] = frozenset({"unlock", "lock", "share"}),
    nbf: int = NOW - DAY,
    exp: int = NOW + DAY,
    parent: bytes | None = None,
    limits: Limits | None = None,
    vehicle: bytes = VEHICLE,
    serial: bytes | None = None,
) -> bytes:
    return issue_grant(
        issuer,
        grantee=grantee.public_key,
        vehicle_id=vehicle,
        rights=rights,
        not_before=nbf,
        expires=exp,
        serial=serial or ENTROPY.random_bytes(16),
        issued_at=NOW - DAY,
        limits=limits,
        parent=credentials.parse_grant(parent) if parent else None,
        label="Bea",
    )


def check(
    chain: list[bytes],
    *,
    revoked: frozenset[bytes] = frozenset(),
    now: float = NOW,
    max_depth: int = 2,
) -> credentials.VerifiedChain:
    owners = {OWNER.public_key.key_id: OWNER.public_key}
    return verify_chain(
        [credentials.parse_grant(raw) for raw in chain],  # each decoded once, then verified
        vehicle_id=VEHICLE,
        owner_key=owners.get,
        is_revoked=revoked.__contains__,
        now=now,
        max_depth=max_depth,
    )


def refused(chain: list[bytes], code: str, **kwargs: object) -> None:
    with pytest.raises(GrantError) as info:
        check(chain, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, info.value


def test_a_root_grant_verifies() -> None:
    g = grant(limits=Limits(hours=(7, 22)))
    result = check([g])
    assert result.leaf.grantee == FRIEND.public_key
    assert result.leaf.rights == {"unlock", "lock", "share"}
    assert result.leaf.limits.hours == (7, 22) and result.leaf.label == "Bea"


def _pycose_verify(raw: bytes, signer: PrivateKey) -> bool:
    """Verify with pycose, an independent COSE implementation (RFC 9052)."""
    from pycose.keys.curves import P256
    from pycose.keys.ec2 import EC2Key
    from pycose.messages.sign1message import Sign1Message

    tag = cbor2.loads(raw)
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    # pycose wants a plain dict for the unprotected header (cbor2 6 returns a frozendict).
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    encoded = signer.public_key.encoded
    message.key = EC2Key(crv=P256, x=encoded[1:33], y=encoded[33:])
    return bool(message.verify_signature())


def test_an_independent_cose_library_verifies_our_grant() -> None:
    g = grant()
    assert _pycose_verify(g, OWNER)
    assert not _pycose_verify(g, STRANGER)
    claims: Any = cbor2.loads(credentials.parse_grant(g).signed.payload)
    assert claims[3] == VEHICLE.hex()
    assert claims[2] == FRIEND.public_key.key_id.hex()
    assert claims[8][1][-2] == FRIEND.public_key.encoded[1:33]
    assert claims["rights"] == ["lock", "share", "unlock"]
    tampered = bytearray(g)
    tampered[-70] ^= 1
    assert not _pycose_verify(bytes(tampered), OWNER)


def test_delegation_narrows_and_verifies() -> None:
    root = grant()
    sub = grant(
        FRIEND,
        CHILD,
        rights=frozenset({"unlock"}),
        nbf=NOW - 10,
        exp=NOW + 10,
        parent=root,
        limits=Limits(hours=(8, 20)),
    )
    result = check([root, sub])
    assert result.leaf.grantee == CHILD.public_key and len(result.grants) == 2


@pytest.mark.parametrize(
    ("sub_kwargs", "code"),
    [
        ({"rights": frozenset({"unlock", "drive"})}, "grant_widens_rights"),
        ({"exp": NOW + 2 * DAY}, "grant_widens_window"),
        ({"nbf": NOW - 2 * DAY}, "grant_widens_window"),
    ],
)
def test_sub_grants_may_not_widen(sub_kwargs: dict[str, object], code: str) -> None:
    root = grant()
    sub = grant(FRIEND, CHILD, parent=root, **sub_kwargs)  # type: ignore[arg-type]
    refused([root, sub], code)


def test_sub_grants_may_not_loosen_limits() -> None:
    root = grant(limits=Limits(hours=(8, 18), weekdays=frozenset({0, 1}), max_speed=100))
    for limits in (
        Limits(hours=(7, 18), weekdays=frozenset({0}), max_speed=90),
        Limits(hours=(8, 18), weekdays=None, max_speed=90),
        Limits(hours=(8, 18), weekdays=frozenset({0}), max_speed=None),
        Limits(hours=(8, 18), weekdays=frozenset({0, 5}), max_speed=90),
    ):
        sub = grant(FRIEND, CHILD, parent=root, limits=limits)
        refused([root, sub], "grant_widens_limits")
    ok = grant(
        FRIEND,
        CHILD,
        parent=root,
        limits=Limits(hours=(9, 17), weekdays=frozenset({1}), max_speed=80),
    )
    check([root, ok])


def test_a_friend_without_share_cannot_share() -> None:
    root = grant(rights=frozenset({"unlock", "lock"}))
    refused(
        [root, grant(FRIEND, CHILD, rights=frozenset({"unlock"}), parent=root)],
        "grant_no_share_right",
    )


def test_chains_are_bounded() -> None:
    root = grant()
    sub = grant(FRIEND, CHILD, parent=root)
    subsub = grant(CHILD, GRANDCHILD, rights=frozenset({"unlock"}), parent=sub)
    refused([root, sub, subsub], "grant_too_deep")
    assert check([root, sub, subsub], max_depth=3).leaf.grantee == GRANDCHILD.public_key


def test_revoked_anything_in_the_chain_is_refused() -> None:
    root = grant()
    sub = grant(FRIEND, CHILD, rights=frozenset({"unlock"}), parent=root)
    for revoked in (
        credentials.parse_grant(root).serial,
        FRIEND.public_key.key_id,
        credentials.parse_grant(sub).serial,
        CHILD.public_key.key_id,
    ):
        refused([root, sub], "grant_revoked", revoked=frozenset({revoked}))


@pytest.mark.parametrize(
    ("chain_maker", "code", "now"),
    [
        (lambda: [grant(vehicle=b"\x01" * 16)], "grant_wrong_vehicle", NOW),
        (lambda: [grant()], "grant_expired", NOW + 2 * DAY),
        (lambda: [grant()], "grant_not_yet_valid", NOW - 2 * DAY),
        (lambda: [grant(STRANGER)], "grant_unknown_issuer", NOW),
        (lambda: [grant(FRIEND, CHILD)], "grant_unknown_issuer", NOW),
        (lambda: [], "grant_malformed", NOW),
    ],
)
def test_refusals(chain_maker: object, code: str, now: int) -> None:
    refused(chain_maker(), code, now=now)  # type: ignore[operator]


def test_broken_chains_are_refused() -> None:
    root = grant()
    other_root = grant(grantee=CHILD)
    # a sub-grant signed by someone other than the parent's grantee
    sub = grant(CHILD, GRANDCHILD, parent=root)
    refused([root, sub], "grant_broken_chain")
    # the parent claim points elsewhere
    sub = grant(FRIEND, GRANDCHILD, parent=other_root)
    refused([root, sub], "grant_broken_chain")
    # a root that names a parent
    refused([grant(parent=root)], "grant_malformed")


def test_a_signature_by_the_wrong_key_is_refused() -> None:
    g = credentials.parse_grant(grant())
    forged_sig = STRANGER.sign(b"anything")
    raw = cbor2.dumps(
        cbor2.CBORTag(
            18, [g.signed.protected, {4: OWNER.public_key.key_id}, g.signed.payload, forged_sig]
        )
    )
    refused([raw], "grant_bad_signature")


GOOD = grant()


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_any_changed_byte_is_refused(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(GOOD) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != GOOD[i]))
    tampered = bytearray(GOOD)
    tampered[i] = value
    with pytest.raises(GrantError):
        check([bytes(tampered)])


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(GrantError):
        check([data])
    # decode_chain reads only the chain's shape: garbage may pass it (b"\x81\x40" is a list of one
    # byte string), but never what comes after it.
    with pytest.raises(GrantError):
        check(credentials.decode_chain(data))
    with pytest.raises(GrantError):
        credentials.parse_revocation(data)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: {**c, "rights": ["fly"]},
        lambda c: {**c, "rights": "unlock"},
        lambda c: {**c, 4: "tomorrow"},
        lambda c: {**c, 7: b"short"},
        lambda c: {**c, 8: {1: {1: 2, -1: 1, -2: b"x", -3: b"y"}}},
        lambda c: {**c, 8: {1: {1: 1, -1: 6, -2: b"x"}}},
        lambda c: {**c, 8: {1: {1: 2, -1: 1, -2: b"\x01" * 32, -3: b"\x01" * 32}}},
        lambda c: {**c, "limits": {"hours": [25, 3]}},
        lambda c: {**c, "limits": {"weekdays": [9]}},
        lambda c: {**c, "limits": {"max_speed": -1}},
        lambda c: {**c, "limits": {"colour": "red"}},
        lambda c: {**c, "parent": b"short"},
        lambda c: {**c, "label": 7},
        lambda c: {**c, 1: "zz"},
        lambda c: {
            **c,
            2: FRIEND.public_key.key_id.hex().replace("a", "b", 1)
            if "a" in FRIEND.public_key.key_id.hex()
            else "00" * 16,
        },
        lambda c: {**c, "extra": 1},
        lambda c: [1, 2],
    ],
)
def test_malformed_claims_are_refused_even_when_signed(mutate: object) -> None:
    g = credentials.parse_grant(grant())
    claims = cbor2.loads(g.signed.payload)
    payload = cbor2.dumps(mutate(claims))  # type: ignore[operator]
    raw = cose.sign1(OWNER, payload)
    with pytest.raises(GrantError) as info:
        check([raw])
    assert info.value.code == "grant_malformed"


def test_cose_envelope_checks() -> None:
    g = credentials.parse_grant(grant())
    for obj in (
        cbor2.CBORTag(17, [g.signed.protected, {4: b"k"}, g.signed.payload, g.signed.signature]),
        cbor2.CBORTag(18, [g.signed.protected, {4: b"k"}, g.signed.payload]),
        cbor2.CBORTag(
            18,
            [
                cbor2.dumps({1: -35}),
                {4: OWNER.public_key.key_id},
                g.signed.payload,
                g.signed.signature,
            ],
        ),
        cbor2.CBORTag(
            18, [b"\xff", {4: OWNER.public_key.key_id}, g.signed.payload, g.signed.signature]
        ),
        cbor2.CBORTag(18, [g.signed.protected, {}, g.signed.payload, g.signed.signature]),
        cbor2.CBORTag(
            18, [g.signed.protected, {4: OWNER.public_key.key_id}, b"\xff", g.signed.signature]
        ),
    ):
        with pytest.raises(GrantError):
            check([cbor2.dumps(obj)])
    with pytest.raises(GrantError):
        check([b"\x00" * (credentials.MAX_CREDENTIAL_SIZE + 1)])


def test_issue_refuses_nonsense() -> None:
    with pytest.raises(GrantError, match="rights"):
        grant(rights=frozenset({"fly"}))
    with pytest.raises(GrantError, match="end after"):
        grant(nbf=NOW, exp=NOW)


def test_chain_encoding() -> None:
    chain = [grant(), grant()]
    assert credentials.decode_chain(credentials.encode_chain(chain)) == chain
    for bad in (cbor2.dumps([]), cbor2.dumps([1]), cbor2.dumps([b"x"] * 9), b"\x00" * 9000):
        with pytest.raises(GrantError):
            credentials.decode_chain(bad)


def test_limits_round_trip() -> None:
    for limits in (
        Limits(),
        Limits(weekdays=frozenset({5, 6})),
        Limits(hours=(1, 2), max_speed=50),
    ):
        assert Limits.from_cbor(limits.to_cbor()) == limits


def test_limits_hours_wrap_midnight() -> None:
    night = Limits(hours=(22, 6))
    assert 23 in night.hour_set() and 3 in night.hour_set() and 12 not in night.hour_set()
    assert Limits(hours=(23, 5)).within(night) and not Limits(hours=(20, 5)).within(night)
    assert Limits().within(Limits()) and not Limits().within(night)


# -- revocations ----------------------------------------------------------------------------------
def revocation(signer: PrivateKey = OWNER, **kwargs: object) -> bytes:
    values: dict[str, object] = {
        "vehicle_id": VEHICLE,
        "seq": 5,
        "keys": [FRIEND.public_key.key_id],
        "grants": [],
        "issued_at": NOW,
    }
    values.update(kwargs)
    return credentials.issue_revocation(signer, **values)  # type: ignore[arg-type]


def verify_rev(raw: bytes) -> credentials.Revocation:
    owners = {OWNER.public_key.key_id: OWNER.public_key}
    return credentials.verify_revocation(raw, vehicle_id=VEHICLE, owner_key=owners.get)


def test_revocations_verify_and_refuse() -> None:
    rev = verify_rev(revocation(grants=[b"\x02" * 16]))
    assert rev.seq == 5 and rev.keys == {FRIEND.public_key.key_id} and rev.grants == {b"\x02" * 16}
    for raw, code in (
        (revocation(STRANGER), "revocation_unknown_issuer"),
        (revocation(vehicle_id=b"\x01" * 16), "revocation_wrong_vehicle"),
    ):
        with pytest.raises(GrantError) as info:
            verify_rev(raw)
        assert info.value.code == code
    r = credentials.parse_revocation(revocation())
    forged = cbor2.dumps(
        cbor2.CBORTag(
            18,
            [
                r.signed.protected,
                {4: OWNER.public_key.key_id},
                r.signed.payload,
                STRANGER.sign(b"x"),
            ],
        )
    )
    with pytest.raises(GrantError) as info:
        verify_rev(forged)
    assert info.value.code == "revocation_bad_signature"
    with pytest.raises(GrantError):
        revocation(keys=[], grants=[])
    with pytest.raises(GrantError):
        revocation(seq=0)
    for body in (
        {"aud": VEHICLE.hex(), "seq": 1, "keys": [b"x"], "grants": [], "iat": 1},
        {"aud": VEHICLE.hex(), "seq": 1, "keys": [], "grants": [], "iat": 1},
        {"aud": VEHICLE.hex()},
        [1],
    ):
        raw = cose.sign1(OWNER, cbor2.dumps(body))
        with pytest.raises(GrantError):
            verify_rev(raw)
    with pytest.raises(GrantError):
        verify_rev(cose.sign1(OWNER, b"\x1c"))  # reserved initial byte: not CBOR
