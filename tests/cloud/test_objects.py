"""What the server makes of signed objects: revocations checked, stored once, keys closed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import HTTPException

from tether.cloud import db
from tether.cloud.api.access import Hub, add_friend, add_principal, set_owner
from tether.cloud.api.objects import (
    closed_keys,
    publish_revocations,
    store_revocations,
    verify_revocations,
)
from tether.protocol import credentials
from tether.protocol.crypto import SystemEntropy

# A car's grants as (serial, grantee, serials above it): Ada -> Bea -> Cal -> Dan, and Ada -> Eve.
GRANTS = [
    (b"A", b"bea", set()),
    (b"B", b"cal", {b"A"}),
    (b"C", b"dan", {b"A", b"B"}),
    (b"D", b"eve", set()),
]


def test_a_revoked_grant_closes_its_holder_and_everything_below() -> None:
    assert closed_keys(frozenset(), frozenset({b"A"}), GRANTS) == {b"bea", b"cal", b"dan"}
    assert closed_keys(frozenset(), frozenset({b"B"}), GRANTS) == {b"cal", b"dan"}


def test_a_revoked_key_closes_what_it_was_given_and_what_it_gave() -> None:
    assert closed_keys(frozenset({b"cal"}), frozenset(), GRANTS) == {b"cal", b"dan"}
    assert closed_keys(frozenset({b"eve"}), frozenset(), GRANTS) == {b"eve"}


def test_a_key_without_grants_closes_only_itself() -> None:
    assert closed_keys(frozenset({b"zed"}), frozenset({b"nope"}), GRANTS) == {b"zed"}
    assert closed_keys(frozenset(), frozenset(), []) == set()


def test_a_batch_stores_each_revocation_once_and_closes_the_server_to_its_keys(
    tmp_path: Path,
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    db.upgrade(engine)
    entropy = SystemEntropy()
    car, owner, friend = (entropy.new_private_key() for _ in range(3))
    vid = car.public_key.key_id
    with engine.begin() as conn:
        for key, kind in ((car, "vehicle"), (owner, "phone"), (friend, "phone")):
            add_principal(conn, key.public_key, kind, 1.0)
        conn.execute(
            sa.insert(db.vehicles).values(
                vehicle_id=vid,
                public_key=car.public_bytes,
                name="car",
                registered_at=1.0,
                last_seen=1.0,
                state={},
            )
        )
        set_owner(conn, vid, owner.public_key.key_id)
        add_friend(conn, vid, friend.public_key.key_id, 1e12)
    raw = credentials.issue_revocation(
        owner, vehicle_id=vid, seq=1, keys=[friend.public_key.key_id], issued_at=2
    )
    forged = credentials.issue_revocation(
        friend, vehicle_id=vid, seq=2, keys=[owner.public_key.key_id], issued_at=2
    )

    with engine.begin() as conn:
        with pytest.raises(HTTPException):  # signed by a friend, not an owner
            verify_revocations(conn, [(vid, forged)])
        [checked] = verify_revocations(conn, [(vid, raw)])
        items = [(vid, raw, checked), (vid, raw, checked)]  # the same one twice in a batch
        first = store_revocations(conn, items, 3.0)
    assert [a["status"] for a in first] == ["pending", "pending"] and first[0] == first[1]
    pushed: list[bytes] = []
    publish_revocations(
        Hub(engine=engine, clock=lambda: 3.0, publish=lambda v, m: pushed.append(m["raw"])),
        items,
        first,
    )
    assert pushed == [raw]  # once, though it came twice
    with engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.revocations)).scalar() == 1
        revoked = dict(conn.execute(sa.select(db.members.c.key_id, db.members.c.revoked)).all())
        assert revoked == {owner.public_key.key_id: False, friend.public_key.key_id: True}
        conn.execute(sa.update(db.revocations).values(status="applied"))
    with engine.begin() as conn:  # posted again later: its known status, nothing new
        [again] = store_revocations(conn, items[:1], 4.0)
    assert again == {**first[0], "status": "applied"}
    engine.dispose()


def test_inserts_that_lose_a_race_are_answers_not_errors(database: str) -> None:
    engine = db.make_engine(database)
    db.upgrade(engine)
    row = {"key_id": b"k" * 16, "nonce": "n" * 20, "created_at": 1.0}
    with engine.begin() as conn:
        assert db.insert_new(conn, db.nonces, row) is True
        assert db.insert_new(conn, db.nonces, row) is False  # taken: no IntegrityError
        other = {**row, "nonce": "m" * 20}
        db.insert_new_rows(conn, db.nonces, [row, other, other])
        count = conn.execute(sa.select(sa.func.count()).select_from(db.nonces)).scalar()
    assert count == 2
    engine.dispose()
