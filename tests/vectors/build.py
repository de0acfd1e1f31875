"""Build the protocol test vectors from fixed keys and randomness; `--write` refreshes the JSON.

Every derived value listed in a vector is recomputed here from the formulas in docs/protocol.md,
independently of the state machines, and checked against the messages the state machines emit: the
vectors are therefore both a record of the code's output and a check that the code follows the spec.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cbor2

from tether.protocol import codec, credentials, crypto
from tether.protocol.crypto import Aead, DeterministicEntropy, PublicKey
from tether.protocol.messages import (
    FastChallenge,
    FastHello,
    FastProof,
    Finished,
    PairAccept,
    PairChallenge,
    PairConfirm,
    PairRequest,
    PhoneAuth,
    Record,
    StandardHello,
    VehicleAuth,
)
from tether.protocol.pairing import CodeState, PhonePairing, VehiclePairing
from tether.protocol.session import PhoneSession, VehicleSession
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PhoneTransaction,
    VehicleTransaction,
)

HERE = Path(__file__).parent
VEHICLE_SEED = b"tether vector vehicle"
PHONE_SEED = b"tether vector phone"
CODE = "12345678"


def hx(data: bytes) -> str:
    return data.hex()


def draws(entropy: DeterministicEntropy, start: int = 0) -> list[dict[str, str]]:
    return [{"kind": kind, "value": hx(value)} for kind, value in entropy.draws[start:]]


def _exchange(a: Any, b: Any) -> list[dict[str, str]]:
    """Run two machines to completion, recording each message as sender and hex."""
    log: list[dict[str, str]] = []
    queue = [(b, d, "phone") for d in a.data_to_send()]
    while queue:
        dst, data, sender = queue.pop(0)
        msg = codec.decode(data)
        log.append({"from": sender, "type": type(msg).__name__, "hex": hx(data)})
        dst.receive(data)
        src_name = "vehicle" if dst is b else "phone"
        other = a if dst is b else b
        queue.extend((other, d, src_name) for d in dst.data_to_send())
    return log


def pairing_vector() -> dict[str, Any]:
    car_entropy = DeterministicEntropy(VEHICLE_SEED)
    phone_entropy = DeterministicEntropy(PHONE_SEED)
    vehicle_key = car_entropy.new_private_key()
    phone_key = phone_entropy.new_private_key()
    car_mark, phone_mark = len(car_entropy.draws), len(phone_entropy.draws)
    phone = PhonePairing(code=CODE, endpoint_key=phone_key, name="Phone", entropy=phone_entropy)
    car = VehiclePairing(
        code=CodeState(code=CODE, expires_at=1.0, used=False, failures=0),
        now=0.0,
        vehicle_key=vehicle_key,
        name="Car",
        entropy=car_entropy,
        reserve_guess=lambda: 4,
    )
    phone.start()
    log = _exchange(phone, car)
    pake_p = codec.decode_as(bytes.fromhex(log[0]["hex"]), PairRequest).pake
    pake_v = codec.decode_as(bytes.fromhex(log[1]["hex"]), PairChallenge).pake
    th = crypto.sha256(b"tether/1 pairing transcript" + pake_p + pake_v)
    confirm = codec.decode_as(bytes.fromhex(log[2]["hex"]), PairConfirm)
    accept = codec.decode_as(bytes.fromhex(log[3]["hex"]), PairAccept)
    assert car._keys is not None
    keys = car._keys
    assert keys.transcript == th
    assert confirm.confirm == crypto.mac(keys.confirm_phone, th)
    assert accept.confirm == crypto.mac(keys.confirm_vehicle, th)
    return {
        "description": "Owner pairing with code 12345678 (docs/protocol.md §5)",
        "code": CODE,
        "vehicle_private_scalar": hx(vehicle_key.scalar()),
        "phone_private_scalar": hx(phone_key.scalar()),
        "vehicle_draws": draws(car_entropy, car_mark),
        "phone_draws": draws(phone_entropy, phone_mark),
        "transcript_hash": hx(th),
        "confirm_phone_key": hx(keys.confirm_phone),
        "confirm_vehicle_key": hx(keys.confirm_vehicle),
        "seal_phone_key": hx(keys.seal_phone),
        "seal_vehicle_key": hx(keys.seal_vehicle),
        "messages": log,
    }


def transaction_vectors() -> dict[str, Any]:
    car_entropy = DeterministicEntropy(VEHICLE_SEED)
    phone_entropy = DeterministicEntropy(PHONE_SEED)
    vehicle_key = car_entropy.new_private_key()
    phone_key = phone_entropy.new_private_key()
    directory = MemoryDirectory()
    directory.enroll(phone_key.public_key, owner=True)
    vehicle_id = vehicle_key.public_key.key_id
    endpoint_id = phone_key.public_key.key_id

    # -- standard --------------------------------------------------------------------------
    car_mark, phone_mark = len(car_entropy.draws), len(phone_entropy.draws)
    phone_tx = PhoneTransaction(
        endpoint_key=phone_key,
        vehicle_key=vehicle_key.public_key,
        persistent_key=None,
        entropy=phone_entropy,
    )
    car_tx = VehicleTransaction(vehicle_key=vehicle_key, directory=directory, entropy=car_entropy)
    phone_tx.start()
    standard_log = _exchange(phone_tx, car_tx)
    standard_draws = (draws(car_entropy, car_mark), draws(phone_entropy, phone_mark))
    hello = codec.decode_as(bytes.fromhex(standard_log[0]["hex"]), StandardHello)
    vauth = codec.decode_as(bytes.fromhex(standard_log[1]["hex"]), VehicleAuth)
    pauth = codec.decode_as(bytes.fromhex(standard_log[2]["hex"]), PhoneAuth)
    finished = codec.decode_as(bytes.fromhex(standard_log[3]["hex"]), Finished)
    phone_eph = crypto.PrivateKey.from_scalar(
        bytes.fromhex(draws(phone_entropy, phone_mark)[0]["value"])
    )
    th1 = crypto.sha256(
        b"tether/1 standard"
        + hello.ephemeral
        + hello.nonce
        + vauth.ephemeral
        + vauth.nonce
        + vehicle_id
    )
    shared = phone_eph.exchange(PublicKey(vauth.ephemeral))
    okm = crypto.hkdf(shared, salt=th1, info=b"tether/1 standard keys", length=216)
    hs_v2p, hs_p2v, session = okm[:32], okm[32:64], okm[64:]
    signature_v = Aead(hs_v2p).open(bytes(12), vauth.sealed, th1)
    vehicle_key.public_key.verify(signature_v, b"tether/1 vehicle-auth" + th1)
    proof = Aead(hs_p2v).open(bytes(12), pauth.sealed, th1)
    assert proof[:16] == endpoint_id
    phone_key.public_key.verify(proof[16:], b"tether/1 phone-auth" + th1 + endpoint_id)
    th2 = crypto.sha256(th1 + vauth.sealed + pauth.sealed)
    finished_key = session[120:152]
    assert finished.mac == crypto.mac(finished_key, th2)
    persistent = session[88:120]
    directory.persistent[endpoint_id] = persistent

    # -- fast ------------------------------------------------------------------------------
    car_mark2, phone_mark2 = len(car_entropy.draws), len(phone_entropy.draws)
    phone_fast = PhoneTransaction(
        endpoint_key=phone_key,
        vehicle_key=vehicle_key.public_key,
        persistent_key=persistent,
        entropy=phone_entropy,
    )
    car_fast = VehicleTransaction(vehicle_key=vehicle_key, directory=directory, entropy=car_entropy)
    phone_fast.start()
    fast_events: list[object] = []
    fast_log: list[dict[str, str]] = []
    queue: list[tuple[Any, bytes, str]] = [
        (car_fast, d, "phone") for d in phone_fast.data_to_send()
    ]
    while queue:
        dst, data, sender = queue.pop(0)
        fast_log.append(
            {"from": sender, "type": type(codec.decode(data)).__name__, "hex": hx(data)}
        )
        fast_events += dst.receive(data)
        other, name = (phone_fast, "vehicle") if dst is car_fast else (car_fast, "phone")
        queue.extend((other, d, name) for d in dst.data_to_send())
    fhello = codec.decode_as(bytes.fromhex(fast_log[0]["hex"]), FastHello)
    fchallenge = codec.decode_as(bytes.fromhex(fast_log[1]["hex"]), FastChallenge)
    fproof = codec.decode_as(bytes.fromhex(fast_log[2]["hex"]), FastProof)
    ffinished = codec.decode_as(bytes.fromhex(fast_log[3]["hex"]), Finished)
    th = crypto.sha256(b"tether/1 fast" + fhello.nonce + fchallenge.nonce + vehicle_id)
    assert fproof.cryptogram == crypto.mac(persistent, b"tether/1 fast-phone" + th)
    fokm = crypto.hkdf(persistent, salt=th, info=b"tether/1 fast session", length=152)
    assert ffinished.mac == crypto.mac(fokm[120:152], th + fproof.cryptogram)

    # -- channel records of the fast session --------------------------------------------------
    sessions = [e.session for e in fast_events if isinstance(e, Established)]
    car_session = next(s for s in sessions if isinstance(s, VehicleSession))
    phone_session = next(s for s in sessions if isinstance(s, PhoneSession))
    phone_session.request("unlock")
    (request_record,) = phone_session.data_to_send()
    car_session.receive(request_record)
    car_session.respond(1, ok=True, state={"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": False})
    (result_record,) = car_session.data_to_send()
    plain = Aead(fokm[0:32]).open(
        fokm[64:76], codec.decode_as(request_record, Record).ciphertext, b"tether/1 record"
    )
    return {
        "vehicle_private_scalar": hx(vehicle_key.scalar()),
        "phone_private_scalar": hx(phone_key.scalar()),
        "vehicle_id": hx(vehicle_id),
        "endpoint_id": hx(endpoint_id),
        "standard": {
            "description": "Standard transaction, first use (docs/protocol.md §6.2)",
            "vehicle_draws": standard_draws[0],
            "phone_draws": standard_draws[1],
            "th1": hx(th1),
            "shared_secret": hx(shared),
            "okm": hx(okm),
            "th2": hx(th2),
            "persistent_key": hx(persistent),
            "messages": standard_log,
        },
        "fast": {
            "description": "Fast transaction with the persistent key above (docs/protocol.md §6.3)",
            "vehicle_draws": draws(car_entropy, car_mark2),
            "phone_draws": draws(phone_entropy, phone_mark2),
            "th": hx(th),
            "okm": hx(fokm),
            "next_persistent_key": hx(fokm[88:120]),
            "messages": fast_log,
        },
        "channel": {
            "description": "First records of the fast session (docs/protocol.md §7)",
            "phone_to_vehicle_plaintext": hx(plain),
            "phone_to_vehicle_record": hx(request_record),
            "vehicle_to_phone_record": hx(result_record),
        },
    }


def grant_vector() -> dict[str, Any]:
    """One grant, fixed keys and serial, as docs/grant-vector.md walks through it byte by byte."""
    owner = DeterministicEntropy(b"tether vector owner").new_private_key()
    friend = DeterministicEntropy(b"tether vector friend").new_private_key()
    vehicle = DeterministicEntropy(VEHICLE_SEED).new_private_key()
    grant = credentials.issue_grant(
        owner,
        grantee=friend.public_key,
        vehicle_id=vehicle.public_key.key_id,
        rights=frozenset({"unlock", "lock"}),
        not_before=1798761600,  # 2027-01-01T00:00:00Z
        expires=1798934400,  # 2027-01-03T00:00:00Z
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
        "protected": hx(parsed.protected),
        "payload": hx(parsed.payload),
        "sig_structure": hx(credentials.sig_structure(parsed.protected, parsed.payload)),
        "signature": hx(parsed.signature),
        "cose_sign1": hx(grant),
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
    "limits": "limits: hours of day [start, end)",
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
        "- rights `lock`, `unlock`; hours 07-22; valid 2027-01-01T00:00Z to 2027-01-03T00:00Z;",
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
