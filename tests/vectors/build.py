"""Build the protocol v2 test vectors from fixed keys and randomness; `--write` refreshes the JSON.

Each vector lists its inputs (private scalars, every random draw, names, times, commands) and the
values derived from them by the formulas of docs/protocol.md, which this script recomputes from the
spec's formulas and checks against the messages the state machines emit. `test_recompute.py` then
recomputes every derived value once more from the JSON alone, with cbor2, hashlib and cryptography
and without importing tether.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2

from tether.errors import ProtocolError
from tether.protocol import codec, cose, credentials, crypto, pairing, ranging, remote, spake2plus
from tether.protocol.commands import Command, DenialReason
from tether.protocol.crypto import Aead, DeterministicEntropy, PrivateKey
from tether.protocol.messages import (
    PairAccept,
    PairConfirm,
    PhoneAuth,
    Record,
    VehicleAuth,
)
from tether.protocol.pairing import CodeState, PhonePairing, VehiclePairing
from tether.protocol.session import (
    CommandReceived,
    DataItem,
    PhoneSession,
    RevocationReceived,
    VehicleSession,
)
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PhoneTransaction,
    VehicleTransaction,
)

HERE = Path(__file__).parent
VEHICLE_SEED = b"tether vector vehicle"
PHONE_SEED = b"tether vector phone"
OWNER_SEED = b"tether vector owner"
FRIEND_SEED = b"tether vector friend"
CODE = "12345678"
NOW = 1798765200  # 2027-01-01T01:00:00Z: inside the grant's window
_ZERO = bytes(12)


def hx(data: bytes) -> str:
    return data.hex()


def draws(entropy: DeterministicEntropy, start: int = 0) -> list[dict[str, str]]:
    """The random values a side drew, in order: "scalar" (a private key) or "bytes" (a nonce)."""
    return [{"kind": kind, "value": hx(value)} for kind, value in entropy.draws[start:]]


def _entry(sender: str, data: bytes) -> dict[str, str]:
    return {"from": sender, "type": type(codec.decode(data)).__name__, "hex": hx(data)}


class Run:
    """Car and phone exchanging messages (the car speaks first), recorded as the wire shows them.

    Once a side's transaction is established, records go to that side's session, as the runtimes
    route them; a refusal's Error is delivered and recorded too.
    """

    def __init__(self, phone: Any, car: Any, *, now: float) -> None:
        self.now = now
        self.phone: Any = phone
        self.car: Any = car
        self.log: list[dict[str, str]] = []
        self.events: dict[str, list[object]] = {"phone": [], "vehicle": []}
        self.errors: list[str] = []

    def session(self, side: str) -> Any:
        for event in self.events[side]:
            if isinstance(event, Established):
                return event.session
        raise AssertionError(f"no session on the {side}'s side")

    def go(self, *, respond: Callable[[VehicleSession, object], None] | None = None) -> Run:
        queue = [("phone", d) for d in self.car.data_to_send()]
        while queue:
            to, data = queue.pop(0)
            sender = "vehicle" if to == "phone" else "phone"
            self.log.append(_entry(sender, data))
            machine = self.phone if to == "phone" else self.car
            if type(codec.decode(data)) is Record and any(
                isinstance(e, Established) for e in self.events[to]
            ):
                machine = self.session(to)
            try:
                got = machine.receive(data, now=self.now)
            except ProtocolError as exc:
                self.errors.append(f"{to}: {exc.code}")
                got = []
            self.events[to] += got
            for event in got:
                if to == "vehicle" and respond is not None and isinstance(event, CommandReceived):
                    respond(self.session("vehicle"), event)
            outgoing = machine.data_to_send()
            if any(isinstance(e, Established) for e in self.events[to]):
                session = self.session(to)
                if session is not machine:
                    outgoing += session.data_to_send()
            queue += [("vehicle" if to == "phone" else "phone", d) for d in outgoing]
        return self


def _message(log: list[dict[str, str]], index: int) -> codec.Message:
    return codec.decode(bytes.fromhex(log[index]["hex"]))


def _unlock_result(session: VehicleSession, event: object) -> None:
    if isinstance(event, CommandReceived):
        session.respond(
            event.request_id, ok=True, state={"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": False}
        )


def _channel(okm: bytes) -> dict[str, str]:
    """The session keys as §6.4 splits the 152 bytes."""
    return {
        "key_p2v": hx(okm[0:32]),
        "key_v2p": hx(okm[32:64]),
        "iv_p2v": hx(okm[64:76]),
        "iv_v2p": hx(okm[76:88]),
        "persistent": hx(okm[88:120]),
        "finished": hx(okm[120:152]),
    }


def _record_nonce(iv: bytes, counter: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ counter).to_bytes(12, "big")


def _records(log: list[dict[str, str]], okm: bytes) -> list[dict[str, Any]]:
    """Every record of a log, opened with the session keys (§7): counter, nonce, plaintext."""
    counters = {"phone": 0, "vehicle": 0}
    out = []
    for index, entry in enumerate(log):
        if entry["type"] != "Record":
            continue
        sender = entry["from"]
        key, iv = (okm[0:32], okm[64:76]) if sender == "phone" else (okm[32:64], okm[76:88])
        nonce = _record_nonce(iv, counters[sender])
        ciphertext = codec.decode_as(bytes.fromhex(entry["hex"]), Record).ciphertext
        plain = Aead(key).open(nonce, ciphertext, b"tether/2 record")
        out.append(
            {
                "message": index,
                "from": sender,
                "counter": counters[sender],
                "nonce": hx(nonce),
                "plaintext": hx(plain),
                "plaintext_type": type(codec.decode(plain)).__name__,
            }
        )
        counters[sender] += 1
    return out


# -- owner pairing (§5) ---------------------------------------------------------------------------
def pairing_vector() -> dict[str, Any]:
    car_entropy = DeterministicEntropy(VEHICLE_SEED)
    phone_entropy = DeterministicEntropy(PHONE_SEED)
    vehicle_key = car_entropy.new_private_key()
    phone_key = phone_entropy.new_private_key()
    car_mark, phone_mark = len(car_entropy.draws), len(phone_entropy.draws)
    phone = PhonePairing(code=CODE, endpoint_key=phone_key, name="Phone", entropy=phone_entropy)
    car = VehiclePairing(
        code=CodeState(code=CODE, expires_at=1.0, used=False, failures=0),
        vehicle_key=vehicle_key,
        name="Car",
        entropy=car_entropy,
        reserve_guess=lambda: 4,
    )
    phone.start()
    run = Run(phone, car, now=0.0).go()
    log = run.log
    assert [e["type"] for e in log] == [
        "VehicleHello",
        "PairRequest",
        "PairChallenge",
        "PairConfirm",
        "PairAccept",
    ]
    greeting = bytes.fromhex(draws(car_entropy, car_mark)[0]["value"])
    x = int.from_bytes(bytes.fromhex(draws(phone_entropy, phone_mark)[0]["value"]), "big")
    y = int.from_bytes(bytes.fromhex(draws(car_entropy, car_mark)[1]["value"]), "big")

    # The spec's formulas, step by step (RFC 9383 §3 with tether's parameters).
    ids = pairing.PAKE_IDS
    pw_input = spake2plus.password_input(CODE.encode(), ids)
    material = crypto.pbkdf2(
        pw_input, salt=pairing.PBKDF_SALT, iterations=pairing.PBKDF_ITERATIONS, length=80
    )
    secret = spake2plus.split_w(material)
    g = spake2plus._G
    share_p = spake2plus.encode(g * x + spake2plus.M * secret.w0)
    share_v = spake2plus.encode(g * y + spake2plus.N * secret.w0)
    assert share_p == _message(log, 1).share  # type: ignore[attr-defined]
    assert share_v == _message(log, 2).share  # type: ignore[attr-defined]
    base = spake2plus._point(share_p) + (-(spake2plus.M * secret.w0))
    z = spake2plus.encode(base * y)
    v = spake2plus.encode(spake2plus._point(secret.verifier().L) * y)
    tt = b"".join(
        len(part).to_bytes(8, "little") + part
        for part in (
            ids.context,
            ids.prover,
            ids.verifier,
            spake2plus.encode(spake2plus.M),
            spake2plus.encode(spake2plus.N),
            share_p,
            share_v,
            z,
            v,
            secret.w0.to_bytes(32, "big"),
        )
    )
    k_main = crypto.sha256(tt)
    confirmation = crypto.hkdf(k_main, salt=b"", info=b"ConfirmationKeys", length=64)
    k_shared = crypto.hkdf(k_main, salt=b"", info=b"SharedKey", length=32)
    confirm_p = crypto.mac(confirmation[:32], share_v)
    confirm_v = crypto.mac(confirmation[32:], share_p)
    th = crypto.sha256(b"tether/2 pairing transcript" + greeting + share_p + share_v)
    seal = crypto.hkdf(k_shared, salt=th, info=b"tether/2 pairing keys", length=64)
    confirm_msg = _message(log, 3)
    accept_msg = _message(log, 4)
    assert isinstance(confirm_msg, PairConfirm) and isinstance(accept_msg, PairAccept)
    assert confirm_msg.confirm == confirm_p and accept_msg.confirm == confirm_v
    enrollment = Aead(seal[:32]).open(_ZERO, confirm_msg.sealed, th)
    identity = Aead(seal[32:]).open(_ZERO, accept_msg.sealed, th)
    return {
        "description": "Owner pairing with code 12345678 (docs/protocol.md §5)",
        "inputs": {
            "code": CODE,
            "context": ids.context.decode(),
            "id_prover": ids.prover.decode(),
            "id_verifier": ids.verifier.decode(),
            "pbkdf2_hmac_sha256": {
                "salt": pairing.PBKDF_SALT.decode(),
                "iterations": pairing.PBKDF_ITERATIONS,
                "length": 80,
            },
            "vehicle_private_scalar": hx(vehicle_key.scalar()),
            "phone_private_scalar": hx(phone_key.scalar()),
            "vehicle_name": "Car",
            "phone_name": "Phone",
            "vehicle_draws": draws(car_entropy, car_mark),
            "phone_draws": draws(phone_entropy, phone_mark),
        },
        "derived": {
            "greeting_nonce": hx(greeting),
            "x": f"{x:064x}",
            "y": f"{y:064x}",
            "pbkdf_input": hx(pw_input),
            "w0": f"{secret.w0:064x}",
            "w1": f"{secret.w1:064x}",
            "L": hx(secret.verifier().L),
            "M": hx(spake2plus.encode(spake2plus.M)),
            "N": hx(spake2plus.encode(spake2plus.N)),
            "share_p": hx(share_p),
            "share_v": hx(share_v),
            "Z": hx(z),
            "V": hx(v),
            "TT": hx(tt),
            "K_main": hx(k_main),
            "K_confirmP": hx(confirmation[:32]),
            "K_confirmV": hx(confirmation[32:]),
            "K_shared": hx(k_shared),
            "confirm_p": hx(confirm_p),
            "confirm_v": hx(confirm_v),
            "transcript_hash": hx(th),
            "seal_phone_key": hx(seal[:32]),
            "seal_vehicle_key": hx(seal[32:]),
            "phone_enrollment": hx(enrollment),
            "vehicle_identity": hx(identity),
        },
        "messages": log,
    }


# -- transactions (§6) ----------------------------------------------------------------------------
class _Keys:
    def __init__(self) -> None:
        self.car_entropy = DeterministicEntropy(VEHICLE_SEED)
        self.phone_entropy = DeterministicEntropy(PHONE_SEED)
        self.vehicle = self.car_entropy.new_private_key()
        self.phone = self.phone_entropy.new_private_key()
        self.friend_entropy = DeterministicEntropy(FRIEND_SEED)
        self.friend = self.friend_entropy.new_private_key()
        self.directory = MemoryDirectory()
        self.directory.enroll(self.phone.public_key, owner=True)

    def marks(self, phone: DeterministicEntropy | None = None) -> tuple[int, int]:
        return len(self.car_entropy.draws), len((phone or self.phone_entropy).draws)

    def car(self) -> VehicleTransaction:
        return VehicleTransaction(
            vehicle_key=self.vehicle,
            directory=self.directory,
            entropy=self.car_entropy,
        )


def _standard(
    keys: _Keys,
    *,
    description: str,
    endpoint: PrivateKey,
    entropy: DeterministicEntropy,
    credential: bytes | None = None,
) -> tuple[dict[str, Any], bytes]:
    car_mark, phone_mark = keys.marks(entropy)
    phone_tx = PhoneTransaction(
        endpoint_key=endpoint,
        vehicle_key=keys.vehicle.public_key,
        persistent_key=None,
        entropy=entropy,
        credential=credential,
    )
    phone_tx.start()
    run = Run(phone_tx, keys.car(), now=float(NOW)).go()
    log = run.log
    assert [e["type"] for e in log] == [
        "VehicleHello",
        "StandardHello",
        "VehicleAuth",
        "PhoneAuth",
        "Finished",
    ], log
    greeting = bytes.fromhex(draws(keys.car_entropy, car_mark)[0]["value"])
    hello, vauth, pauth = _message(log, 1), _message(log, 2), _message(log, 3)
    assert isinstance(vauth, VehicleAuth) and isinstance(pauth, PhoneAuth)
    phone_eph = PrivateKey.from_scalar(bytes.fromhex(draws(entropy, phone_mark)[0]["value"]))
    vehicle_id = keys.vehicle.public_key.key_id
    th1 = crypto.sha256(
        b"tether/2 standard"
        + greeting
        + hello.ephemeral  # type: ignore[attr-defined]
        + hello.nonce  # type: ignore[attr-defined]
        + vauth.ephemeral
        + vauth.nonce
        + vehicle_id
    )
    shared = phone_eph.exchange(crypto.PublicKey(vauth.ephemeral))
    okm = crypto.hkdf(shared, salt=th1, info=b"tether/2 standard keys", length=216)
    hs_v2p, hs_p2v, session = okm[:32], okm[32:64], okm[64:]
    signature_v = Aead(hs_v2p).open(_ZERO, vauth.sealed, th1)
    keys.vehicle.public_key.verify(signature_v, b"tether/2 vehicle-auth" + th1)
    proof = Aead(hs_p2v).open(_ZERO, pauth.sealed, th1)
    endpoint_id = endpoint.public_key.key_id
    assert proof[:16] == endpoint_id
    endpoint.public_key.verify(proof[16:80], b"tether/2 phone-auth" + th1 + endpoint_id)
    assert proof[80:] == (credential or b"")
    th2 = crypto.sha256(th1 + vauth.sealed + pauth.sealed)
    assert _message(log, 4).mac == crypto.mac(session[120:152], th2)  # type: ignore[attr-defined]
    keys.directory.persistent[endpoint_id] = session[88:120]
    return {
        "description": description,
        "endpoint_private_scalar": hx(endpoint.scalar()),
        "endpoint_id": hx(endpoint_id),
        "vehicle_draws": draws(keys.car_entropy, car_mark),
        "phone_draws": draws(entropy, phone_mark),
        "greeting_nonce": hx(greeting),
        "th1": hx(th1),
        "shared_secret": hx(shared),
        "okm": hx(okm),
        "handshake_v2p": hx(hs_v2p),
        "handshake_p2v": hx(hs_p2v),
        "session": _channel(session),
        "vehicle_auth_plaintext": hx(signature_v),
        "phone_auth_plaintext": hx(proof),
        "credential": hx(credential) if credential else None,
        "th2": hx(th2),
        "messages": log,
    }, session[88:120]


def _fast(
    keys: _Keys, persistent: bytes, *, description: str, early: tuple[str, ...] = ()
) -> dict[str, Any]:
    car_mark, phone_mark = keys.marks()
    phone_tx = PhoneTransaction(
        endpoint_key=keys.phone,
        vehicle_key=keys.vehicle.public_key,
        persistent_key=persistent,
        entropy=keys.phone_entropy,
        early_commands=early,
    )
    phone_tx.start()
    run = Run(phone_tx, keys.car(), now=float(NOW)).go(respond=_unlock_result)
    log = run.log
    greeting = bytes.fromhex(draws(keys.car_entropy, car_mark)[0]["value"])
    proof = _message(log, 1)
    th = crypto.sha256(
        b"tether/2 fast" + greeting + proof.nonce + keys.vehicle.public_key.key_id  # type: ignore[attr-defined]
    )
    assert proof.cryptogram == crypto.mac(persistent, b"tether/2 fast-phone" + th)  # type: ignore[attr-defined]
    okm = crypto.hkdf(persistent, salt=th, info=b"tether/2 fast session", length=152)
    finished = next(_message(log, i) for i, e in enumerate(log) if e["type"] == "Finished")
    assert finished.mac == crypto.mac(okm[120:152], th + proof.cryptogram)  # type: ignore[attr-defined]
    keys.directory.persistent[keys.phone.public_key.key_id] = okm[88:120]
    return {
        "description": description,
        "persistent_key": hx(persistent),
        "early_commands": list(early),
        "vehicle_draws": draws(keys.car_entropy, car_mark),
        "phone_draws": draws(keys.phone_entropy, phone_mark),
        "greeting_nonce": hx(greeting),
        "th": hx(th),
        "okm": hx(okm),
        "session": _channel(okm),
        "records": _records(log, okm),
        "messages": log,
    }


def _fallback(keys: _Keys, stale: bytes) -> dict[str, Any]:
    """A fast proof under a key the car no longer holds: Fallback, then standard in place."""
    car_mark, phone_mark = keys.marks()
    phone_tx = PhoneTransaction(
        endpoint_key=keys.phone,
        vehicle_key=keys.vehicle.public_key,
        persistent_key=stale,
        entropy=keys.phone_entropy,
        early_commands=("unlock",),
    )
    phone_tx.start()
    run = Run(phone_tx, keys.car(), now=float(NOW)).go(respond=_unlock_result)
    types = [e["type"] for e in run.log]
    assert types[:4] == ["VehicleHello", "FastProof", "Record", "Fallback"], types
    assert types[4:] == [
        "StandardHello",
        "VehicleAuth",
        "PhoneAuth",
        "Record",  # the early unlock again, now behind the standard proof
        "Finished",
        "Record",  # its result
    ], types
    return {
        "description": "Fast proof under a stale persistent key: the car discards the early"
        " record, answers Fallback, and the same connection runs a standard transaction (§6.3)",
        "stale_persistent_key": hx(stale),
        "vehicle_draws": draws(keys.car_entropy, car_mark),
        "phone_draws": draws(keys.phone_entropy, phone_mark),
        "messages": run.log,
    }


def _error(keys: _Keys) -> dict[str, Any]:
    """A key the car never enrolled: the car refuses with Error unknown_key and ends."""
    stranger_entropy = DeterministicEntropy(b"tether vector stranger")
    stranger = stranger_entropy.new_private_key()
    car_mark, phone_mark = keys.marks(stranger_entropy)
    phone_tx = PhoneTransaction(
        endpoint_key=stranger,
        vehicle_key=keys.vehicle.public_key,
        persistent_key=None,
        entropy=stranger_entropy,
    )
    phone_tx.start()
    run = Run(phone_tx, keys.car(), now=float(NOW)).go()
    assert run.log[-1]["type"] == "Error" and run.errors == [
        "vehicle: unknown_key",
        "phone: unknown_key",  # the phone reads the Error as the car's refusal
    ], run.errors
    error = _message(run.log, -1)
    return {
        "description": "A phone whose key the car does not know: Error unknown_key (§10)",
        "endpoint_private_scalar": hx(stranger.scalar()),
        "vehicle_draws": draws(keys.car_entropy, car_mark),
        "phone_draws": draws(stranger_entropy, phone_mark),
        "error_code": error.code,  # type: ignore[attr-defined]
        "error_message": error.message,  # type: ignore[attr-defined]
        "messages": run.log,
    }


def _friend_grant(keys: _Keys, owner: PrivateKey) -> bytes:
    return credentials.issue_grant(
        owner,
        grantee=keys.friend.public_key,
        vehicle_id=keys.vehicle.public_key.key_id,
        rights=frozenset({"unlock", "lock"}),
        not_before=1798761600,
        expires=1798934400,
        serial=bytes(range(16)),
        issued_at=1798675200,
        limits=credentials.Limits(hours=(0, 24)),
        label="Bea",
    )


def _session(keys: _Keys, persistent: bytes, owner: PrivateKey) -> dict[str, Any]:
    """One fast session carrying a command, a data request, a revocation and ranging setup."""
    car_mark, phone_mark = keys.marks()
    phone_tx = PhoneTransaction(
        endpoint_key=keys.phone,
        vehicle_key=keys.vehicle.public_key,
        persistent_key=persistent,
        entropy=keys.phone_entropy,
    )
    phone_tx.start()
    run = Run(phone_tx, keys.car(), now=float(NOW)).go()
    phone = run.session("phone")
    car = run.session("vehicle")
    assert isinstance(phone, PhoneSession) and isinstance(car, VehicleSession)
    start = len(run.log)

    def deliver(src: Any, dst: Any, sender: str) -> list[object]:
        got: list[object] = []
        for data in src.data_to_send():
            run.log.append(_entry(sender, data))
            got += dst.receive(data, now=float(NOW))
        return got

    phone.request(Command.START)  # a fast session may not start the engine: denied
    for event in deliver(phone, car, "phone"):
        assert not isinstance(event, CommandReceived)
    deliver(car, phone, "vehicle")
    phone.request(Command.TRUNK)
    for event in deliver(phone, car, "phone"):
        if isinstance(event, CommandReceived):
            car.respond(event.request_id, ok=False, reason=DenialReason.NO_RIGHT)
    deliver(car, phone, "vehicle")
    asked = car.request_data(
        [DataItem(category="contacts", query={"prefix": "A"}), DataItem(category="profile")],
        purpose="Navigation: show your contacts",
    )
    deliver(car, phone, "vehicle")
    phone.respond_data(
        asked, granted={"contacts": [{"name": "Ada", "tel": "+491701234567"}]}, denied=["profile"]
    )
    deliver(phone, car, "phone")
    revocation = credentials.issue_revocation(
        owner,
        vehicle_id=keys.vehicle.public_key.key_id,
        seq=1,
        grants=[bytes(range(16))],
        issued_at=NOW,
    )
    phone.deliver_revocation(revocation)
    for event in deliver(phone, car, "phone"):
        assert isinstance(event, RevocationReceived)
        car.respond_revocation(event.request_id, ok=True, seq=1, message="Revoked 1 grant.")
    deliver(car, phone, "vehicle")
    nonce = keys.car_entropy.random_bytes(ranging.NONCE_SIZE)
    ranging_id = car.request_ranging(nonce=nonce, anchors=2)
    deliver(car, phone, "vehicle")
    phone.ranging_ready(ranging_id, reply_ns=250_000)
    deliver(phone, car, "phone")
    phone.close()
    deliver(phone, car, "phone")

    proof = _message(run.log, 1)
    greeting = bytes.fromhex(draws(keys.car_entropy, car_mark)[0]["value"])
    th = crypto.sha256(
        b"tether/2 fast" + greeting + proof.nonce + keys.vehicle.public_key.key_id  # type: ignore[attr-defined]
    )
    okm = crypto.hkdf(persistent, salt=th, info=b"tether/2 fast session", length=152)
    exporter = crypto.hkdf(okm[0:32] + okm[32:64], salt=b"", info=b"tether/2 exporter", length=32)
    assert exporter == car.exporter == phone.exporter
    k_rng = ranging.ranging_key(exporter)
    anchors = []
    for anchor in range(2):
        anchor_nonce = ranging.anchor_nonce(nonce, anchor)
        challenges = [0x00, 0x5A, 0xA5, 0xFF, 0x42]
        anchors.append(
            {
                "anchor": anchor,
                "nonce": hx(anchor_nonce),
                "challenges": challenges,
                "responses": [
                    ranging.response(k_rng, anchor_nonce, i, c) for i, c in enumerate(challenges)
                ],
            }
        )
    return {
        "description": "One fast session: start denied (fast_not_allowed), trunk denied by the car's policy (no_right),"
        " a data request and its answer, a revocation delivered and acknowledged, ranging set up,"
        " then Close (§8, §13)",
        "persistent_key": hx(persistent),
        "vehicle_draws": draws(keys.car_entropy, car_mark),
        "phone_draws": draws(keys.phone_entropy, phone_mark),
        "greeting_nonce": hx(greeting),
        "th": hx(th),
        "session": _channel(okm),
        "revocation": hx(revocation),
        "exporter": hx(exporter),
        "ranging_key": hx(k_rng),
        "ranging_nonce": hx(nonce),
        "ranging_anchors": anchors,
        "records": [r for r in _records(run.log, okm) if r["message"] >= start],
        "messages": run.log,
    }


def transaction_vectors() -> dict[str, Any]:
    keys = _Keys()
    # The owner key of the car is the phone's key here; the friend's grant is issued by it.
    owner = keys.phone
    standard, persistent = _standard(
        keys,
        description="Standard transaction with a key the car enrolled at pairing: no credential"
        " follows the proof (§6.2)",
        endpoint=keys.phone,
        entropy=keys.phone_entropy,
    )
    grant = _friend_grant(keys, owner)
    credential = credentials.encode_chain([grant])
    friend, _ = _standard(
        keys,
        description="Standard transaction, first use of a shared key: the credential (a CBOR"
        " array of COSE_Sign1 grants, root first) follows the 80-byte proof (§6.2, §9)",
        endpoint=keys.friend,
        entropy=keys.friend_entropy,
        credential=credential,
    )
    fast = _fast(keys, persistent, description="Fast transaction, no early command (§6.3)")
    early = _fast(
        keys,
        bytes.fromhex(fast["session"]["persistent"]),
        description="Fast transaction with unlock as an early record behind the proof: one round"
        " trip to the result (§6.3, §8.1)",
        early=("unlock",),
    )
    fallback = _fallback(keys, stale=persistent)  # an earlier key: the chain moved on
    current = keys.directory.persistent[keys.phone.public_key.key_id]
    session = _session(keys, current, owner)
    error = _error(keys)
    return {
        "vehicle_private_scalar": hx(keys.vehicle.scalar()),
        "vehicle_id": hx(keys.vehicle.public_key.key_id),
        "now": NOW,
        "standard": standard,
        "standard_with_credential": friend,
        "fast": fast,
        "fast_with_early_record": early,
        "fallback": fallback,
        "session": session,
        "error": error,
    }


# -- grants (§9) and cloud objects (§14) ----------------------------------------------------------
def grant_vector() -> dict[str, Any]:
    """One grant, fixed keys and serial, as docs/grant-vector.md walks through it byte by byte."""
    owner = DeterministicEntropy(OWNER_SEED).new_private_key()
    friend = DeterministicEntropy(FRIEND_SEED).new_private_key()
    vehicle = DeterministicEntropy(VEHICLE_SEED).new_private_key()
    inputs = {
        "rights": ["lock", "unlock"],
        "not_before": 1798761600,  # 2027-01-01T00:00:00Z
        "expires": 1798934400,  # 2027-01-03T00:00:00Z
        "issued_at": 1798675200,
        "serial": hx(bytes(range(16))),
        "hours": [7, 22],
        "label": "Bea",
    }
    grant = credentials.issue_grant(
        owner,
        grantee=friend.public_key,
        vehicle_id=vehicle.public_key.key_id,
        rights=frozenset({"lock", "unlock"}),
        not_before=1798761600,
        expires=1798934400,
        serial=bytes(range(16)),
        issued_at=1798675200,
        limits=credentials.Limits(hours=(7, 22)),
        label="Bea",
    )
    parsed = credentials.parse_grant(grant)
    return {
        "description": "A root grant: unlock and lock, 7-22 h, two days (docs/grant-vector.md)",
        "owner_private_scalar": hx(owner.scalar()),
        "owner_key_id": hx(owner.public_key.key_id),
        "friend_public_key": hx(friend.public_key.encoded),
        "vehicle_id": hx(vehicle.public_key.key_id),
        "inputs": inputs,
        "protected": hx(parsed.signed.protected),
        "payload": hx(parsed.signed.payload),
        "sig_structure": hx(cose.sig_structure(parsed.signed.protected, parsed.signed.payload)),
        "signature": hx(parsed.signed.signature),
        "cose_sign1": hx(grant),
    }


def remote_vector() -> dict[str, Any]:
    """The §14 objects: a remote envelope, the car's result, a revocation receipt, a state."""
    phone = DeterministicEntropy(PHONE_SEED).new_private_key()
    vehicle = DeterministicEntropy(VEHICLE_SEED).new_private_key()
    owner = phone
    envelope = remote.sign_envelope(
        phone,
        vehicle_id=vehicle.public_key.key_id,
        command=Command.LOCK,
        counter=7,
        now=NOW,
        ttl=60,
    )
    state = {"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": True}
    result = remote.sign_result(
        vehicle, envelope, ok=True, reason="", message="Done.", now=NOW + 1, state=state
    )
    revocation = credentials.issue_revocation(
        owner, vehicle_id=vehicle.public_key.key_id, seq=2, keys=[bytes(16)], issued_at=NOW
    )
    receipt = remote.sign_receipt(vehicle, revocation, seq=2, ok=True, reason="", now=NOW + 2)
    signals = {
        "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": True,
        "Vehicle.CurrentLocation.Latitude": 48.13715,
        "Vehicle.CurrentLocation.Longitude": 11.57612,
    }
    state_doc = remote.sign_state(vehicle, signals, now=NOW + 3)
    remote.verify_result(result, vehicle_key=vehicle.public_key, envelope_raw=envelope)
    remote.verify_receipt(receipt, vehicle_key=vehicle.public_key)
    remote.verify_state(state_doc, vehicle_key=vehicle.public_key)
    return {
        "description": "Cloud objects (docs/protocol.md §14), each a COSE_Sign1 over a"
        " deterministic CBOR map with text keys",
        "phone_private_scalar": hx(phone.scalar()),
        "vehicle_private_scalar": hx(vehicle.scalar()),
        "vehicle_id": hx(vehicle.public_key.key_id),
        "envelope": {
            "inputs": {"command": "lock", "counter": 7, "now": NOW, "ttl": 60},
            "cose_sign1": hx(envelope),
        },
        "result": {
            "inputs": {"ok": True, "reason": "", "message": "Done.", "at": NOW + 1, "state": state},
            "cose_sign1": hx(result),
        },
        "revocation": {
            "inputs": {"seq": 2, "keys": [hx(bytes(16))], "grants": [], "issued_at": NOW},
            "cose_sign1": hx(revocation),
        },
        "receipt": {
            "inputs": {"seq": 2, "ok": True, "reason": "", "at": NOW + 2},
            "cose_sign1": hx(receipt),
        },
        "state": {
            "inputs": {"at": NOW + 3, "state": signals},
            "cose_sign1": hx(state_doc),
        },
    }


