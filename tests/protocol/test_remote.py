"""Remote command envelopes, car-signed results, receipts and state (docs/protocol.md §14)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import RemoteError
from tether.protocol import cose, remote
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy, PublicKey, sha256

_E = DeterministicEntropy(b"remote")
CAR = _E.new_private_key()
PHONE = _E.new_private_key()
OTHER = _E.new_private_key()
VID = CAR.public_key.key_id
NOW = 1_800_000_000


def keys(key_id: bytes) -> PublicKey | None:
    return {PHONE.public_key.key_id: PHONE.public_key}.get(key_id)


def envelope(command: Command = Command.UNLOCK, counter: int = 5, now: int = NOW) -> bytes:
    return remote.sign_envelope(PHONE, vehicle_id=VID, command=command, counter=counter, now=now)


def verify(raw: bytes, *, last: int = 0, now: float = NOW + 1) -> remote.Envelope:
    return remote.verify_envelope(
        remote.parse_envelope(raw),
        vehicle_id=VID,
        endpoint_key=keys,
        last_counter=lambda _: last,
        now=now,
    )


def test_envelope_round_trip() -> None:
    env = verify(envelope())
    assert env.digest == sha256(env.raw)
    assert (env.command, env.counter, env.key_id) == (Command.UNLOCK, 5, PHONE.public_key.key_id)
    assert env.expires == NOW + 60


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"last": 5}, "command_replayed"),
        ({"last": 9}, "command_replayed"),
        ({"now": NOW + 60}, "command_expired"),
    ],
)
def test_envelope_refusals(kwargs: dict[str, float], code: str) -> None:
    with pytest.raises(RemoteError) as refused:
        verify(envelope(), **kwargs)  # type: ignore[arg-type]
    assert refused.value.code == code


def test_envelope_for_another_car_or_key() -> None:
    other = remote.sign_envelope(
        PHONE, vehicle_id=OTHER.public_key.key_id, command=Command.LOCK, counter=1, now=NOW
    )
    with pytest.raises(RemoteError) as refused:
        verify(other)
    assert refused.value.code == "command_wrong_vehicle"
    stranger = remote.sign_envelope(OTHER, vehicle_id=VID, command=Command.LOCK, counter=1, now=NOW)
    with pytest.raises(RemoteError) as refused:
        verify(stranger)
    assert refused.value.code == "unknown_key"


def _resign(body: dict[str, object], signer: object = PHONE) -> bytes:
    return cose.sign1(signer, cbor2.dumps(body, canonical=True))  # type: ignore[arg-type]


def test_forged_kid_does_not_verify() -> None:
    # Eve signs with her key but names the phone's key id: the signature check catches it.
    body = cbor2.loads(cbor2.loads(envelope()).value[2])
    forged = cose.sign1(OTHER, cbor2.dumps(body, canonical=True))
    fparts = list(cbor2.loads(forged).value)
    fparts[1] = {4: PHONE.public_key.key_id}
    forged = cbor2.dumps(cbor2.CBORTag(18, fparts), canonical=True)
    with pytest.raises(RemoteError) as refused:
        verify(forged)
    assert refused.value.code == "command_bad_signature"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"aud": VID.hex(), "cmd": "start", "ctr": 1, "iat": NOW, "exp": NOW + 60},
            "remote_not_allowed",
        ),
        (
            {"aud": VID.hex(), "cmd": "fly", "ctr": 1, "iat": NOW, "exp": NOW + 60},
            "unknown_command",
        ),
        (
            {"aud": VID.hex(), "cmd": "lock", "ctr": 1, "iat": NOW, "exp": NOW + 3600},
            "command_malformed",
        ),
        ({"aud": VID.hex(), "cmd": "lock", "ctr": 1, "iat": NOW, "exp": NOW}, "command_malformed"),
        (
            {"aud": VID.hex(), "cmd": "lock", "ctr": 0, "iat": NOW, "exp": NOW + 60},
            "command_malformed",
        ),
        (
            {"aud": VID.hex(), "cmd": "lock", "ctr": "1", "iat": NOW, "exp": NOW + 9},
            "command_malformed",
        ),
        ({"aud": b"x", "cmd": "lock", "ctr": 1, "iat": NOW, "exp": NOW + 9}, "command_malformed"),
        ({"aud": VID.hex(), "cmd": "lock", "ctr": 1, "iat": NOW}, "command_malformed"),
    ],
)
def test_envelope_rules(body: dict[str, object], code: str) -> None:
    with pytest.raises(RemoteError) as refused:
        verify(_resign(body))
    assert refused.value.code == code


def test_signing_refuses_what_the_car_would_refuse() -> None:
    with pytest.raises(RemoteError):
        envelope(Command.START)
    with pytest.raises(RemoteError):
        remote.sign_envelope(PHONE, vehicle_id=VID, command=Command.LOCK, counter=0, now=NOW)


@pytest.mark.parametrize("garbage", [b"", b"\xff", cbor2.dumps([1, 2]), b"\xa0" * 20000])
def test_garbage_is_a_typed_refusal(garbage: bytes) -> None:
    with pytest.raises(RemoteError):
        verify(garbage)
    with pytest.raises(RemoteError):
        remote.parse_receipt(garbage)
    with pytest.raises(RemoteError):
        remote.parse_result(garbage)


def test_payload_not_a_map() -> None:
    with pytest.raises(RemoteError):
        verify(cose.sign1(PHONE, cbor2.dumps([1])))
    with pytest.raises(RemoteError):
        verify(cose.sign1(PHONE, b"\x1c"))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    raw = bytearray(envelope())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RemoteError):
        verify(bytes(raw))


def test_result_binds_car_and_command() -> None:
    raw = envelope()
    result = remote.sign_result(CAR, raw, ok=False, reason="no_right", message="No.", now=NOW)
    got = remote.verify_result(result, vehicle_key=CAR.public_key, envelope_raw=raw)
    assert (got.ok, got.reason, got.message) == (False, "no_right", "No.")
    assert remote.parse_result(result).request == got.request
    with pytest.raises(RemoteError) as refused:
        remote.verify_result(result, vehicle_key=CAR.public_key, envelope_raw=envelope(counter=6))
    assert refused.value.code == "result_mismatch"
    with pytest.raises(RemoteError) as refused:
        remote.verify_result(result, vehicle_key=OTHER.public_key, envelope_raw=raw)
    assert refused.value.code == "result_bad_signature"
    # A "server" that re-signs a success with its own key is not the car.
    forged = remote.sign_result(OTHER, raw, ok=True, reason="", message="Done.", now=NOW)
    with pytest.raises(RemoteError):
        remote.verify_result(forged, vehicle_key=CAR.public_key, envelope_raw=raw)


def test_a_locate_result_carries_the_signed_position() -> None:
    raw = envelope()
    where = {"Vehicle.CurrentLocation.Latitude": 48.1, "Vehicle.CurrentLocation.Longitude": 11.5}
    signed = remote.sign_result(CAR, raw, ok=True, reason="", message="Done.", now=NOW, state=where)
    assert remote.verify_result(signed, vehicle_key=CAR.public_key, envelope_raw=raw).state == where
    plain = remote.sign_result(CAR, raw, ok=True, reason="", message="Done.", now=NOW)
    assert remote.verify_result(plain, vehicle_key=CAR.public_key, envelope_raw=raw).state == {}


@pytest.mark.parametrize(
    "body",
    [
        {"aud": VID.hex(), "req": b"r", "ok": "yes", "reason": "", "msg": "", "at": 1},
        {"aud": VID.hex(), "req": b"r", "ok": True, "reason": 1, "msg": "", "at": 1},
        {"aud": VID.hex(), "req": b"r", "ok": True, "reason": "", "msg": 1, "at": 1},
        {"aud": VID.hex(), "req": b"r", "ok": True, "reason": "", "msg": "", "at": "1"},
        {"aud": VID.hex(), "ok": True},
        {"aud": VID.hex(), "req": b"r", "ok": True, "reason": "", "msg": "", "at": 1, "state": [1]},
        {
            "aud": VID.hex(),
            "req": b"r",
            "ok": True,
            "reason": "",
            "msg": "",
            "at": 1,
            "state": {1: 2},
        },
        {"aud": VID.hex(), "req": b"r", "ok": True, "reason": "", "msg": "", "at": 1, "x": 1},
    ],
)
def test_malformed_results(body: dict[str, object]) -> None:
    with pytest.raises(RemoteError) as refused:
        remote.verify_result(_resign(body, CAR), vehicle_key=CAR.public_key, envelope_raw=b"")
    assert refused.value.code == "result_malformed"


def test_receipts() -> None:
    receipt = remote.sign_receipt(CAR, b"revocation", seq=7, ok=True, reason="", now=NOW)
    got = remote.verify_receipt(receipt, vehicle_key=CAR.public_key)
    assert (got.seq, got.ok, got.vehicle_id) == (7, True, VID)
    with pytest.raises(RemoteError) as refused:
        remote.verify_receipt(receipt, vehicle_key=OTHER.public_key)
    assert refused.value.code == "receipt_mismatch"
    forged = remote.sign_receipt(OTHER, b"revocation", seq=7, ok=True, reason="", now=NOW)
    parts = cbor2.loads(forged).value
    body = cbor2.loads(parts[2])
    body["aud"] = VID.hex()
    with pytest.raises(RemoteError) as refused:
        remote.verify_receipt(_resign(body, OTHER), vehicle_key=CAR.public_key)
    assert refused.value.code == "receipt_bad_signature"


@pytest.mark.parametrize(
    "body",
    [
        {"aud": VID.hex(), "rev": b"x" * 32, "seq": 1, "ok": 1, "reason": "", "at": 1},
        {"aud": VID.hex(), "rev": b"x" * 32, "seq": "1", "ok": True, "reason": "", "at": 1},
        {"aud": VID.hex(), "rev": b"x" * 31, "seq": 1, "ok": True, "reason": "", "at": 1},
        {"aud": VID.hex(), "rev": b"x" * 32},
    ],
)
def test_malformed_receipts(body: dict[str, object]) -> None:
    with pytest.raises(RemoteError):
        remote.verify_receipt(_resign(body, CAR), vehicle_key=CAR.public_key)


def test_state() -> None:
    signed = remote.sign_state(CAR, {"Vehicle.Speed": 0.0}, now=NOW)
    got = remote.verify_state(signed, vehicle_key=CAR.public_key)
    assert got.signals == {"Vehicle.Speed": 0.0}
    with pytest.raises(RemoteError) as refused:
        remote.verify_state(signed, vehicle_key=OTHER.public_key)
    assert refused.value.code == "state_mismatch"
    body = {"aud": VID.hex(), "at": NOW, "state": {"Vehicle.Speed": 99.0}}
    with pytest.raises(RemoteError) as refused:
        remote.verify_state(_resign(body, OTHER), vehicle_key=CAR.public_key)
    assert refused.value.code == "state_bad_signature"
    bad_states: list[dict[str, object]] = [
        {"aud": VID.hex(), "at": "x", "state": {}},
        {"aud": VID.hex(), "at": 1, "state": {1: 2}},
    ]
    for bad in bad_states:
        with pytest.raises(RemoteError) as refused:
            remote.verify_state(_resign(bad, CAR), vehicle_key=CAR.public_key)
        assert refused.value.code == "state_malformed"
