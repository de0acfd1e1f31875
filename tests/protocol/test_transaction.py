"""Standard and fast transactions: who may open the car, and every way an attacker may not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import (
    AuthenticationFailed,
    GrantError,
    LocalProtocolError,
    MalformedMessage,
    PeerError,
    ProtocolError,
    UnexpectedMessage,
)
from tether.protocol import codec
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.messages import (
    Error,
    Fallback,
    FastProof,
    Finished,
    PhoneAuth,
    StandardHello,
    VehicleAuth,
)
from tether.protocol.pump import pump
from tether.protocol.transaction import (
    Established,
    FastFallback,
    PersistentKeyChanged,
    TxState,
)

from .flows import World

Tap = Callable[[object, bytes], bytes | None]


def test_standard_transaction_establishes_matching_sessions() -> None:
    world = World.make()
    phone, car, _events = world.transact(fast=False)
    assert not phone.fast and not car.fast
    assert phone.endpoint_id == car.endpoint_id == world.phone_key.public_key.key_id
    assert world.phone_persistent is not None
    assert world.directory.persistent[car.endpoint_id] == world.phone_persistent
    request = phone.request("unlock")
    (record,) = phone.data_to_send()
    (received,) = car.receive(record, now=0.0)
    assert received.request_id == request  # type: ignore[attr-defined]


def test_fast_transaction_after_standard_and_the_key_ratchets() -> None:
    world = World.make()
    world.transact(fast=False)
    first = world.phone_persistent
    phone, car, _events = world.transact(fast=True)
    assert phone.fast and car.fast
    assert world.phone_persistent != first
    assert world.directory.persistent[car.endpoint_id] == world.phone_persistent
    # Every fast transaction moves the key on again.
    second = world.phone_persistent
    world.transact(fast=True)
    assert world.phone_persistent not in (first, second)


def test_first_transaction_is_standard_even_if_fast_is_asked() -> None:
    world = World.make()
    phone, _, _ = world.transact(fast=True)
    assert not phone.fast


def test_fast_with_an_unknown_key_falls_back_to_standard() -> None:
    world = World.make()
    world.transact(fast=False)
    world.directory.persistent.clear()  # e.g. the car lost its ratchet state
    phone, car, events = world.transact(fast=True)
    assert sum(isinstance(e, FastFallback) for e in events) == 2
    assert not phone.fast and not car.fast


def test_lost_finished_desynchronises_ratchet_then_falls_back() -> None:
    world = World.make()
    world.transact(fast=False)
    phone_tx, car_tx = world.phone_tx(), world.vehicle_tx()
    phone_tx.start()

    def drop_finished(src: object, data: bytes) -> bytes | None:
        return None if isinstance(codec.decode(data), Finished) else data

    pump(phone_tx, car_tx, now=0.0, on_events=world.apply, tap=drop_finished)
    assert world.directory.persistent[world.phone_key.public_key.key_id] != world.phone_persistent
    phone, _, events = world.transact(fast=True)
    assert any(isinstance(e, FastFallback) for e in events)
    assert not phone.fast
    # ...and afterwards the two sides agree again.
    phone, _, _ = world.transact(fast=True)
    assert phone.fast


def test_unknown_phone_is_refused_after_the_car_proved_itself() -> None:
    world = World.make(enrolled=False)
    phone_tx, car_tx = world.phone_tx(), world.vehicle_tx()
    phone_tx.start()
    with pytest.raises(AuthenticationFailed) as info:
        pump(phone_tx, car_tx, now=0.0)
    assert info.value.code == "unknown_key"
    (error,) = car_tx.data_to_send()
    with pytest.raises(PeerError) as peer:
        phone_tx.receive(error, now=0.0)
    assert peer.value.code == "unknown_key"
    assert phone_tx.state is TxState.FAILED


def test_revoked_phone_with_a_leftover_persistent_key_gets_no_fast_session() -> None:
    world = World.make()
    world.transact(fast=False)
    del world.directory.keys[world.phone_key.public_key.key_id]  # revoked
    phone_tx, car_tx = world.phone_tx(), world.vehicle_tx()
    phone_tx.start()
    with pytest.raises(AuthenticationFailed, match="no valid key"):
        pump(phone_tx, car_tx, now=0.0, on_events=world.apply)
    assert car_tx.state is TxState.FAILED


def test_phone_refuses_an_impostor_car() -> None:
    world = World.make()
    impostor = World.make(b"impostor")
    impostor.directory.enroll(world.phone_key.public_key)
    phone_tx = world.phone_tx(fast=False)
    phone_tx.start()
    car_tx = impostor.vehicle_tx()
    with pytest.raises(AuthenticationFailed):
        pump(phone_tx, car_tx, now=0.0)
    # The phone never revealed its identity: it sent only a hello and an error.
    assert phone_tx.state is TxState.FAILED


def test_phone_does_not_reveal_its_key_id_to_an_impostor() -> None:
    world = World.make()
    impostor = World.make(b"impostor")
    impostor.directory.enroll(world.phone_key.public_key)
    phone_tx = world.phone_tx(fast=False)
    phone_tx.start()
    car_tx = impostor.vehicle_tx()
    sent: list[bytes] = []

    def record(src: object, data: bytes) -> bytes:
        if src is phone_tx:
            sent.append(data)
        return data

    with pytest.raises(AuthenticationFailed):
        pump(phone_tx, car_tx, now=0.0, tap=record)
    assert [type(codec.decode(d)) for d in sent] == [StandardHello]
    (error,) = phone_tx.data_to_send()
    assert isinstance(codec.decode(error), Error)
    endpoint_id = world.phone_key.public_key.key_id
    assert all(endpoint_id not in d for d in [*sent, error])


def record_flow(world: World, *, fast: bool) -> list[tuple[str, bytes]]:
    recorded: list[tuple[str, bytes]] = []
    phone_tx, car_tx = world.phone_tx(fast=fast), world.vehicle_tx()
    phone_tx.start()

    def tap(src: object, data: bytes) -> bytes:
        recorded.append(("phone" if src is phone_tx else "car", data))
        return data

    pump(phone_tx, car_tx, now=0.0, on_events=world.apply, tap=tap)
    return recorded


def test_replayed_standard_transaction_is_refused() -> None:
    world = World.make()
    recorded = record_flow(world, fast=False)
    phone_messages = [d for who, d in recorded if who == "phone"]
    car_tx = world.vehicle_tx()
    car_tx.receive(phone_messages[0], now=0.0)  # the old hello gets a fresh challenge...
    with pytest.raises(AuthenticationFailed):
        car_tx.receive(phone_messages[1], now=0.0)  # ...that the old proof cannot answer


def test_replayed_fast_proof_is_refused_and_only_falls_back() -> None:
    world = World.make()
    world.transact(fast=False)
    recorded = record_flow(world, fast=True)
    phone_messages = [d for who, d in recorded if who == "phone"]
    car_tx = world.vehicle_tx()  # a new connection: a new greeting nonce
    events = car_tx.receive(phone_messages[0], now=0.0)  # the recorded proof answered the old one
    assert events == [FastFallback()]
    assert car_tx.state is TxState.AWAIT_STANDARD
    assert isinstance(codec.decode(car_tx.data_to_send()[-1]), Fallback)


def test_reflection_of_the_cars_own_messages_is_refused() -> None:
    world = World.make()
    recorded = record_flow(world, fast=False)
    for who, data in recorded:
        if who != "car":
            continue
        car_tx = world.vehicle_tx()
        with pytest.raises(ProtocolError):
            car_tx.receive(data, now=0.0)


def test_messages_out_of_order_are_refused() -> None:
    world = World.make()
    recorded = record_flow(world, fast=False)
    phone_messages = [d for who, d in recorded if who == "phone"]
    car_tx = world.vehicle_tx()
    with pytest.raises(UnexpectedMessage):
        car_tx.receive(phone_messages[1], now=0.0)


def test_phone_auth_with_a_wrongly_sized_proof_is_malformed() -> None:
    world = World.make()
    phone_tx, car_tx = world.phone_tx(fast=False), world.vehicle_tx()
    phone_tx.start()
    phone_tx.receive(car_tx.data_to_send()[0], now=0.0)  # the car's greeting
    car_tx.receive(phone_tx.data_to_send()[0], now=0.0)
    # Seal a short proof under the right key: only the car's own derivation can, so go through
    # the phone with its key id cut short.
    phone_tx._endpoint_id = b"short"
    phone_tx.receive(car_tx.data_to_send()[0], now=0.0)
    with pytest.raises(MalformedMessage, match="key id and a signature"):
        car_tx.receive(phone_tx.data_to_send()[0], now=0.0)


def test_start_twice_is_a_local_error() -> None:
    world = World.make()
    phone_tx = world.phone_tx()
    phone_tx.start()
    with pytest.raises(LocalProtocolError):
        phone_tx.start()


def test_established_events_come_after_the_key_to_persist() -> None:
    world = World.make()
    _, _, events = world.transact(fast=False)
    kinds = [type(e) for e in events]
    assert kinds == [PersistentKeyChanged, Established, PersistentKeyChanged, Established]


RECORDED_STANDARD = record_flow(World.make(b"flip"), fast=False)
_fast_world = World.make(b"flip-fast")
_fast_world.transact(fast=False)
FAST_SNAPSHOT = (_fast_world.phone_persistent, dict(_fast_world.directory.persistent))
RECORDED_FAST = record_flow(_fast_world, fast=True)


def _flip(original: bytes, bit: int) -> bytes:
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def _tap_replacing(index: int, replacement: bytes) -> Tap:
    seen = -1

    def tap(src: object, data: bytes) -> bytes:
        nonlocal seen
        seen += 1
        return replacement if seen == index else data

    return tap


@given(st.integers(0, len(RECORDED_STANDARD) - 1), st.data())
@settings(max_examples=300, deadline=None)
def test_any_flipped_bit_in_a_standard_transaction_is_refused(i: int, data: st.DataObject) -> None:
    original = RECORDED_STANDARD[i][1]
    flipped = _flip(original, data.draw(st.integers(0, len(original) * 8 - 1)))
    world = World.make(b"flip")
    with pytest.raises(ProtocolError):
        world.transact(fast=False, tap=_tap_replacing(i, flipped))


@given(st.integers(0, len(RECORDED_FAST) - 1), st.data())
@settings(max_examples=300, deadline=None)
def test_any_flipped_bit_in_a_fast_transaction_never_yields_a_fast_session(
    i: int, data: st.DataObject
) -> None:
    original = RECORDED_FAST[i][1]
    flipped = _flip(original, data.draw(st.integers(0, len(original) * 8 - 1)))
    world = World.make(b"flip-fast")
    world.transact(fast=False)
    world.phone_persistent, world.directory.persistent = FAST_SNAPSHOT[0], dict(FAST_SNAPSHOT[1])
    tap = _tap_replacing(i, flipped)
    try:
        phone, car, events = world.transact(fast=True, tap=tap)
    except ProtocolError:
        return
    # A flipped nonce or cryptogram can only cost the fast path: the pair falls back to a full
    # standard transaction, never to a fast session the car did not authenticate.
    assert any(isinstance(e, FastFallback) for e in events)
    assert not phone.fast and not car.fast


def test_hello_messages_do_not_identify_the_phone() -> None:
    world = World.make()
    world.transact(fast=False)
    for fast in (False, True):
        hello = next(d for who, d in record_flow(world, fast=fast) if who == "phone")
        msg = codec.decode(hello)
        assert isinstance(msg, StandardHello | FastProof)
        assert world.phone_key.public_key.key_id not in hello
        assert world.phone_key.public_key.encoded not in hello


def test_fast_proof_names_no_key_and_differs_every_time() -> None:
    world = World.make()
    world.transact(fast=False)
    proofs = []
    for _ in range(3):
        recorded = record_flow(world, fast=True)
        proofs += [d for _, d in recorded if isinstance(codec.decode(d), FastProof)]
    assert len(set(proofs)) == 3


def test_car_finds_the_right_phone_among_many() -> None:
    world = World.make()
    entropy = DeterministicEntropy(b"crowd")
    for _ in range(200):
        other = entropy.new_private_key()
        world.directory.enroll(other.public_key)
        world.directory.persistent[other.public_key.key_id] = entropy.random_bytes(32)
    world.transact(fast=False)
    _phone, car, _ = world.transact(fast=True)
    assert car.fast and car.endpoint_id == world.phone_key.public_key.key_id


@pytest.mark.parametrize("cls", [VehicleAuth, Finished, PhoneAuth])
def test_wrong_message_for_the_state_is_unexpected(cls: type) -> None:
    from .flows import sample_message

    car_tx = World.make().vehicle_tx()
    with pytest.raises(UnexpectedMessage):
        car_tx.receive(codec.encode(sample_message(cls)), now=0.0)
    assert car_tx.state is TxState.FAILED


# -- first use of a shared key ---------------------------------------------------------------------
def _friend_world(*, holder_is_grantee: bool = True) -> tuple[World, bytes]:
    from tether.protocol import credentials

    world = World.make(b"friend")
    friend = world.entropy.new_private_key()
    grant = credentials.issue_grant(
        world.phone_key,  # the owner's key signs
        grantee=friend.public_key,
        vehicle_id=world.vehicle_key.public_key.key_id,
        rights=frozenset({"unlock"}),
        not_before=0,
        expires=10**10,
        serial=b"\x05" * 16,
        issued_at=0,
    )
    if holder_is_grantee:
        world.phone_key = friend  # the friend's phone now runs the transactions
    else:
        world.phone_key = world.entropy.new_private_key()  # someone who copied the grant file
    return world, credentials.encode_chain([grant])


def test_a_granted_key_enrols_on_first_use_and_then_goes_fast() -> None:
    from tether.protocol.transaction import CredentialAccepted

    world, credential = _friend_world()
    phone_tx = world.phone_tx(fast=False)
    phone_tx._credential = credential
    car_tx = world.vehicle_tx()
    phone_tx.start()
    events = pump(phone_tx, car_tx, now=100.0, on_events=world.apply)
    accepted = [e for e in events if isinstance(e, CredentialAccepted)]
    assert len(accepted) == 1 and accepted[0].chain.leaf.rights == {"unlock"}
    world.directory.enroll(accepted[0].chain.leaf.grantee)  # what the key store does
    phone, car, _ = world.transact(fast=True)
    assert phone.fast and car.endpoint_id == world.phone_key.public_key.key_id


def test_a_copied_grant_is_useless_without_its_private_key() -> None:

    world, credential = _friend_world(holder_is_grantee=False)
    phone_tx = world.phone_tx(fast=False)
    phone_tx._credential = credential
    car_tx = world.vehicle_tx()
    phone_tx.start()
    with pytest.raises(GrantError) as info:
        pump(phone_tx, car_tx, now=100.0)
    assert info.value.code == "grant_key_mismatch"


def test_claiming_the_grantees_id_without_its_key_fails_the_signature() -> None:
    world, credential = _friend_world()
    thief = world.entropy.new_private_key()
    phone_tx = world.phone_tx(fast=False)
    phone_tx._credential = credential
    phone_tx._endpoint_key = thief  # signs with its own key but names the friend's key id
    car_tx = world.vehicle_tx()
    phone_tx.start()
    with pytest.raises(AuthenticationFailed):
        pump(phone_tx, car_tx, now=100.0)
