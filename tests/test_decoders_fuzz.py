"""Every decoder that reads what others send or hand over, fuzzed: a typed error, never a crash.

The wire codec and the channel have their own property tests (tests/protocol); these cover the
rest of what comes from outside: signed credentials and cloud objects, request signature headers,
MQTT payloads, key requests and grant bundles, and the vault's file importers.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.cloud.api.cars import _audit_entry
from tether.errors import RemoteError, SignatureRefused, TetherError
from tether.link import bundles, httpsig, topics
from tether.phone import vault
from tether.protocol import credentials, remote
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy

_E = DeterministicEntropy(b"fuzz")
_OWNER, _CAR = _E.new_private_key(), _E.new_private_key()
_ENVELOPE = remote.sign_envelope(
    _OWNER, vehicle_id=_CAR.public_key.key_id, command=Command.LOCK, counter=7, now=1_000
)
_RESULT = remote.sign_result(_CAR, _ENVELOPE, ok=True, reason="", message="Done.", now=1_001)
_REVOCATION = credentials.issue_revocation(
    _OWNER, vehicle_id=_CAR.public_key.key_id, seq=1, keys=[os.urandom(16)], issued_at=1_000
)
_REQUEST = bundles.make_request(_E.new_private_key().public_key, "Bea")
_HEADERS = {
    k.lower(): v
    for k, v in httpsig.sign_request(
        _OWNER, method="GET", path="/v1/x", query="", body=b"", created=1_000, nonce="n" * 20
    ).items()
}
_VCARD = "BEGIN:VCARD\nVERSION:4.0\nFN:Ada Lovelace\nTEL:+44 20 7946 0000\nEND:VCARD\n"
_ICAL = (
    "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//t//EN\nBEGIN:VEVENT\nUID:1@x\n"
    "DTSTART:20261202T090000Z\nDTEND:20261202T100000Z\nSUMMARY:Standup\nRRULE:FREQ=DAILY\n"
    "END:VEVENT\nEND:VCALENDAR\n"
)
_NOW = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)

BYTE_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "envelope": remote.parse_envelope,
    "receipt": remote.parse_receipt,
    "result digest": remote.parse_result,
    "result": lambda d: remote.verify_result(
        d, vehicle_key=_CAR.public_key, envelope_raw=_ENVELOPE
    ),
    "grant": credentials.parse_grant,
    "chain": credentials.decode_chain,
    "revocation": credentials.parse_revocation,
    "key request": bundles.read_request,
    "grant bundle": bundles.read_bundle,
}
SAMPLES: dict[str, bytes] = {
    "envelope": _ENVELOPE,
    "result": _RESULT,
    "result digest": _RESULT,
    "revocation": _REVOCATION,
    "key request": _REQUEST,
}
TEXT_DECODERS: dict[str, Callable[[str], Any]] = {
    "vCard": vault.parse_vcards,
    "iCalendar": lambda t: vault.parse_icalendar(t, now=_NOW),
    "tether JSON": vault.parse_json,
    "grant link": bundles.read_bundle,
}
TEXT_SAMPLES = {"vCard": _VCARD, "iCalendar": _ICAL, "tether JSON": '{"profile": {"seat": 3}}'}


def _typed(decode: Callable[[Any], Any], data: Any) -> None:
    """Decode, or be refused with a typed error and a sentence; anything else fails the test."""
    with contextlib.suppress(TetherError):
        decode(data)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(BYTE_DECODERS)), data=st.binary(max_size=600))
def test_random_bytes_are_refused_with_a_typed_error(name: str, data: bytes) -> None:
    _typed(BYTE_DECODERS[name], data)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_mutated_objects_are_refused_with_a_typed_error(name: str, data: st.DataObject) -> None:
    sample = bytearray(SAMPLES[name])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(sample) - 1))
        sample[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(sample)))
    _typed(BYTE_DECODERS[name], bytes(sample[:cut]) + data.draw(st.binary(max_size=8)))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(TEXT_DECODERS)), text=st.text(max_size=400))
def test_random_text_is_refused_with_a_typed_error(name: str, text: str) -> None:
    _typed(TEXT_DECODERS[name], text)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(TEXT_SAMPLES)), data=st.data())
def test_mutated_files_are_refused_or_read(name: str, data: st.DataObject) -> None:
    text = TEXT_SAMPLES[name]
    at = data.draw(st.integers(0, len(text)))
    drop = data.draw(st.integers(0, 6))
    text = text[:at] + data.draw(st.text(max_size=6)) + text[at + drop :]
    _typed(TEXT_DECODERS[name], text)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_signature_headers_are_parsed_strictly(data: st.DataObject) -> None:
    headers = dict(_HEADERS)
    field = data.draw(st.sampled_from(["signature", "signature-input"]))
    value = headers[field]
    at = data.draw(st.integers(0, len(value)))
    headers[field] = value[:at] + data.draw(st.text(max_size=4)) + value[at + 1 :]
    with contextlib.suppress(SignatureRefused):
        httpsig.read_signature(headers)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_mqtt_payloads_decode_to_a_map_or_nothing(data: bytes) -> None:
    decoded = topics.decode(data)
    assert decoded is None or type(decoded) is dict


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@given(state=st.dictionaries(st.text(max_size=40), _PLAIN, max_size=6))
@settings(max_examples=200)
def test_car_signed_state_holds_plain_values_or_is_refused(state: dict[str, Any]) -> None:
    """A state the car really signed, with any CBOR values: plain ones are read, the rest (byte
    strings, lists, maps, NaN: once a 500 on the server) are a typed refusal."""
    key = DeterministicEntropy(b"state").new_private_key()
    raw = remote.sign_state(key, state, now=1)
    try:
        read = remote.verify_state(raw, vehicle_key=key.public_key)
    except RemoteError:
        return
    for value in read.signals.values():
        assert type(value) in (bool, int, float, str)


@given(entry=st.dictionaries(st.sampled_from(["seq", "time", "key_id", "detail", "x"]), _PLAIN))
def test_uploaded_audit_entries_are_checked_or_refused(entry: dict[str, Any]) -> None:
    """An audit upload (once a 500 for a non-integer seq): a 400, or an entry of plain values."""
    try:
        checked = _audit_entry(entry)
    except HTTPException as exc:
        status = exc.status_code
    else:
        status = 200
        assert type(checked["seq"]) is int
    assert status in (200, 400)
