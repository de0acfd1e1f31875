"""Every vector value recomputed from the JSON alone, the way an outside implementer would.

Nothing from tether is imported: the formulas are docs/protocol.md's, written out again with
hashlib, hmac, cbor2, pyca/cryptography and (for SPAKE2+'s point arithmetic only) pycryptodome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from Cryptodome.PublicKey import ECC
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).parent
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
VERSION = 2
TYPES = {
    "PairRequest": 10,
    "PairChallenge": 11,
    "PairConfirm": 12,
    "PairAccept": 13,
    "PhoneEnrollment": 20,
    "VehicleIdentity": 21,
    "StandardHello": 30,
    "VehicleAuth": 31,
    "PhoneAuth": 32,
    "Finished": 33,
    "FastProof": 36,
    "VehicleHello": 37,
    "Fallback": 38,
    "Record": 50,
    "Error": 60,
    "CommandRequest": 70,
    "CommandResult": 71,
    "Close": 72,
    "RevocationRequest": 73,
    "RevocationResult": 74,
    "DataRequest": 75,
    "DataResponse": 76,
    "RangingRequest": 77,
    "RangingReady": 78,
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / name).read_text())
    return data


def b(text: str) -> bytes:
    return bytes.fromhex(text)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, "sha256").digest()


def body(hex_text: str, type_name: str) -> dict[int, Any]:
    """A §2 message: [version, type, {fields}], deterministic CBOR, of the expected type."""
    raw = b(hex_text)
    version, type_id, fields = cbor2.loads(raw)
    assert (version, type_id) == (VERSION, TYPES[type_name])
    assert cbor2.dumps([version, type_id, fields], canonical=True) == raw  # deterministic
    assert isinstance(fields, dict)
    return fields


def public(scalar_hex: str) -> bytes:
    key = ec.derive_private_key(int(scalar_hex, 16), ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def key_id(public_key: bytes) -> bytes:
    return sha256(public_key)[:16]


def verify(public_key: bytes, signature: bytes, data: bytes) -> None:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
    key.verify(der, data, ec.ECDSA(hashes.SHA256()))


def ecdh(scalar_hex: str, peer: bytes) -> bytes:
    key = ec.derive_private_key(int(scalar_hex, 16), ec.SECP256R1())
    return key.exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer)
    )


def sec1(point: Any) -> bytes:
    return b"\x04" + int(point.x).to_bytes(32, "big") + int(point.y).to_bytes(32, "big")


def point(encoded: bytes) -> Any:
    return ECC.import_key(encoded, curve_name="p256").pointQ


def len8(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def test_pairing_vector_recomputes() -> None:
    v = load("pairing.json")
    i, d, log = v["inputs"], v["derived"], v["messages"]
    assert [m["type"] for m in log] == [
        "VehicleHello",
        "PairRequest",
        "PairChallenge",
        "PairConfirm",
        "PairAccept",
    ]
    ctx, idp, idv = (i[k].encode() for k in ("context", "id_prover", "id_verifier"))
    pw_input = len8(i["code"].encode()) + len8(idp) + len8(idv)
    assert pw_input.hex() == d["pbkdf_input"]
    s = i["pbkdf2_hmac_sha256"]
    material = hashlib.pbkdf2_hmac(
        "sha256", pw_input, s["salt"].encode(), s["iterations"], dklen=s["length"]
    )
    w0 = int.from_bytes(material[:40]) % ORDER
    w1 = int.from_bytes(material[40:]) % ORDER
    assert (f"{w0:064x}", f"{w1:064x}") == (d["w0"], d["w1"])
    g = ECC._curves["p256"].G
    m = point(bytes.fromhex("02886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f"))
    n = point(bytes.fromhex("03d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f98baa1292b49"))
    assert (sec1(m).hex(), sec1(n).hex()) == (d["M"], d["N"])
    assert sec1(g * w1).hex() == d["L"]
    # x and y: the first scalar draw of each side after its long-term key (the car drew its
    # greeting nonce first).
    x = int(i["phone_draws"][0]["value"], 16)
    greeting = b(i["vehicle_draws"][0]["value"])
    y = int(i["vehicle_draws"][1]["value"], 16)
    assert body(log[0]["hex"], "VehicleHello") == {1: greeting}
    share_p = sec1(g * x + m * w0)
    share_v = sec1(g * y + n * w0)
    assert body(log[1]["hex"], "PairRequest") == {1: share_p}
    assert body(log[2]["hex"], "PairChallenge") == {1: share_v}
    # Both sides' Z and V agree: the prover's x*(Y - w0*N), the verifier's y*(X - w0*M).
    z_p = (point(share_v) + (-(n * w0))) * x
    v_p = (point(share_v) + (-(n * w0))) * w1
    z_v = (point(share_p) + (-(m * w0))) * y
    v_v = (g * w1) * y
    assert sec1(z_p) == sec1(z_v) == b(d["Z"]) and sec1(v_p) == sec1(v_v) == b(d["V"])
    tt = b"".join(
        len8(part)
        for part in (ctx, idp, idv, sec1(m), sec1(n), share_p, share_v, sec1(z_p), sec1(v_p))
    ) + len8(w0.to_bytes(32, "big"))
    assert tt.hex() == d["TT"]
    k_main = sha256(tt)
    confirmation = hkdf(k_main, b"", b"ConfirmationKeys", 64)
    k_shared = hkdf(k_main, b"", b"SharedKey", 32)
    th = sha256(b"tether/2 pairing transcript" + greeting + share_p + share_v)
    seal = hkdf(k_shared, th, b"tether/2 pairing keys", 64)
    assert (k_main.hex(), k_shared.hex(), th.hex()) == (
        d["K_main"],
        d["K_shared"],
        d["transcript_hash"],
    )
    confirm = body(log[3]["hex"], "PairConfirm")
    accept = body(log[4]["hex"], "PairAccept")
    assert confirm[1] == mac(confirmation[:32], share_v)
    assert accept[1] == mac(confirmation[32:], share_p)
    enrollment = AESGCM(seal[:32]).decrypt(bytes(12), confirm[2], th)
    identity = AESGCM(seal[32:]).decrypt(bytes(12), accept[2], th)
    assert (enrollment.hex(), identity.hex()) == (d["phone_enrollment"], d["vehicle_identity"])
    phone = body(enrollment.hex(), "PhoneEnrollment")
    car = body(identity.hex(), "VehicleIdentity")
    assert phone[1] == public(i["phone_private_scalar"]) and phone[2] == i["phone_name"]
    assert car[1] == public(i["vehicle_private_scalar"]) and car[2] == i["vehicle_name"]
    verify(phone[1], phone[3], b"tether/2 pairing phone" + th)
    verify(car[1], car[3], b"tether/2 pairing vehicle" + th + phone[1])


def split(okm: bytes) -> dict[str, str]:
    return {
        "key_p2v": okm[0:32].hex(),
        "key_v2p": okm[32:64].hex(),
        "iv_p2v": okm[64:76].hex(),
        "iv_v2p": okm[76:88].hex(),
        "persistent": okm[88:120].hex(),
        "finished": okm[120:152].hex(),
    }


def open_records(vector: dict[str, Any], first: int = 0) -> list[tuple[str, bytes]]:
    """Open every record from message ``first`` on with the vector's session keys (§7)."""
    keys = {k: b(x) for k, x in vector["session"].items()}
    counters = {"phone": 0, "vehicle": 0}
    out = []
    for entry in vector["messages"]:
        if entry["type"] != "Record":
            continue
        sender = entry["from"]
        key, iv = (
            (keys["key_p2v"], keys["iv_p2v"])
            if sender == "phone"
            else (keys["key_v2p"], keys["iv_v2p"])
        )
        nonce = (int.from_bytes(iv) ^ counters[sender]).to_bytes(12, "big")
        counters[sender] += 1
        ciphertext = body(entry["hex"], "Record")[1]
        out.append((sender, AESGCM(key).decrypt(nonce, ciphertext, b"tether/2 record")))
    return out