_CLAIM_NAMES = {
    1: "iss: the issuer's key id (hex text)",
    2: "sub: the grantee's key id (hex text)",
    3: "aud: the vehicle id (hex text)",
    4: "exp: expiry (NumericDate)",
    5: "nbf: not before (NumericDate)",
    6: "iat: issued at (NumericDate)",
    7: "cti: the grant's serial (16 bytes)",
    8: "cnf: the grantee's proof-of-possession key (COSE_Key, EC2 P-256)",
    "label": "label: a name for the grantee (text)",
    "limits": 'limits: a map; "hours" is [start, end) in whole hours, 0..24',
    "rights": "rights: sorted list of rights",
}


def _wrap(hex_text: str, width: int = 64) -> str:
    return "\n".join(hex_text[i : i + width] for i in range(0, len(hex_text), width))


def grant_doc(vector: dict[str, Any]) -> str:
    """docs/grant-vector.md: the grant of grant.json, taken apart."""
    payload = bytes.fromhex(vector["payload"])
    claims = cbor2.loads(payload)
    rows = []
    for key, value in claims.items():
        encoded = cbor2.dumps({key: value}, canonical=True)[1:]  # drop the one-entry map header
        rows.append(f"| `{key!r}` | {_CLAIM_NAMES[key]} | `{encoded.hex()}` |")
    lines = [
        "# A grant, byte by byte",
        "",
        "Generated by `python tests/vectors/build.py --write` from `tests/vectors/grant.json`; the",
        "test suite checks that this page shows the grant the code produces today. The format is in",
        "docs/protocol.md §9: a COSE_Sign1 (RFC 9052, ES256) whose payload is a CWT claims set",
        "(RFC 8392) with tether's private claims under text keys.",
        "",
        "## Inputs",
        "",
        f"- owner's private scalar: `{vector['owner_private_scalar']}`",
        f"- owner's key id (issuer, COSE `kid`): `{vector['owner_key_id']}`",
        f"- friend's public key (grantee): `{vector['friend_public_key']}`",
        f"- vehicle id: `{vector['vehicle_id']}`",
        "- rights `lock`, `unlock`; hours 07-22; valid 2027-01-01T00:00Z to 2027-01-03T00:00Z",
        "  (nbf 1798761600, exp 1798934400); issued 2026-12-31T00:00Z (iat 1798675200);",
        "  serial 00 01 .. 0f; label `Bea`",
        "",
        "## The COSE_Sign1",
        "",
        "```",
        _wrap(vector["cose_sign1"]),
        "```",
        "",
        "| bytes | meaning |",
        "| --- | --- |",
        "| `d2` | tag 18: COSE_Sign1 |",
        "| `84` | array of 4 |",
        f"| `43` `{vector['protected']}` | protected header, a 3-byte string: {{1: -7}} (alg ES256) |",
        f"| `a1 04 50` `{vector['owner_key_id']}` | unprotected header: {{4 (kid): the issuer's key id}} |",
        f"| `59 {len(payload):04x}` | the payload: a {len(payload)}-byte string holding the claims |",
        "| `58 40` + 64 bytes | the signature: ECDSA P-256 SHA-256, r then s |",
        "",
        "## The payload (deterministic CBOR map of the claims)",
        "",
        "```",
        _wrap(vector["payload"]),
        "```",
        "",
        "| key | claim | encoded key and value |",
        "| --- | --- | --- |",
        *rows,
        "",
        "## What is signed",
        "",
        "The Sig_structure `[\"Signature1\", protected, h'', payload]`:",
        "",
        "```",
        _wrap(vector["sig_structure"]),
        "```",
        "",
        "signed with the owner's key (RFC 6979 deterministic ECDSA), giving",
        "",
        "```",
        _wrap(vector["signature"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def build() -> dict[str, dict[str, Any]]:
    return {
        "pairing.json": pairing_vector(),
        "transactions.json": transaction_vectors(),
        "grant.json": grant_vector(),
        "remote.json": remote_vector(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the JSON files")
    args = parser.parse_args()
    vectors = build()
    for name, vector in vectors.items():
        text = json.dumps(vector, indent=2) + "\n"
        if args.write:
            (HERE / name).write_text(text)
        else:
            print(text)
    if args.write:
        (HERE.parents[1] / "docs" / "grant-vector.md").write_text(grant_doc(vectors["grant.json"]))


if __name__ == "__main__":
    main()
