"""Sessions and the secure channel: commands flow; replayed, reordered or cut records close it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import (
    ChannelError,
    LocalProtocolError,
    MalformedMessage,
    ProtocolError,
    UnexpectedMessage,
)
from tether.protocol import codec
from tether.protocol.channel import MAX_RECORDS, ChannelKeys, SecureChannel
from tether.protocol.commands import FAST_COMMANDS, Command, DenialReason, explain
from tether.protocol.messages import CommandRequest, CommandResult, Record
from tether.protocol.session import (
    CommandReceived,
    CommandRefused,
    PhoneSession,
    ResultReceived,
    SessionClosed,
    SessionState,
    VehicleSession,
)

from .flows import World


def sessions(*, fast: bool = False) -> tuple[PhoneSession, VehicleSession]:
    world = World.make(b"session")
    world.transact(fast=False)
    phone, car, _ = world.transact(fast=fast)
    assert phone.fast is fast
    return phone, car


def roundtrip(phone: PhoneSession, car: VehicleSession, command: str) -> CommandResult:
    phone.request(command)
    (record,) = phone.data_to_send()
    for event in car.receive(record, now=0.0):
        if isinstance(event, CommandReceived):
            car.respond(
                event.request_id,
                ok=True,
                state={"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": False},
            )
    (answer,) = car.data_to_send()
    (event,) = phone.receive(answer, now=0.0)
    assert isinstance(event, ResultReceived)
    return event.result


def test_standard_session_carries_every_command() -> None:
    phone, car = sessions()
    for command in Command:
        result = roundtrip(phone, car, command.value)
        assert result.ok, command
        assert result.message == "Done."


def test_fast_session_refuses_start_and_the_like() -> None:
    phone, car = sessions(fast=True)
    for command in Command:
        result = roundtrip(phone, car, command.value)
        if command in FAST_COMMANDS:
            assert result.ok
        else:
            assert not result.ok
            assert result.reason == DenialReason.FAST_NOT_ALLOWED
            assert result.message == explain(DenialReason.FAST_NOT_ALLOWED)


def test_unknown_command_is_denied_cleanly_and_the_session_goes_on() -> None:
    phone, car = sessions()
    request_id = phone.request("fly")
    (record,) = phone.data_to_send()
    (event,) = car.receive(record, now=0.0)
    assert event == CommandRefused(
        request_id=request_id, command="fly", reason=DenialReason.UNKNOWN_COMMAND
    )
    (answer,) = car.data_to_send()
    (result,) = phone.receive(answer, now=0.0)
    assert isinstance(result, ResultReceived)
    assert result.result.reason == "unknown_command"
    assert roundtrip(phone, car, "lock").ok


def test_denial_with_reason_and_state() -> None:
    phone, car = sessions()
    phone.request("start")
    (event,) = car.receive(phone.data_to_send()[0], now=0.0)
    assert isinstance(event, CommandReceived)
    car.respond(event.request_id, ok=False, reason=DenialReason.NO_RIGHT)
    (result,) = phone.receive(car.data_to_send()[0], now=0.0)
    assert isinstance(result, ResultReceived)
    assert result.result.reason == "no_right"
    assert "right" in result.result.message


def test_respond_needs_a_reason_exactly_for_denials() -> None:
    _, car = sessions()
    with pytest.raises(LocalProtocolError):
        car.respond(1, ok=False)
    with pytest.raises(LocalProtocolError):
        car.respond(1, ok=True, reason=DenialReason.NO_RIGHT)


def test_replayed_record_closes_the_session() -> None:
    phone, car = sessions()
    phone.request("unlock")
    (record,) = phone.data_to_send()
    car.receive(record, now=0.0)
    with pytest.raises(ChannelError) as info:
        car.receive(record, now=0.0)
    assert info.value.code == "bad_record"
    assert car.state is SessionState.FAILED
    with pytest.raises(LocalProtocolError, match="has failed"):
        car.receive(record, now=0.0)


def test_reordered_records_close_the_session() -> None:
    phone, car = sessions()
    phone.request("unlock")
    phone.request("lock")
    _first, second = phone.data_to_send()
    with pytest.raises(ChannelError):
        car.receive(second, now=0.0)


def test_dropped_record_then_next_one_closes_the_session() -> None:
    phone, car = sessions()
    phone.request("unlock")
    phone.request("lock")
    _, second = phone.data_to_send()
    with pytest.raises(ChannelError):
        car.receive(second, now=0.0)


def test_reflected_record_is_refused() -> None:
    phone, car = sessions()
    phone.request("unlock")
    car.receive(phone.data_to_send()[0], now=0.0)
    car.respond(1, ok=True)
    (answer,) = car.data_to_send()
    with pytest.raises(ChannelError):
        car.receive(answer, now=0.0)


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_any_modified_record_closes_the_session(data: st.DataObject) -> None:
    phone, car = sessions()
    phone.request("unlock")
    (record,) = phone.data_to_send()
    bit = data.draw(st.integers(0, len(record) * 8 - 1))
    flipped = bytearray(record)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        car.receive(bytes(flipped), now=0.0)
    assert car.state is SessionState.FAILED


def test_truncated_record_is_refused() -> None:
    phone, car = sessions()
    phone.request("unlock")
    (record,) = phone.data_to_send()
    ct = codec.decode_as(record, Record).ciphertext
    with pytest.raises(ChannelError):
        car.receive(codec.encode(Record(ciphertext=ct[:-1])), now=0.0)


def test_clean_close_and_cut_off_session() -> None:
    phone, car = sessions()
    phone.close()
    (record,) = phone.data_to_send()
    assert car.receive(record, now=0.0) == [SessionClosed()]
    assert car.state is SessionState.CLOSED
    car.connection_lost()  # a closed session may end quietly
    with pytest.raises(LocalProtocolError):
        phone.request("unlock")

    phone, car = sessions()
    with pytest.raises(ChannelError) as info:
        car.connection_lost()
    assert info.value.code == "truncated"


def test_car_closing_reaches_the_phone() -> None:
    phone, car = sessions()
    car.close()
    assert phone.receive(car.data_to_send()[0], now=0.0) == [SessionClosed()]


def test_peer_may_not_send_the_wrong_kind_of_message() -> None:
    phone, car = sessions()
    # The car's channel keys sealing a CommandRequest towards the phone: still refused.
    car._send(CommandRequest(request_id=1, command="unlock"))
    with pytest.raises(UnexpectedMessage, match="CommandRequest is not allowed"):
        phone.receive(car.data_to_send()[0], now=0.0)
    phone, car = sessions()
    phone._send(CommandResult(request_id=1, ok=True, message="x"))
    with pytest.raises(UnexpectedMessage, match="CommandResult is not allowed"):
        car.receive(phone.data_to_send()[0], now=0.0)


def test_channel_refuses_use_after_break_and_counts_records() -> None:
    keys = ChannelKeys(send_key=b"a" * 32, send_iv=b"i" * 12, recv_key=b"a" * 32, recv_iv=b"i" * 12)
    channel = SecureChannel(keys)
    record = channel.seal(b"hello")
    assert channel.open(record) == b"hello"
    with pytest.raises(ChannelError):
        channel.open(record)
    assert channel.broken
    with pytest.raises(LocalProtocolError):
        channel.seal(b"x")
    with pytest.raises(ChannelError, match="closed"):
        channel.open(record)
    fresh = SecureChannel(keys)
    fresh._send_count = MAX_RECORDS
    with pytest.raises(LocalProtocolError, match="too many"):
        fresh.seal(b"x")
    fresh._recv_count = MAX_RECORDS
    with pytest.raises(ChannelError, match="too many"):
        fresh.open(record)


def test_every_reason_has_a_sentence() -> None:
    for reason in DenialReason:
        assert explain(reason).endswith(".")


def test_revocation_delivery_round_trip() -> None:
    from tether.protocol.session import RevocationAnswered, RevocationReceived

    phone, car = sessions()
    request_id = phone.deliver_revocation(b"signed revocation")
    (event,) = car.receive(phone.data_to_send()[0], now=0.0)
    assert event == RevocationReceived(request_id=request_id, revocation=b"signed revocation")
    car.respond_revocation(request_id, ok=True, seq=7, message="Revoked.")
    (answer,) = phone.receive(car.data_to_send()[0], now=0.0)
    assert isinstance(answer, RevocationAnswered)
    assert answer.result.ok and answer.result.seq == 7 and answer.result.reason is None
    car.respond_revocation(request_id, ok=False, seq=7, reason="revocation_replayed", message="old")
    (answer,) = phone.receive(car.data_to_send()[0], now=0.0)
    assert isinstance(answer, RevocationAnswered) and answer.result.reason == "revocation_replayed"
    with pytest.raises(LocalProtocolError):
        car.respond_revocation(request_id, ok=True, seq=7, reason="x", message="x")


def test_data_requests_and_answers_round_trip_and_refuse_garbage() -> None:
    import cbor2

    from tether.errors import MalformedMessage
    from tether.protocol.messages import DataRequest, DataResponse
    from tether.protocol.session import DataItem, DataReceived, DataRequested

    phone, car = sessions()
    request_id = car.request_data(
        [DataItem(category="contacts", query={"prefix": "A"}), DataItem(category="profile")],
        purpose="show",
    )
    (asked,) = phone.receive(car.data_to_send()[0], now=0.0)
    assert isinstance(asked, DataRequested) and not asked.retain
    assert asked.items == (
        DataItem(category="contacts", query={"prefix": "A"}),
        DataItem(category="profile"),
    )
    phone.respond_data(request_id, granted={"contacts": [{"name": "Ada"}]}, denied=["profile"])
    (got,) = car.receive(phone.data_to_send()[0], now=0.0)
    assert got == DataReceived(
        request_id=request_id, granted={"contacts": [{"name": "Ada"}]}, denied=("profile",)
    )

    for items in (
        b"\xff\xff",
        cbor2.dumps([]),
        cbor2.dumps([1]),
        cbor2.dumps([{"category": 1}]),
        cbor2.dumps([{"category": "a", "extra": 1}]),
        # A query is declared too: a car cannot hand the phone's vault a limit it cannot count
        # with, a huge one, or a key the vault does not know.
        cbor2.dumps([{"category": "contacts", "query": {"limit": "abc"}}], canonical=True),
        cbor2.dumps([{"category": "contacts", "query": {"limit": 10**6}}], canonical=True),
        cbor2.dumps([{"category": "contacts", "query": {"sql": "1=1"}}], canonical=True),
    ):
        phone, car = sessions()
        car._send(DataRequest(request_id=1, items=items, purpose="p", retain=False))
        with pytest.raises(MalformedMessage):
            phone.receive(car.data_to_send()[0], now=0.0)
    for granted, denied in (
        (b"\\xff", cbor2.dumps([])),
        (cbor2.dumps([]), cbor2.dumps([])),
        (cbor2.dumps({1: []}), cbor2.dumps([])),
        (cbor2.dumps({}), cbor2.dumps([1])),
    ):
        phone, car = sessions()
        asked_id = car.request_data([DataItem(category="profile")], purpose="p")
        phone._send(DataResponse(request_id=asked_id, granted=granted, denied=denied))
        with pytest.raises(MalformedMessage, match=r"data response|granted data|denied list"):
            car.receive(phone.data_to_send()[0], now=0.0)


def test_request_ids_increase_and_each_open_request_is_answered_once() -> None:
    from tether.protocol.messages import DataResponse, RangingReady
    from tether.protocol.session import DataItem

    phone, car = sessions()
    assert roundtrip(phone, car, "lock").request_id == 1
    phone._next_id = 1  # a phone that repeats its request id
    phone.request("unlock")
    with pytest.raises(MalformedMessage, match="does not increase"):
        car.receive(phone.data_to_send()[0], now=0.0)
    assert car.state is SessionState.FAILED

    phone, car = sessions()
    phone._send(DataResponse(request_id=1, granted=b"\xa0", denied=b"\x80"))
    with pytest.raises(MalformedMessage, match="not an open request"):
        car.receive(phone.data_to_send()[0], now=0.0)  # the car asked nothing

    phone, car = sessions()
    asked = car.request_data([DataItem(category="profile")], purpose="p")
    phone.respond_data(asked, granted={}, denied=["profile"])
    car.receive(phone.data_to_send()[0], now=0.0)
    phone.respond_data(asked, granted={}, denied=["profile"])  # answered twice
    with pytest.raises(MalformedMessage, match="not an open request"):
        car.receive(phone.data_to_send()[0], now=0.0)

    phone, car = sessions()
    ranging_id = car.request_ranging(nonce=b"N" * 16, anchors=2)
    phone._send(RangingReady(request_id=ranging_id + 1, reply_ns=1))
    with pytest.raises(MalformedMessage, match="not an open request"):
        car.receive(phone.data_to_send()[0], now=0.0)


def test_both_ends_export_the_same_secret_and_it_is_no_channel_key() -> None:
    phone, car = sessions()
    assert phone.exporter == car.exporter and len(phone.exporter) == 32
    assert phone.exporter is phone.exporter  # derived once
    fast_phone, _ = sessions(fast=True)  # another session, another secret
    assert fast_phone.exporter != phone.exporter
    assert phone.exporter not in (phone._keys.send_key, phone._keys.recv_key)


def test_ranging_setup_rides_in_the_session() -> None:
    from tether.protocol import ranging
    from tether.protocol.session import RangingReadied, RangingRequested

    phone, car = sessions()
    request_id = car.request_ranging(nonce=b"N" * 16, anchors=6)
    (asked,) = phone.receive(car.data_to_send()[0], now=0.0)
    assert asked == RangingRequested(request_id=request_id, nonce=b"N" * 16, anchors=6)
    phone.ranging_ready(request_id, reply_ns=250_000)
    (ready,) = car.receive(phone.data_to_send()[0], now=0.0)
    assert ready == RangingReadied(request_id=request_id, reply_ns=250_000)
    nonces = {ranging.anchor_nonce(b"N" * 16, k) for k in range(6)}
    assert len(nonces) == 6 and all(len(n) == 16 for n in nonces)