def check_standard(top: dict[str, Any], v: dict[str, Any]) -> bytes:
    log = v["messages"]
    vehicle_public = public(top["vehicle_private_scalar"])
    vehicle_id = key_id(vehicle_public)
    greeting = b(v["vehicle_draws"][0]["value"])
    assert body(log[0]["hex"], "VehicleHello") == {1: greeting}
    hello = body(log[1]["hex"], "StandardHello")
    phone_eph = v["phone_draws"][0]["value"]
    assert hello == {1: public(phone_eph), 2: b(v["phone_draws"][1]["value"])}
    vauth = body(log[2]["hex"], "VehicleAuth")
    assert vauth[1] == public(v["vehicle_draws"][1]["value"])
    assert vauth[2] == b(v["vehicle_draws"][2]["value"])
    th1 = sha256(
        b"tether/2 standard" + greeting + hello[1] + hello[2] + vauth[1] + vauth[2] + vehicle_id
    )
    shared = ecdh(phone_eph, vauth[1])
    assert shared == ecdh(v["vehicle_draws"][1]["value"], hello[1])
    okm = hkdf(shared, th1, b"tether/2 standard keys", 216)
    assert (th1.hex(), okm.hex()) == (v["th1"], v["okm"])
    assert split(okm[64:]) == v["session"]
    signature = AESGCM(okm[:32]).decrypt(bytes(12), vauth[3], th1)
    verify(vehicle_public, signature, b"tether/2 vehicle-auth" + th1)
    pauth = body(log[3]["hex"], "PhoneAuth")
    proof = AESGCM(okm[32:64]).decrypt(bytes(12), pauth[1], th1)
    endpoint = public(v["endpoint_private_scalar"])
    assert proof[:16] == key_id(endpoint)
    verify(endpoint, proof[16:80], b"tether/2 phone-auth" + th1 + proof[:16])
    if len(proof) > 80:  # a credential: CBOR array of COSE_Sign1 (tag 18) byte strings
        chain = cbor2.loads(proof[80:])
        assert proof[80:].hex() == v["credential"]
        assert all(cbor2.loads(g).tag == 18 for g in chain)
    else:
        assert v["credential"] is None
    th2 = sha256(th1 + vauth[3] + pauth[1])
    assert body(log[4]["hex"], "Finished") == {1: mac(okm[64 + 120 : 64 + 152], th2)}
    return okm[64 + 88 : 64 + 120]


