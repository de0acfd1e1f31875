"""The car's audit log: append-only, hash-chained entries in the key store's database.

Entry n stores ``hash_n = SHA-256(hash_{n-1} || CBOR[seq, time, key_id, command, result, reason,
detail])`` (deterministic CBOR; ``hash_0`` is 32 zero bytes), and the store's meta table keeps the
head (last seq and hash) in the same transaction. :func:`verify` recomputes the chain and names the
first entry that was edited, deleted, inserted or reordered. Entries hold key ids, commands and
reasons only: never personal data.
"""

from __future__ import annotations

import dataclasses
import sqlite3

import cbor2

from tether.protocol import crypto

GENESIS = bytes(32)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One attempt: who (key id, or empty when unknown), what, the outcome and why."""

    seq: int
    time: float
    key_id: str
    command: str
    result: str  # "ok", "denied" or "error"
    reason: str
    detail: str

    def digest(self, prev: bytes) -> bytes:
        body = [
            self.seq,
            self.time,
            self.key_id,
            self.command,
            self.result,
            self.reason,
            self.detail,
        ]
        return crypto.sha256(prev + cbor2.dumps(body, canonical=True))


SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    key_id TEXT NOT NULL,
    command TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
"""


def _head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    row = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if row is None:
        return 0, GENESIS
    seq, digest = cbor2.loads(row[0])
    return int(seq), bytes(digest)


def append(
    conn: sqlite3.Connection,
    *,
    time: float,
    key_id: str,
    command: str,
    result: str,
    reason: str = "",
    detail: str = "",
) -> AuditEntry:
    """Append one entry; call inside the store's write transaction."""
    seq, prev = _head(conn)
    entry = AuditEntry(
        seq=seq + 1,
        time=time,
        key_id=key_id,
        command=command,
        result=result,
        reason=reason,
        detail=detail[:200],
    )
    digest = entry.digest(prev)
    conn.execute(
        "INSERT INTO audit (seq, time, key_id, command, result, reason, detail, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, time, key_id, command, result, reason, entry.detail, prev, digest),
    )
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)",
        (cbor2.dumps([entry.seq, digest]),),
    )
    # The car's time floor: a clock set back later cannot revive an expired key.
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('time_floor', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        (time,),
    )
    return entry


def entries(
    conn: sqlite3.Connection, *, since: int = 0, limit: int | None = None, last: int | None = None
) -> list[AuditEntry]:
    """Entries in order (by seq): after ``since``, the first ``limit`` or only the ``last`` few.

    ``last`` reads just the tail through the primary key, so showing the newest entries of a car
    with years of history costs the same as for a new car.
    """
    columns = "SELECT seq, time, key_id, command, result, reason, detail FROM audit WHERE seq > ?"
    if last is not None:
        sql = f"SELECT * FROM ({columns} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
        args: tuple[int, ...] = (since, last)
    elif limit is not None:
        sql, args = f"{columns} ORDER BY seq LIMIT ?", (since, limit)
    else:
        sql, args = f"{columns} ORDER BY seq", (since,)
    return [
        AuditEntry(
            seq=r[0], time=r[1], key_id=r[2], command=r[3], result=r[4], reason=r[5], detail=r[6]
        )
        for r in conn.execute(sql, args)
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """Where the chain breaks, and how."""

    seq: int
    what: str


def verify(conn: sqlite3.Connection) -> list[Problem]:
    """Recompute the whole chain; an empty list means it is intact."""
    problems: list[Problem] = []
    prev = GENESIS
    expected_seq = 1
    rows = conn.execute(
        "SELECT seq, time, key_id, command, result, reason, detail, prev_hash, hash"
        " FROM audit ORDER BY rowid"
    )
    for row in rows:
        entry = AuditEntry(
            seq=row[0],
            time=row[1],
            key_id=row[2],
            command=row[3],
            result=row[4],
            reason=row[5],
            detail=row[6],
        )
        if entry.seq != expected_seq:
            what = "missing entries before it" if entry.seq > expected_seq else "out of order"
            problems.append(Problem(entry.seq, f"expected entry {expected_seq}: {what}"))
            return problems
        if bytes(row[7]) != prev:
            problems.append(Problem(entry.seq, "does not link to the entry before it"))
            return problems
        if entry.digest(prev) != bytes(row[8]):
            problems.append(Problem(entry.seq, "was edited after it was written"))
            return problems
        prev = bytes(row[8])
        expected_seq += 1
    head_seq, head_hash = _head(conn)
    if head_seq != expected_seq - 1 or head_hash != prev:
        problems.append(
            Problem(
                expected_seq, f"the log ends at {expected_seq - 1} but its head says {head_seq}"
            )
        )
    return problems
