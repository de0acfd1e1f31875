"""The codec round-trips every message and refuses every malformed input with a typed error."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import MalformedMessage, ProtocolError, UnsupportedVersion
from tether.protocol import codec
from tether.protocol.codec import MAX_MESSAGE_SIZE, FieldSpec, Kind, Message
from tether.protocol.messages import CommandResult, Error, StandardHello, VehicleAuth

from .flows import all_messages, sample_message

MESSAGE_TYPES = list(codec.registered_types().values())


def value_strategy(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.kind is Kind.BYTES:
        if spec.size is not None:
            return st.binary(min_size=spec.size, max_size=spec.size)
        return st.binary(max_size=min(spec.max_size or 64, 300))
    if spec.kind is Kind.UINT:
        return st.integers(min_value=0, max_value=spec.max_value)
    if spec.kind is Kind.TEXT:
        limit = spec.max_size or 64
        return st.text(max_size=min(limit, 64)).map(lambda t: codec.clip(t, limit))
    if spec.kind is Kind.BOOL:
        return st.booleans()
    scalar = st.one_of(
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    return st.dictionaries(st.text(max_size=40), scalar, max_size=8)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    cls = draw(st.sampled_from(MESSAGE_TYPES))
    kwargs = {}
    for name, spec in cls._SPECS:
        if spec.optional and draw(st.booleans()):
            continue
        kwargs[name] = draw(value_strategy(spec))
    return cls(**kwargs)


@given(messages())
@settings(max_examples=400)
def test_every_message_round_trips(msg: Message) -> None:
    data = codec.encode(msg)
    assert codec.decode(data) == msg
    assert codec.encode(codec.decode(data)) == data


@given(st.binary(max_size=512))
@settings(max_examples=2000)
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        codec.decode(data)


@given(messages(), st.data())
@settings(max_examples=500)
def test_mutated_encodings_decode_or_raise_typed_errors(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decoded = codec.decode(bytes(raw))
    except ProtocolError:
        return
    # Whatever still decodes must be exactly its own deterministic encoding.
    assert codec.encode(decoded) == bytes(raw)


def body(msg: Message) -> Any:
    return cbor2.loads(codec.encode(msg))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (cbor2.dumps([2, 60, {1: "a", 2: "b"}]) + b"\x00", "deterministic"),
        (b"\x83\x02\x19\x00\x3c\xa2\x01\x61a\x02\x61b", "deterministic"),  # 60 in 3 bytes
        (b"\x9f\x02\x18\x3c\xa2\x01\x61a\x02\x61b\xff", "deterministic"),  # indefinite array
        (b"\x83\x02\x18\x3c\xa2\x02\x61b\x01\x61a", "deterministic"),  # keys out of order
        (b"\x83\x02\x18\x3c\xa3\x01\x61a\x01\x61c\x02\x61b", "deterministic"),  # duplicate key
        (cbor2.dumps([2, 999, {}]), "unknown message type"),
        (cbor2.dumps([2, 60, {1: "a"}]), "missing field"),
        (cbor2.dumps([2, 60, {1: "a", 2: "b", 9: 1}]), "unknown field"),
        (cbor2.dumps([2, 60, {1: b"a", 2: "b"}]), "must be text"),
        (cbor2.dumps([2, 60, {1: "a" * 65, 2: "b"}]), "longer than"),
        (cbor2.dumps([2, 60]), "array of version"),
        (cbor2.dumps({"a": 1}), "array of version"),
        (cbor2.dumps([True, 60, {}]), "version must be"),
        (cbor2.dumps([2, -1, {}]), "type must be"),
        (cbor2.dumps([2, 60, []]), "fields must be a map"),
        (cbor2.dumps([2, 30, {1: b"x" * 64, 2: b"n" * 16}]), "must be 65 bytes"),
        (cbor2.dumps([2, 71, {1: True, 2: True, 4: "m"}]), "integer"),
        (cbor2.dumps([2, 71, {1: 2**32, 2: True, 4: "m"}]), "integer"),
        (cbor2.dumps([2, 71, {1: 1, 2: 1, 4: "m"}]), "true or false"),
        (cbor2.dumps([2, 71, {1: 1, 2: True, 4: "m", 5: []}]), "must be a map"),
        (cbor2.dumps([2, 71, {1: 1, 2: True, 4: "m", 5: {1: 1}}]), "short text"),
        (cbor2.dumps([2, 71, {1: 1, 2: True, 4: "m", 5: {"a": [1]}}]), "scalar"),
        (b"\x83\x02\x18\x3c\xa2\xe1\x61a\x02\x61b", "keys must be"),  # simple(1) as a key
        (cbor2.dumps([2, 60, {1.0: "a", 2: "b"}]), "keys must be"),
        (
            b"\xff",
            "CBOR|array",
        ),  # a lone break: cbor2 5 decodes it to a marker, 6 refuses; both refused
        (b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", "not valid CBOR"),
    ],
)
def test_malformed_inputs_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(MalformedMessage, match=fragment):
        codec.decode(raw)


@pytest.mark.parametrize("version", [1, 3])
def test_any_other_version_is_its_own_error(version: int) -> None:
    # Version 1 (whose fast unlock took two round trips) is refused like any unknown version.
    with pytest.raises(UnsupportedVersion, match=f"version {version}"):
        codec.decode(cbor2.dumps([version, 60, {1: "a", 2: "b"}]))


def test_oversized_message_is_refused_before_decoding() -> None:
    with pytest.raises(MalformedMessage, match="limit"):
        codec.decode(b"\x00" * (MAX_MESSAGE_SIZE + 1))


def test_non_bytes_are_refused() -> None:
    with pytest.raises(MalformedMessage, match="must be bytes"):
        codec.decode(bytearray(b"\x00"))  # type: ignore[arg-type]


def test_deeply_nested_input_is_a_typed_error() -> None:
    with pytest.raises(MalformedMessage):
        codec.decode(b"\x81" * 60_000 + b"\x00")


def test_decode_as_checks_the_class() -> None:
    data = codec.encode(Error(code="x", message="y"))
    assert codec.decode_as(data, Error) == Error(code="x", message="y")
    with pytest.raises(MalformedMessage, match="expected StandardHello"):
        codec.decode_as(data, StandardHello)


def test_peek_type() -> None:
    msg = sample_message(VehicleAuth)
    assert codec.peek_type(codec.encode(msg)) is VehicleAuth


def test_signal_maps_use_canonical_order_and_shortest_floats() -> None:
    result = CommandResult(
        request_id=1, ok=True, message="ok", state={"bb": 1.5, "a": True, "Vehicle.Speed": 0.0}
    )
    data = codec.encode(result)
    assert codec.decode(data) == result
    inner = cbor2.loads(data)[2][5]
    assert list(inner) == ["a", "bb", "Vehicle.Speed"]
    assert b"\xf9\x3e\x00" in data  # 1.5 as a half-precision float
    # A float64 encoding of the same value is not the deterministic one.
    long_form = data.replace(b"\xf9\x3e\x00", b"\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00")
    with pytest.raises(MalformedMessage):
        codec.decode(long_form)


def test_every_registered_type_has_a_valid_sample() -> None:
    for msg in all_messages():
        assert codec.decode(codec.encode(msg)) == msg


def test_registration_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="registered twice"):

        @codec.message(60)
        class Twice(Message):
            pass

    with pytest.raises(ValueError, match="used twice"):

        @codec.message(250)
        class SameKey(Message):
            a: bytes = codec.bstr(1)
            b: bytes = codec.bstr(1)


def test_text_bounds_count_utf8_bytes_not_characters() -> None:
    # Error.code is tstr[..64]: 33 two-byte characters are 33 characters but 66 bytes.
    raw = cbor2.dumps([codec.PROTOCOL_VERSION, Error.TYPE, {1: "é" * 33, 2: ""}])
    with pytest.raises(MalformedMessage, match="longer than 64"):
        codec.decode(raw)
    ok = cbor2.dumps([codec.PROTOCOL_VERSION, Error.TYPE, {1: "é" * 32, 2: ""}])
    assert codec.decode_as(ok, Error).code == "é" * 32


@given(st.text(max_size=300), st.integers(0, 600))
def test_clip_fits_the_byte_bound_and_never_splits_a_character(text: str, limit: int) -> None:
    clipped = codec.clip(text, limit)
    assert len(clipped.encode("utf-8")) <= limit
    assert text.startswith(clipped)
    if len(text.encode("utf-8")) <= limit:
        assert clipped == text
