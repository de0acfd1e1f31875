"""Owner pairing: the right code pairs; wrong, expired, used or locked codes never do."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import (
    AuthenticationFailed,
    LocalProtocolError,
    MalformedMessage,
    PairingError,
    PeerError,
    ProtocolError,
)
from tether.protocol import codec
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.messages import Error, PairConfirm, PairRequest
from tether.protocol.pairing import (
    PairingState,
    PhoneEnrolled,
    PhonePairing,
    VehiclePaired,
    VehiclePairing,
    check_code,
)
from tether.protocol.pump import pump

from .flows import CODE, GuessBudget, pairing_pair


def test_right_code_pairs_both_sides() -> None:
    phone, car = pairing_pair()
    phone.start()
    events = pump(phone, car, now=0.0)
    enrolled = [e for e in events if isinstance(e, PhoneEnrolled)]
    paired = [e for e in events if isinstance(e, VehiclePaired)]
    assert len(enrolled) == 1 and len(paired) == 1
    assert enrolled[0].name == "Ada's phone"
    assert paired[0].vehicle_name == "Test car"
    assert phone.state is car.state is PairingState.DONE


def test_wrong_code_is_counted_and_reveals_nothing_to_the_phone() -> None:
    phone, car = pairing_pair(phone_code="27182818")
    phone.start()
    with pytest.raises(PairingError) as info:
        pump(phone, car, now=0.0)
    assert info.value.code == "wrong_code"
    assert car.state is PairingState.FAILED
    # The car answers with an Error, never with anything sealed under the (wrong) key.
    (reply,) = car.data_to_send()
    assert codec.decode(reply) == Error(
        code="wrong_code", message="wrong pairing code; 4 tries left"
    )
    with pytest.raises(PeerError, match="wrong pairing code") as peer:
        phone.receive(reply, now=0.0)
    assert peer.value.code == "wrong_code"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"failures": 5}, "pairing_locked"),
        ({"expires_at": 0.0}, "code_expired"),
        ({"used": True}, "no_code"),
    ],
)
def test_unusable_codes_are_refused_before_any_pake(
    overrides: dict[str, object], code: str
) -> None:
    phone, car = pairing_pair(**overrides)  # type: ignore[arg-type]
    phone.start()
    with pytest.raises(PairingError) as info:
        pump(phone, car, now=0.0)
    assert info.value.code == code


def test_each_confirmation_spends_a_guess_before_it_is_tested() -> None:
    budget = GuessBudget(1)
    phone, car = pairing_pair(phone_code="27182818")
    car._reserve_guess = budget  # one guess left in the store
    phone.start()
    with pytest.raises(PairingError, match="no tries left"):
        pump(phone, car, now=0.0)
    # With the budget spent, even the right code is never tested: the store refuses first.
    phone, car = pairing_pair()
    car._reserve_guess = budget
    phone.start()
    with pytest.raises(PairingError) as info:
        pump(phone, car, now=0.0)
    assert info.value.code == "pairing_locked"


def test_no_code_at_all() -> None:
    entropy = DeterministicEntropy(b"x")
    car = VehiclePairing(
        code=None,
        vehicle_key=entropy.new_private_key(),
        name="c",
        entropy=entropy,
        reserve_guess=GuessBudget(5),
    )
    phone = PhonePairing(
        code=CODE, endpoint_key=entropy.new_private_key(), name="p", entropy=entropy
    )
    phone.start()
    with pytest.raises(PairingError, match="no pairing code"):
        pump(phone, car, now=0.0)


@pytest.mark.parametrize("code", ["1234567", "12345678a", "１２３４５６７８", ""])
def test_code_format(code: str) -> None:
    with pytest.raises(PairingError, match="at least 8 digits") as refused:
        check_code(code)
    assert refused.value.code == "invalid_code"
    # §5: the phone refuses before it sends anything; no machine exists to send a share.
    entropy = DeterministicEntropy(b"short")
    with pytest.raises(PairingError) as local:
        PhonePairing(code=code, endpoint_key=entropy.new_private_key(), name="p", entropy=entropy)
    assert local.value.code == "invalid_code"


def test_start_twice_is_a_local_error() -> None:
    phone, _ = pairing_pair()
    phone.start()
    with pytest.raises(LocalProtocolError):
        phone.start()


def test_failed_machine_refuses_further_input() -> None:
    phone, car = pairing_pair(phone_code="27182818")
    phone.start()
    with pytest.raises(PairingError):
        pump(phone, car, now=0.0)
    with pytest.raises(LocalProtocolError, match="failed"):
        car.receive(codec.encode(PairRequest(share=b"\x00" * 65)), now=0.0)


def test_bad_pake_point_is_a_typed_error() -> None:
    _, car = pairing_pair()
    with pytest.raises(PairingError) as info:
        car.receive(codec.encode(PairRequest(share=b"\x04" + b"\xff" * 64)), now=0.0)
    assert info.value.code == "bad_pake_message"


def test_reflected_pake_message_is_refused() -> None:
    phone, car = pairing_pair()
    phone.start()
    phone.receive(car.data_to_send()[0], now=0.0)  # the car's greeting
    (request,) = phone.data_to_send()
    car.receive(request, now=0.0)
    (challenge,) = car.data_to_send()
    # Reflect the phone's own message back to it as if it were the car's.
    reflected = codec.encode(
        type(codec.decode(challenge))(share=codec.decode_as(request, PairRequest).share)  # type: ignore[call-arg]
    )
    with pytest.raises(PairingError):
        phone.receive(reflected, now=0.0)


def _flows() -> list[tuple[str, bytes]]:
    phone, car = pairing_pair()
    phone.start()
    recorded: list[tuple[str, bytes]] = []

    def tap(src: object, data: bytes) -> bytes:
        recorded.append(("phone" if src is phone else "car", data))
        return data

    pump(phone, car, now=0.0, tap=tap)
    return recorded


RECORDED = _flows()


@given(st.integers(0, len(RECORDED) - 1), st.data())
@settings(max_examples=120, deadline=None)
def test_any_flipped_bit_in_any_pairing_message_is_refused(index: int, data: st.DataObject) -> None:
    _, original = RECORDED[index]
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    phone, car = pairing_pair()
    phone.start()
    seen = 0

    def tap(src: object, message: bytes) -> bytes:
        nonlocal seen
        seen += 1
        return bytes(flipped) if seen - 1 == index else message

    with pytest.raises(ProtocolError):
        pump(phone, car, now=0.0, tap=tap)


def test_tampered_sealed_enrolment_is_refused() -> None:
    phone, car = pairing_pair()
    phone.start()
    phone.receive(car.data_to_send()[0], now=0.0)  # the car's greeting
    car.receive(phone.data_to_send()[0], now=0.0)
    phone.receive(car.data_to_send()[0], now=0.0)
    confirm = codec.decode_as(phone.data_to_send()[0], PairConfirm)
    bad = PairConfirm(confirm=confirm.confirm, sealed=confirm.sealed[:-1] + b"\x00")
    with pytest.raises(AuthenticationFailed):
        car.receive(codec.encode(bad), now=0.0)


def test_garbage_is_malformed() -> None:
    _, car = pairing_pair()
    with pytest.raises(MalformedMessage):
        car.receive(b"\x00garbage", now=0.0)


def test_every_code_the_core_raises_is_in_the_closed_set() -> None:
    """A code missing from WireCode would be audited as "unknown": keep the set complete."""
    import re
    from pathlib import Path

    import tether
    from tether.errors import WireCode

    root = Path(tether.__file__).parent
    raised = set()
    for path in [*root.glob("protocol/*.py"), *root.glob("vehicle/*.py")]:
        text = path.read_text()
        raised |= set(re.findall(r"code=\"([a-z_]+)\"", text))
        raised |= set(re.findall(r"\"([a-z]+_bad_signature)\"", text))
    known = {c.value for c in WireCode} | {"missing", "timeout", "usage_error"}
    assert raised - known == set()
