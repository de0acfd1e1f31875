"""The one schema language for signed objects: declared maps with text, negative and nested keys."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import MalformedMessage
from tether.protocol import codec, cose, credentials, remote
from tether.protocol.codec import (
    Shape,
    array,
    bstr,
    hexid,
    item_bytes,
    item_shape,
    nested,
    shape,
    signals,
    tstr,
    uint,
)
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy


@shape
class Inner(Shape):
    x: bytes = bstr(-2, size=2)
    n: int = uint(1, max_value=9)


@shape
class Outer(Shape):
    who: bytes = hexid("who", size=4)
    inner: Inner = nested(8, Inner)
    items: tuple[bytes, ...] = array("items", item_bytes(size=1), min_size=1, max_size=3)
    many: tuple[Inner, ...] | None = array("many", item_shape(Inner), max_size=2, default=None)
    note: str | None = tstr("note", max_size=8, default=None)
    at: dict[str, object] | None = signals("at", default=None)


SAMPLE = Outer(who=b"\x01\x02\x03\x04", inner=Inner(x=b"ab", n=3), items=(b"a", b"b"), note="hi")


def test_a_declared_map_round_trips_in_its_one_encoding() -> None:
    data = codec.dump(SAMPLE)
    assert cbor2.loads(data) == {
        "who": "01020304",
        8: {1: 3, -2: b"ab"},
        "items": [b"a", b"b"],
        "note": "hi",
    }
    assert codec.load(data, Outer, "sample") == SAMPLE
    nested_items = dataclasses.replace(SAMPLE, many=(Inner(x=b"cd", n=9),))
    assert codec.load(codec.dump(nested_items), Outer, "sample") == nested_items


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"who": "01020304", 8: {1: 3, -2: b"ab"}}, "missing field 'items'"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "extra": 1}, "unknown field"),
        ({**cbor2.loads(codec.dump(SAMPLE)), True: 1}, "unknown field"),  # bool is not a key
        ({**cbor2.loads(codec.dump(SAMPLE)), "who": "0102030"}, "hex"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "who": "0102030G"}, "hex"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "who": "0A0B0C0D"}, "lower-case"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "who": b"\x01\x02\x03\x04"}, "hex"),
        ({**cbor2.loads(codec.dump(SAMPLE)), 8: {1: 10, -2: b"ab"}}, "from 0 to 9"),
        ({**cbor2.loads(codec.dump(SAMPLE)), 8: {1: 3}}, "missing field 'x'"),
        ({**cbor2.loads(codec.dump(SAMPLE)), 8: [3]}, "must be a map"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "items": []}, "1 to 3 items"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "items": [b"ab"]}, "1 bytes"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "note": "123456789"}, "longer than 8"),
        ({**cbor2.loads(codec.dump(SAMPLE)), "at": {"a": math.nan}}, "finite"),
    ],
)
def test_every_breach_of_a_declaration_is_malformed(raw: dict[object, object], why: str) -> None:
    with pytest.raises(MalformedMessage, match=why):
        codec.load(cbor2.dumps(raw, canonical=True), Outer, "sample")


def test_a_hex_id_is_hex_digits_even_where_no_encoding_is_compared() -> None:
    raw = cbor2.loads(codec.dump(SAMPLE))
    assert codec.from_map(Outer, raw, "sample") == SAMPLE
    # bytes.fromhex reads "01 02 03" as three bytes: an id of the wrong size in the right length.
    for who in ("01 02 03", "010203\n4", "+1020304"):
        with pytest.raises(MalformedMessage, match="hex digits"):
            codec.from_map(Outer, {**raw, "who": who}, "sample")


def test_a_refusal_never_repeats_the_peers_text() -> None:
    # The sentence is audited by the car: a peer's key name must not reach it.
    raw = {**cbor2.loads(codec.dump(SAMPLE)), "<script>canary": 1}
    with pytest.raises(MalformedMessage) as info:
        codec.load(cbor2.dumps(raw, canonical=True), Outer, "sample")
    assert "canary" not in info.value.message and "script" not in info.value.message
    with pytest.raises(MalformedMessage, match="unknown field 99"):
        codec.load(cbor2.dumps({**raw, 99: 1}, canonical=True), Outer, "sample")


def test_only_the_deterministic_encoding_is_accepted() -> None:
    data = codec.dump(SAMPLE)
    unsorted = cbor2.dumps(dict(reversed(list(cbor2.loads(data).items()))))
    assert unsorted != data
    with pytest.raises(MalformedMessage, match="deterministic"):
        codec.load(unsorted, Outer, "sample")
    with pytest.raises(MalformedMessage, match="deterministic"):
        codec.load(data + b"\x00", Outer, "sample")


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_garbage_is_malformed_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        codec.load(data, Outer, "sample")


def test_a_message_may_not_use_a_shapes_field_kinds() -> None:
    with pytest.raises(ValueError, match="unsigned integers"):

        @codec.message(250)
        class Bad(codec.Message):
            t: str = tstr("t")


def test_every_signed_object_names_its_car_the_same_way() -> None:
    """``aud`` is one thing in protocol v2: the vehicle id as hex text, in grants, revocations,
    envelopes, results, receipts and states alike."""
    entropy = DeterministicEntropy(b"aud")
    owner, car = entropy.new_private_key(), entropy.new_private_key()
    vid = car.public_key.key_id
    grant = credentials.issue_grant(
        owner,
        grantee=owner.public_key,
        vehicle_id=vid,
        rights=frozenset({"unlock"}),
        not_before=0,
        expires=10,
        serial=b"s" * 16,
        issued_at=0,
    )
    envelope = remote.sign_envelope(owner, vehicle_id=vid, command=Command.UNLOCK, counter=1, now=0)
    signed = [
        grant,
        credentials.issue_revocation(owner, vehicle_id=vid, seq=1, keys=[vid], issued_at=0),
        envelope,
        remote.sign_result(car, envelope, ok=True, reason="", message="Done.", now=0),
        remote.sign_receipt(car, grant, seq=1, ok=True, reason="", now=0),
        remote.sign_state(car, {"Vehicle.Speed": 0.0}, now=0),
    ]
    for data in signed:
        claims = cbor2.loads(cose.open_sign1(data, "object").payload)
        assert claims.get("aud", claims.get(3)) == vid.hex()


def test_people_pass_requests_and_bundles_in_any_encoding_of_their_declared_map() -> None:
    from tether.errors import UsageError
    from tether.link import bundles

    key = DeterministicEntropy(b"req").new_private_key().public_key
    made = bundles.make_request(key, "Bea")
    assert bundles.read_request(made).label == "Bea"
    # An older phone wrote its fields in the order it thought of them: still a request.
    loose = cbor2.dumps({"kind": "tether/key-request", "v": 1, "key": key.encoded, "label": "B"})
    assert loose != made and bundles.read_request(loose).key == key
    for bad in (
        {"kind": "tether/key-request", "v": 2, "key": key.encoded},
        {"kind": "tether/key-request", "v": 1, "key": b"short"},
        {"kind": "tether/key-request", "v": 1, "key": key.encoded, "extra": 1},
        {"kind": "tether/grant", "v": 1, "key": key.encoded},
    ):
        with pytest.raises(UsageError):
            bundles.read_request(cbor2.dumps(bad))
