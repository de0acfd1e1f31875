"""The car's key store and audit log: durable writes, monotonic counters, tamper-evident chain."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tether.errors import PairingError, StorageError, UsageError
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.names import RIGHTS
from tether.protocol.pump import pump
from tether.protocol.transaction import (
    Established,
    PersistentKeyChanged,
    PhoneTransaction,
    VehicleTransaction,
)
from tether.vehicle.keystore import DB_NAME, VehicleStore


def make(tmp_path: Path) -> VehicleStore:
    return VehicleStore.create(
        tmp_path / "car", name="Car", entropy=DeterministicEntropy(b"s"), now=1.0
    )


def test_create_open_and_refuse_twice(tmp_path: Path) -> None:
    store = make(tmp_path)
    vid = store.vehicle_id
    store.close()
    again = VehicleStore.open(tmp_path / "car")
    assert again.vehicle_id == vid and again.name == "Car"
    with pytest.raises(UsageError, match="already holds"):
        make(tmp_path)
    with pytest.raises(StorageError, match="no store"):
        VehicleStore.open(tmp_path / "nowhere")


def test_pairing_code_lifecycle(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.pairing_code() is None
    code = store.new_pairing_code(now=10.0, ttl=60)
    state = store.pairing_code()
    assert state is not None and state.code == code and len(code) == 8 and code.isdigit()
    assert state.expires_at == 70.0 and not state.used and state.failures == 0
    assert store.reserve_pairing_guess(now=11.0) == 4
    assert store.reserve_pairing_guess(now=12.0) == 3
    assert store.pairing_code().failures == 2  # type: ignore[union-attr]
    for left in (2, 1, 0):
        assert store.reserve_pairing_guess(now=12.0) == left
    with pytest.raises(PairingError) as locked:  # the sixth guess is never tested
        store.reserve_pairing_guess(now=12.0)
    assert locked.value.code == "pairing_locked"
    with pytest.raises(PairingError) as late:
        VehicleStore.open(tmp_path / "car").reserve_pairing_guess(now=12.0)  # after a restart
    assert late.value.code == "pairing_locked"
    new = store.new_pairing_code(now=13.0)
    assert store.pairing_code().failures == 0  # type: ignore[union-attr]
    assert len(new) == 8


def test_enrol_ratchet_revoke_survive_reopen(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.new_pairing_code(now=1.0)
    phone = DeterministicEntropy(b"p").new_private_key().public_key
    endpoint = store.enroll_owner(phone, name="Phone", now=2.0)
    assert endpoint.rights == RIGHTS and store.pairing_code().used  # type: ignore[union-attr]
    assert store.endpoint_key(phone.key_id) == phone
    assert store.set_persistent_key(phone.key_id, b"k1" * 16, now=3.0) == 1
    assert store.set_persistent_key(phone.key_id, b"k2" * 16, now=4.0) == 2
    assert list(store.persistent_keys()) == [(phone.key_id, b"k2" * 16)]
    store.close()
    store = VehicleStore.open(tmp_path / "car")
    assert store.endpoint(phone.key_id).ratchet == 2  # type: ignore[union-attr]
    assert list(store.persistent_keys()) == [(phone.key_id, b"k2" * 16)]
    store.revoke(phone.key_id, seq=1, now=5.0)
    assert store.endpoint_key(phone.key_id) is None
    assert list(store.persistent_keys()) == []
    with pytest.raises(UsageError, match="not newer"):
        store.revoke(phone.key_id, seq=1, now=6.0)
    with pytest.raises(StorageError):
        store.set_persistent_key(phone.key_id, b"k3" * 16, now=7.0)
    with pytest.raises(UsageError, match="revoked"):
        store.enroll(
            phone,
            name="again",
            role="friend",
            rights=frozenset({"unlock"}),
            not_before=None,
            not_after=None,
            now=8.0,
        )
    store.close()
    store = VehicleStore.open(tmp_path / "car")
    assert store.endpoint(phone.key_id).revoked and store.revocation_seq() == 1  # type: ignore[union-attr]
    assert store.verify_audit() == []


def test_most_recently_used_key_comes_first(tmp_path: Path) -> None:
    store = make(tmp_path)
    entropy = DeterministicEntropy(b"many")
    keys = [entropy.new_private_key().public_key for _ in range(5)]
    for i, key in enumerate(keys):
        store.enroll(
            key,
            name=f"k{i}",
            role="friend",
            rights=frozenset({"unlock"}),
            not_before=None,
            not_after=None,
            now=float(i),
        )
        store.set_persistent_key(key.key_id, bytes([i]) * 32, now=float(i))
    store.set_persistent_key(keys[1].key_id, b"\x09" * 32, now=10.0)
    order = [eid for eid, _ in store.persistent_keys()]
    assert order[0] == keys[1].key_id and order[1] == keys[4].key_id
    store.close()
    reopened = VehicleStore.open(tmp_path / "car")
    assert [eid for eid, _ in reopened.persistent_keys()] == order


def _tamper(tmp_path: Path, sql: str) -> list[tuple[int, str]]:
    conn = sqlite3.connect(tmp_path / "car" / DB_NAME)
    conn.execute(sql)
    conn.commit()
    conn.close()
    store = VehicleStore.open(tmp_path / "car")
    return [(p.seq, p.what) for p in store.verify_audit()]


@pytest.fixture
def audited(tmp_path: Path) -> Path:
    store = make(tmp_path)
    for i in range(6):
        store.audit(now=10.0 + i, key_id=b"\x01" * 16, command="unlock", result="ok")
    assert store.verify_audit() == []
    store.close()
    return tmp_path


def test_audit_reads_the_tail_a_page_or_all(audited: Path) -> None:
    store = VehicleStore.open(audited / "car")
    every = [e.seq for e in store.audit_entries()]
    assert every == list(range(1, len(every) + 1))
    assert [e.seq for e in store.audit_entries(last=3)] == every[-3:]
    assert [e.seq for e in store.audit_entries(last=100)] == every
    assert [e.seq for e in store.audit_entries(since=2, limit=2)] == [3, 4]
    assert store.audit_entries(last=0) == []
    store.close()


def test_audit_detects_an_edit(audited: Path) -> None:
    problems = _tamper(audited, "UPDATE audit SET result = 'denied' WHERE seq = 4")
    assert problems == [(4, "was edited after it was written")]


def test_audit_detects_a_deletion(audited: Path) -> None:
    problems = _tamper(audited, "DELETE FROM audit WHERE seq = 3")
    assert problems[0][0] == 4 and "missing" in problems[0][1]


def test_audit_detects_a_truncated_tail(audited: Path) -> None:
    problems = _tamper(audited, "DELETE FROM audit WHERE seq = 7")
    assert problems and "head says 7" in problems[0][1]


def test_audit_detects_reordering(audited: Path) -> None:
    conn = sqlite3.connect(audited / "car" / DB_NAME)
    rows = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT seq, time, key_id, command, result, reason, detail, prev_hash, hash FROM audit WHERE seq IN (3, 4)"
        )
    }
    cols = "time = ?, key_id = ?, command = ?, result = ?, reason = ?, detail = ?, prev_hash = ?, hash = ?"
    conn.execute(f"UPDATE audit SET {cols} WHERE seq = 3", rows[4])
    conn.execute(f"UPDATE audit SET {cols} WHERE seq = 4", rows[3])
    conn.commit()
    conn.close()
    store = VehicleStore.open(audited / "car")
    problems = store.verify_audit()
    assert problems and problems[0].seq == 3


def test_audit_detects_relinked_rows(audited: Path) -> None:
    problems = _tamper(audited, "UPDATE audit SET prev_hash = zeroblob(32) WHERE seq = 5")
    assert problems == [(5, "does not link to the entry before it")]


def test_audit_seq_out_of_order(audited: Path) -> None:
    conn = sqlite3.connect(audited / "car" / DB_NAME)
    conn.execute("UPDATE audit SET seq = 100 WHERE seq = 2")
    conn.commit()
    conn.close()
    store = VehicleStore.open(audited / "car")
    problems = store.verify_audit()
    assert problems and problems[0].seq == 3


def test_unknown_store_version_is_refused(tmp_path: Path) -> None:
    make(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "car" / DB_NAME)
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="unknown store version"):
        VehicleStore.open(tmp_path / "car")


def test_integrity_check(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.integrity_ok()


def test_settings_persist_and_are_audited(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.setting("ranging_for_app", "off") == "off"
    store.set_setting("ranging_for_app", "on", now=5.0)
    store.close()
    again = VehicleStore.open(tmp_path / "car")
    assert again.setting("ranging_for_app") == "on"
    assert again.audit_entries()[-1].detail == "ranging_for_app = on"
    from tether.protocol.crypto import DeterministicEntropy as _E
    from tether.vehicle.agent import VehicleAgent
    from tether.vehicle.body.virtual import VirtualBody

    assert VehicleAgent(again, VirtualBody(), entropy=_E(b"x")).ranging_for_app


def test_delegation_depth_is_set_per_vehicle(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.max_depth == 2
    store.set_max_depth(3, now=1.0)
    with pytest.raises(UsageError):
        store.set_max_depth(0, now=1.0)
    store.close()
    assert VehicleStore.open(tmp_path / "car").max_depth == 3


def test_five_hundred_keys_and_the_least_recent_still_opens_fast(tmp_path: Path) -> None:
    """Fleets outgrow small key slots (one maker's cars hold 19): the store takes hundreds."""
    store = make(tmp_path)
    entropy = DeterministicEntropy(b"fleet")
    phones = [entropy.new_private_key() for _ in range(500)]
    for i, phone in enumerate(phones):
        store.enroll(
            phone.public_key,
            name=f"renter {i}",
            role="friend",
            rights=frozenset({"unlock", "lock"}),
            not_before=None,
            not_after=None,
            now=float(i),
        )
        store.set_persistent_key(phone.public_key.key_id, bytes([i % 256]) * 31 + b"p", now=i)
    store.close()
    store = VehicleStore.open(tmp_path / "car")
    assert len([e for e in store.endpoints() if e.role == "friend"]) == 500
    oldest = phones[0]
    assert [eid for eid, _ in store.persistent_keys()][-1] == oldest.public_key.key_id

    # The least recently used phone: the car tries every stored key, finds hers, and she is
    # first the next time.
    phone_tx = PhoneTransaction(
        endpoint_key=oldest,
        vehicle_key=store.identity.public_key,
        persistent_key=bytes([0]) * 31 + b"p",
        entropy=entropy,
    )
    car_tx = VehicleTransaction(vehicle_key=store.identity, directory=store, entropy=entropy)
    phone_tx.start()
    events = pump(phone_tx, car_tx, now=0.0)
    established = [e for e in events if isinstance(e, Established)]
    assert [e.fast for e in established] == [True, True]
    for event in events:
        if (
            isinstance(event, PersistentKeyChanged)
            and event.endpoint_id == oldest.public_key.key_id
        ):
            store.set_persistent_key(event.endpoint_id, event.key, now=1_000.0)
            break
    assert next(iter(store.persistent_keys()))[0] == oldest.public_key.key_id
    assert store.verify_audit() == []