def check_fast(top: dict[str, Any], v: dict[str, Any], persistent: bytes) -> bytes:
    log = v["messages"]
    vehicle_id = key_id(public(top["vehicle_private_scalar"]))
    assert v["persistent_key"] == persistent.hex()
    greeting = b(v["vehicle_draws"][0]["value"])
    assert body(log[0]["hex"], "VehicleHello") == {1: greeting}
    proof = body(log[1]["hex"], "FastProof")
    assert proof[1] == b(v["phone_draws"][0]["value"])
    th = sha256(b"tether/2 fast" + greeting + proof[1] + vehicle_id)
    assert proof[2] == mac(persistent, b"tether/2 fast-phone" + th)
    okm = hkdf(persistent, th, b"tether/2 fast session", 152)
    assert split(okm) == v["session"]
    finished = next(m for m in log if m["type"] == "Finished")
    assert body(finished["hex"], "Finished") == {1: mac(okm[120:152], th + proof[2])}
    return okm[88:120]


def test_transaction_vectors_recompute() -> None:
    t = load("transactions.json")
    persistent = check_standard(t, t["standard"])
    check_standard(t, t["standard_with_credential"])
    nxt = check_fast(t, t["fast"], persistent)
    early = t["fast_with_early_record"]
    after = check_fast(t, early, nxt)
    # One round trip: the phone's first flight is the proof and the command; the car's, the
    # Finished and the result.
    assert [(m["from"], m["type"]) for m in early["messages"][1:]] == [
        ("phone", "FastProof"),
        ("phone", "Record"),
        ("vehicle", "Finished"),
        ("vehicle", "Record"),
    ]
    (request, result) = open_records(early)
    assert body(request[1].hex(), "CommandRequest") == {1: 1, 2: "unlock"}
    assert body(result[1].hex(), "CommandResult") == {
        1: 1,
        2: True,
        4: "Done.",
        5: {"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": False},
    }
    fallback = t["fallback"]
    assert [m["type"] for m in fallback["messages"]][3] == "Fallback"
    assert body(fallback["messages"][3]["hex"], "Fallback") == {}
    error = body(t["error"]["messages"][-1]["hex"], "Error")
    assert error == {1: t["error"]["error_code"], 2: t["error"]["error_message"]}
    assert error[1] == "unknown_key"
    check_session(t, after)


def check_session(t: dict[str, Any], persistent: bytes) -> None:
    v = t["session"]
    check_fast(t, v, persistent)
    records = open_records(v)
    kinds = [(sender, cbor2.loads(plain)[1]) for sender, plain in records]
    assert kinds == [
        ("phone", 70),
        ("vehicle", 71),
        ("phone", 70),
        ("vehicle", 71),
        ("vehicle", 75),
        ("phone", 76),
        ("phone", 73),
        ("vehicle", 74),
        ("vehicle", 77),
        ("phone", 78),
        ("phone", 72),
    ]
    plain = [p.hex() for _, p in records]
    assert body(plain[0], "CommandRequest") == {1: 1, 2: "start"}
    denied = body(plain[1], "CommandResult")
    assert (denied[1], denied[2], denied[3]) == (1, False, "fast_not_allowed")
    assert body(plain[3], "CommandResult")[3] == "no_right"
    asked = body(plain[4], "DataRequest")
    assert (asked[1], asked[3], asked[4]) == (1, "Navigation: show your contacts", False)
    assert cbor2.loads(asked[2]) == [
        {"category": "contacts", "query": {"prefix": "A"}},
        {"category": "profile", "query": {}},
    ]
    answer = body(plain[5], "DataResponse")
    assert answer[1] == 1  # answers the car's request 1
    assert cbor2.loads(answer[2]) == {"contacts": [{"name": "Ada", "tel": "+491701234567"}]}
    assert cbor2.loads(answer[3]) == ["profile"]
    assert body(plain[6], "RevocationRequest") == {1: 3, 2: b(v["revocation"])}
    assert body(plain[7], "RevocationResult") == {1: 3, 2: True, 3: 1, 5: "Revoked 1 grant."}
    keys = v["session"]
    exporter = hkdf(b(keys["key_p2v"]) + b(keys["key_v2p"]), b"", b"tether/2 exporter", 32)
    k_rng = hkdf(exporter, b"", b"tether/2 ranging key", 32)
    assert (exporter.hex(), k_rng.hex()) == (v["exporter"], v["ranging_key"])
    ranging = body(plain[8], "RangingRequest")
    assert ranging[1] == 2 and ranging[2] == b(v["ranging_nonce"])
    for anchor in v["ranging_anchors"]:
        nonce = sha256(b"tether/2 ranging anchor" + ranging[2] + bytes([anchor["anchor"]]))[:16]
        assert nonce.hex() == anchor["nonce"]
        for index, (challenge, response) in enumerate(
            zip(anchor["challenges"], anchor["responses"], strict=True)
        ):
            assert (
                mac(k_rng, b"tether/2 ranging" + nonce + bytes([index, challenge]))[0] == response
            )
    assert body(plain[9], "RangingReady")[1] == 2
    assert body(plain[10], "Close") == {}


