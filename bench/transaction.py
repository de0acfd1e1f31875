"""Standard and fast transactions in one process against the cost of their own crypto (the floor).

The floor is what a standard transaction cannot avoid: on each side one P-256 key generation, one
ECDH, one ECDSA sign and one ECDSA verify, timed directly with ``cryptography``. Samples of the
floor, standard and fast transactions are interleaved so that machine noise hits all three alike.
It also counts, for each flow, the on-air flights (runs of messages one way) and the round trips
after the car's greeting until the phone holds the command's result (or, for pairing, the car's
identity), by running the machines in lock step. Ends with exactly one line:
``standard_over_floor=R1 fast_over_standard=R2 fast_round_trips=N1 standard_round_trips=N2``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from rich.console import Console
from rich.table import Table

from tether.protocol import codec
from tether.protocol.crypto import DeterministicEntropy, PublicKey, SystemEntropy
from tether.protocol.messages import Record
from tether.protocol.pairing import CodeState, PhonePairing, VehiclePaired, VehiclePairing
from tether.protocol.pump import pump
from tether.protocol.session import CommandReceived, ResultReceived
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PersistentKeyChanged,
    PhoneTransaction,
    VehicleTransaction,
)


def _Directory(phone: PublicKey) -> MemoryDirectory:
    directory = MemoryDirectory()
    directory.enroll(phone, owner=True)
    return directory


class _Pair:
    """A car and a paired phone, with the persistent key kept on both sides between runs."""

    def __init__(self) -> None:
        self.entropy = SystemEntropy()
        self.vehicle = self.entropy.new_private_key()
        self.phone = self.entropy.new_private_key()
        self.directory = _Directory(self.phone.public_key)
        self.phone_persistent: bytes | None = None

    def wire(self) -> list[bytes]:
        """The four handshake messages of one standard transaction, as sent."""
        sent: list[bytes] = []

        def tap(_sender: object, data: bytes) -> bytes:
            sent.append(data)
            return data

        phone = PhoneTransaction(
            endpoint_key=self.phone,
            vehicle_key=self.vehicle.public_key,
            persistent_key=None,
            entropy=self.entropy,
        )
        phone.start()
        car = VehicleTransaction(
            vehicle_key=self.vehicle, directory=self.directory, entropy=self.entropy
        )
        pump(phone, car, now=0.0, tap=tap)
        return sent

    def transaction(self, *, fast: bool) -> bool:
        phone = PhoneTransaction(
            endpoint_key=self.phone,
            vehicle_key=self.vehicle.public_key,
            persistent_key=self.phone_persistent,
            entropy=self.entropy,
            fast=fast,
        )
        car = VehicleTransaction(
            vehicle_key=self.vehicle, directory=self.directory, entropy=self.entropy
        )
        phone.start()
        established = 0
        for event in pump(phone, car, now=0.0):
            if isinstance(event, PersistentKeyChanged):
                if event.endpoint_id in self.directory.keys and established == 0:
                    self.directory.persistent[event.endpoint_id] = event.key
                else:
                    self.phone_persistent = event.key
            if isinstance(event, Established):
                established += 1
        return established == 2


class _Lockstep:
    """Run a phone and a car one flight at a time (all one side has to send, then the other)."""

    def __init__(
        self, phone: object, car: object, directory: MemoryDirectory | None = None
    ) -> None:
        self.ends: dict[str, object] = {"phone": phone, "car": car}
        self.sessions: dict[str, object] = {}
        self.flights: list[tuple[str, int]] = []  # (sender, messages in the flight)
        self.directory = directory
        self.phone_persistent: bytes | None = None

    def _outbox(self, side: str) -> list[bytes]:
        out: list[bytes] = self.ends[side].data_to_send()  # type: ignore[attr-defined]
        if side in self.sessions:
            out += self.sessions[side].data_to_send()  # type: ignore[attr-defined]
        return out

    def run(self, done: type) -> tuple[int, int]:
        """Flights in all, and round trips after the greeting, until the phone sees ``done``."""
        sender = "car"
        pending = self._outbox(sender)
        while pending:
            self.flights.append((sender, len(pending)))
            receiver = "phone" if sender == "car" else "car"
            for data in pending:
                target = self.ends[receiver]
                if receiver in self.sessions and type(codec.decode(data)) is Record:
                    target = self.sessions[receiver]
                for event in target.receive(data, now=0.0):  # type: ignore[attr-defined]
                    if isinstance(event, Established):
                        self.sessions[receiver] = event.session
                    if isinstance(event, PersistentKeyChanged):  # persisted as a runtime would
                        if receiver == "phone":
                            self.phone_persistent = event.key
                        elif self.directory is not None:
                            self.directory.persistent[event.endpoint_id] = event.key
                    if isinstance(event, CommandReceived):
                        self.sessions["car"].respond(event.request_id, ok=True)  # type: ignore[attr-defined]
                    if receiver == "phone" and isinstance(event, done):
                        flights = len(self.flights)
                        return flights, (flights - 1) // 2
            sender = receiver
            pending = self._outbox(sender)
        raise SystemExit(f"the flow ended before the phone saw {done.__name__}")


def _flows() -> dict[str, tuple[int, int, int]]:
    """(flights, messages, round trips after the greeting) of each flow, counted in lock step."""
    entropy = DeterministicEntropy(b"bench flights")
    vehicle, phone = entropy.new_private_key(), entropy.new_private_key()
    out: dict[str, tuple[int, int, int]] = {}
    pairing_phone = PhonePairing(code="12345678", endpoint_key=phone, name="p", entropy=entropy)
    pairing_phone.start()
    pairing_car = VehiclePairing(
        code=CodeState(code="12345678", expires_at=1.0, used=False, failures=0),
        vehicle_key=vehicle,
        name="c",
        entropy=entropy,
        reserve_guess=lambda: 4,
    )
    step = _Lockstep(pairing_phone, pairing_car)
    flights, trips = step.run(VehiclePaired)
    out["pairing (until the car's identity)"] = (flights, sum(n for _, n in step.flights), trips)
    directory = _Directory(phone.public_key)
    persistent: bytes | None = None
    for name, fast in (("standard unlock", False), ("fast unlock", True)):
        tx = PhoneTransaction(
            endpoint_key=phone,
            vehicle_key=vehicle.public_key,
            persistent_key=persistent,
            entropy=entropy,
            fast=fast,
            early_commands=["unlock"],
        )
        tx.start()
        car = VehicleTransaction(vehicle_key=vehicle, directory=directory, entropy=entropy)
        step = _Lockstep(tx, car, directory)
        flights, trips = step.run(ResultReceived)
        out[f"{name} (until its result)"] = (flights, sum(n for _, n in step.flights), trips)
        persistent = step.phone_persistent
    return out


def _floor_sample(
    car_long: ec.EllipticCurvePrivateKey,
    phone_long: ec.EllipticCurvePrivateKey,
    long_pub: dict[str, ec.EllipticCurvePublicKey],
    sigs: dict[str, bytes],
) -> float:
    """One sample of the crypto floor of a standard transaction, in seconds."""
    algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    curve = ec.SECP256R1()
    data = b"t" * 32
    start = time.perf_counter()
    # Each side generates an ephemeral and agrees with the other side's fresh ephemeral.
    eph_car = ec.generate_private_key(curve)
    eph_phone = ec.generate_private_key(curve)
    eph_car.exchange(ec.ECDH(), eph_phone.public_key())
    eph_phone.exchange(ec.ECDH(), eph_car.public_key())
    # Each side signs once and verifies the other side's signature once.
    car_long.sign(data, algorithm)
    phone_long.sign(data, algorithm)
    long_pub["phone"].verify(sigs["phone"], data, algorithm)
    long_pub["car"].verify(sigs["car"], data, algorithm)
    return time.perf_counter() - start


_X962 = serialization.Encoding.X962
_POINT = serialization.PublicFormat.UncompressedPoint


def _straight_line_sample(
    car_long: ec.EllipticCurvePrivateKey,
    phone_long: ec.EllipticCurvePrivateKey,
    long_pub: dict[str, ec.EllipticCurvePublicKey],
) -> float:
    """A standard transaction's crypto *with its unavoidable glue* and nothing else.

    Same data flow as the protocol (ephemerals through bytes, one HKDF per side, the signatures
    sealed with AES-GCM) but no messages, codec, state machines or sessions: the cheapest any
    implementation of this handshake in Python can be. Printed for context, not used in the ratios.
    """
    algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    curve = ec.SECP256R1()
    start = time.perf_counter()
    eph_p = ec.generate_private_key(curve)
    ep = eph_p.public_key().public_bytes(_X962, _POINT)
    eph_v = ec.generate_private_key(curve)
    ev = eph_v.public_key().public_bytes(_X962, _POINT)
    th = hashlib.sha256(ep + ev).digest()
    z_v = eph_v.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, ep))
    okm_v = HKDF(hashes.SHA256(), 216, th, b"keys").derive(z_v)
    sealed_v = AESGCM(okm_v[:32]).encrypt(bytes(12), car_long.sign(th, algorithm), th)
    z_p = eph_p.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, ev))
    okm_p = HKDF(hashes.SHA256(), 216, th, b"keys").derive(z_p)
    long_pub["car"].verify(AESGCM(okm_p[:32]).decrypt(bytes(12), sealed_v, th), th, algorithm)
    sealed_p = AESGCM(okm_p[32:64]).encrypt(bytes(12), phone_long.sign(th, algorithm), th)
    long_pub["phone"].verify(AESGCM(okm_v[32:64]).decrypt(bytes(12), sealed_p, th), th, algorithm)
    return time.perf_counter() - start


def _codec_sample(wire: list[bytes]) -> float:
    """The codec's share alone: strictly decode and re-encode each handshake message once."""
    start = time.perf_counter()
    for data in wire:
        codec.encode(codec.decode(data))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="samples of each kind")
    args = parser.parse_args()

    algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    car_long = ec.generate_private_key(ec.SECP256R1())
    phone_long = ec.generate_private_key(ec.SECP256R1())
    long_pub = {"car": car_long.public_key(), "phone": phone_long.public_key()}
    sigs = {
        "car": car_long.sign(b"t" * 32, algorithm),
        "phone": phone_long.sign(b"t" * 32, algorithm),
    }
    pair = _Pair()
    assert pair.transaction(fast=False) and pair.transaction(fast=True)  # warm up, check
    wire = pair.wire()
    floor: list[float] = []
    straight: list[float] = []
    coding: list[float] = []
    standard: list[float] = []
    fast: list[float] = []
    for _ in range(args.n):
        floor.append(_floor_sample(car_long, phone_long, long_pub, sigs))
        straight.append(_straight_line_sample(car_long, phone_long, long_pub))
        coding.append(_codec_sample(wire))
        t0 = time.perf_counter()
        ok_standard = pair.transaction(fast=False)
        t1 = time.perf_counter()
        ok_fast = pair.transaction(fast=True)
        t2 = time.perf_counter()
        if not (ok_standard and ok_fast):
            raise SystemExit("a transaction failed during the benchmark")
        standard.append(t1 - t0)
        fast.append(t2 - t1)

    med_floor = statistics.median(floor)
    med_standard = statistics.median(standard)
    med_fast = statistics.median(fast)
    table = Table(title=f"Transactions in process, {args.n} samples each (medians)")
    table.add_column("what")
    table.add_column("median µs", justify="right")
    table.add_column("× floor", justify="right")
    for name, value in (
        ("crypto floor (2 keygen, 2 ECDH, 2 sign, 2 verify)", med_floor),
        ("reference: same crypto + KDF/AEAD glue, straight-line", statistics.median(straight)),
        ("reference: codec only, its 4 messages decoded + encoded", statistics.median(coding)),
        ("standard transaction", med_standard),
        ("fast transaction", med_fast),
    ):
        table.add_row(name, f"{value * 1e6:.1f}", f"{value / med_floor:.2f}")
    console = Console(stderr=True)
    console.print(table)
    flows = _flows()
    on_air = Table(title="On the air: flights and round trips (counted in lock step)")
    on_air.add_column("flow")
    on_air.add_column("flights", justify="right")
    on_air.add_column("messages", justify="right")
    on_air.add_column("round trips after the greeting", justify="right")
    for name, (flights, messages, trips) in flows.items():
        on_air.add_row(name, str(flights), str(messages), str(trips))
    console.print(on_air)
    print(
        f"standard_over_floor={med_standard / med_floor:.2f} "
        f"fast_over_standard={med_fast / med_standard:.2f} "
        f"fast_round_trips={flows['fast unlock (until its result)'][2]} "
        f"standard_round_trips={flows['standard unlock (until its result)'][2]}"
    )


if __name__ == "__main__":
    main()