def open_cose(hex_text: str, signer_public: bytes) -> dict[str, Any]:
    """A tagged COSE_Sign1, ES256, kid = the signer's key id; returns its deterministic payload."""
    tag = cbor2.loads(b(hex_text))
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    assert cbor2.loads(protected) == {1: -7} and unprotected == {4: key_id(signer_public)}
    verify(signer_public, signature, cbor2.dumps(["Signature1", protected, b"", payload]))
    claims = cbor2.loads(payload)
    assert cbor2.dumps(claims, canonical=True) == payload
    assert isinstance(claims, dict)
    return claims


def test_grant_vector_recomputes() -> None:
    g = load("grant.json")
    owner = public(g["owner_private_scalar"])
    assert key_id(owner).hex() == g["owner_key_id"]
    claims = open_cose(g["cose_sign1"], owner)
    i = g["inputs"]
    friend = b(g["friend_public_key"])
    assert claims == {
        1: g["owner_key_id"],
        2: key_id(friend).hex(),
        3: g["vehicle_id"],
        4: i["expires"],
        5: i["not_before"],
        6: i["issued_at"],
        7: b(i["serial"]),
        8: {1: {1: 2, -1: 1, -2: friend[1:33], -3: friend[33:]}},
        "rights": i["rights"],
        "limits": {"hours": i["hours"]},
        "label": i["label"],
    }


def test_remote_vector_recomputes() -> None:
    r = load("remote.json")
    phone, vehicle = public(r["phone_private_scalar"]), public(r["vehicle_private_scalar"])
    vehicle_id = b(r["vehicle_id"])
    assert key_id(vehicle) == vehicle_id
    e = r["envelope"]["inputs"]
    envelope = open_cose(r["envelope"]["cose_sign1"], phone)
    assert envelope == {
        "aud": vehicle_id.hex(),
        "cmd": e["command"],
        "ctr": e["counter"],
        "iat": e["now"],
        "exp": e["now"] + e["ttl"],
    }
    res = r["result"]["inputs"]
    assert open_cose(r["result"]["cose_sign1"], vehicle) == {
        "aud": vehicle_id.hex(),
        "req": sha256(b(r["envelope"]["cose_sign1"])),
        "ok": res["ok"],
        "reason": res["reason"],
        "msg": res["message"],
        "at": res["at"],
        "state": res["state"],
    }
    rev = r["revocation"]["inputs"]
    assert open_cose(r["revocation"]["cose_sign1"], phone) == {
        "aud": vehicle_id.hex(),
        "seq": rev["seq"],
        "keys": [b(k) for k in rev["keys"]],
        "grants": [b(k) for k in rev["grants"]],
        "iat": rev["issued_at"],
    }
    rec = r["receipt"]["inputs"]
    assert open_cose(r["receipt"]["cose_sign1"], vehicle) == {
        "aud": vehicle_id.hex(),
        "rev": sha256(b(r["revocation"]["cose_sign1"])),
        "seq": rec["seq"],
        "ok": rec["ok"],
        "reason": rec["reason"],
        "at": rec["at"],
    }
    st = r["state"]["inputs"]
    assert open_cose(r["state"]["cose_sign1"], vehicle) == {
        "aud": vehicle_id.hex(),
        "at": st["at"],
        "state": st["state"],
    }


@pytest.mark.parametrize("name", ["pairing.json", "transactions.json", "remote.json"])
def test_every_logged_message_is_version_2(name: str) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "hex" in node and "type" in node:
                body(node["hex"], node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load(name))
