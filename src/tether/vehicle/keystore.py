"""The car's durable key store (SQLite, WAL, fsync per commit): identity, endpoints, codes, audit.

Every change is one transaction that also appends its audit entry, and is committed before the
caller tells the phone it succeeded. An in-memory index of enrolled endpoints (most recently used
first) answers the protocol's lookups without touching the disk; it is rebuilt from the database
when the store opens, so a restart after ``kill -9`` sees exactly what was committed.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether import storage
from tether.errors import StorageError, UsageError
from tether.protocol.crypto import Entropy, PrivateKey, PublicKey
from tether.protocol.pairing import CodeState
from tether.vehicle import audit

DB_NAME = "vehicle.db"
SCHEMA_VERSION = 1
CODE_DIGITS = 8
CODE_TTL = 600.0
MAX_PAIRING_FAILURES = 5
OWNER_RIGHTS = frozenset({"unlock", "lock", "trunk", "drive", "climate", "locate", "share"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint_id BLOB PRIMARY KEY,
    public_key BLOB NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    rights TEXT NOT NULL,
    not_before REAL,
    not_after REAL,
    enrolled_at REAL NOT NULL,
    revoked_seq INTEGER,
    persistent_key BLOB,
    ratchet INTEGER NOT NULL DEFAULT 0,
    last_used REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pairing_code (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    code TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY,
    target BLOB NOT NULL,
    kind TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """An enrolled phone key as the car knows it."""

    endpoint_id: bytes
    public_key: PublicKey
    name: str
    role: str
    rights: frozenset[str]
    not_before: float | None
    not_after: float | None
    enrolled_at: float
    revoked_seq: int | None
    ratchet: int
    last_used: float

    @property
    def revoked(self) -> bool:
        return self.revoked_seq is not None


def _endpoint(row: tuple[Any, ...]) -> Endpoint:
    (eid, pub, name, role, rights, nb, na, enrolled, revoked, ratchet, last_used) = row
    return Endpoint(
        endpoint_id=bytes(eid),
        public_key=PublicKey(bytes(pub)),
        name=str(name),
        role=str(role),
        rights=frozenset(str(rights).split(",")) - {""},
        not_before=nb,
        not_after=na,
        enrolled_at=float(enrolled),
        revoked_seq=revoked,
        ratchet=int(ratchet),
        last_used=float(last_used),
    )


_ENDPOINT_COLUMNS = (
    "endpoint_id, public_key, name, role, rights, not_before, not_after, enrolled_at,"
    " revoked_seq, ratchet, last_used"
)


class VehicleStore:
    """The car's persistent state, opened from a directory."""

    def __init__(self, conn: sqlite3.Connection, directory: Path) -> None:
        self._conn = conn
        self.directory = directory
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
            raise StorageError(f"{directory} holds an unknown store version")
        self.identity = PrivateKey.from_scalar(bytes(meta["vehicle_scalar"]))
        self.name = str(meta["vehicle_name"])
        self.vehicle_id = self.identity.public_key.key_id
        self._endpoints: dict[bytes, Endpoint] = {}
        # Persistent keys of unrevoked endpoints, most recently used first (fast-path lookup).
        self._persistent: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self._data_version = -1
        self.refresh()

    def refresh(self) -> None:
        """Reload the endpoint index if another process (an admin CLI) changed the database."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._data_version:
            return
        self._data_version = version
        endpoints: dict[bytes, Endpoint] = {}
        persistent: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        rows = self._conn.execute(
            f"SELECT {_ENDPOINT_COLUMNS}, persistent_key FROM endpoints ORDER BY last_used DESC"
        )
        for row in rows:
            endpoint = _endpoint(row[:-1])
            endpoints[endpoint.endpoint_id] = endpoint
            if row[-1] is not None and not endpoint.revoked:
                persistent[endpoint.endpoint_id] = bytes(row[-1])
        self._endpoints, self._persistent = endpoints, persistent

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, *, name: str, entropy: Entropy, now: float) -> VehicleStore:
        """Make a new car identity in ``directory`` (which must not hold one yet)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / DB_NAME
        if path.exists():
            raise UsageError(f"{directory} already holds a vehicle; use another --dir")
        conn = storage.connect(path, create=True)
        key = entropy.new_private_key()
        conn.executescript(_SCHEMA + audit.SCHEMA)
        with storage.write(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("vehicle_scalar", key.scalar()),
                    ("vehicle_name", name),
                    ("created_at", now),
                    ("revocation_seq", 0),
                ],
            )
            audit.append(
                conn,
                time=now,
                key_id="",
                command="init",
                result="ok",
                detail=f"vehicle {key.public_key.key_id.hex()}",
            )
        return cls(conn, directory)

    @classmethod
    def open(cls, directory: Path) -> VehicleStore:
        """Open the car in ``directory``."""
        return cls(storage.connect(directory / DB_NAME, create=False), directory)

    def close(self) -> None:
        self._conn.close()

    def integrity_ok(self) -> bool:
        return storage.integrity_ok(self._conn)

    # -- the protocol's view (EndpointDirectory) --------------------------------------------------
    def endpoint_key(self, endpoint_id: bytes) -> PublicKey | None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None or endpoint.revoked:
            return None
        return endpoint.public_key

    def persistent_keys(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self._persistent.items())

    # -- reads ------------------------------------------------------------------------------------
    def endpoint(self, endpoint_id: bytes) -> Endpoint | None:
        return self._endpoints.get(endpoint_id)

    def endpoints(self) -> list[Endpoint]:
        return sorted(self._endpoints.values(), key=lambda e: e.enrolled_at)

    def revocation_seq(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'revocation_seq'").fetchone()
        return int(row[0])

    def pairing_code(self) -> CodeState | None:
        row = self._conn.execute(
            "SELECT code, expires_at, used, failures FROM pairing_code WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return CodeState(
            code=row[0],
            expires_at=row[1],
            used=bool(row[2]),
            failures=row[3],
            max_failures=MAX_PAIRING_FAILURES,
        )

    def audit_entries(self, *, since: int = 0, limit: int | None = None) -> list[audit.AuditEntry]:
        return audit.entries(self._conn, since=since, limit=limit)

    def verify_audit(self) -> list[audit.Problem]:
        return audit.verify(self._conn)

    # -- writes (each one durable transaction, with its audit entry) ----------------------------
    def new_pairing_code(self, *, now: float, ttl: float = CODE_TTL) -> str:
        """A fresh one-time code; replaces any earlier one and clears the failure count."""
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO pairing_code (id, code, expires_at, used, failures)"
                " VALUES (1, ?, ?, 0, 0)",
                (code, now + ttl),
            )
            audit.append(conn, time=now, key_id="", command="pairing-code", result="ok")
        return code

    def record_pairing_failure(self, *, now: float, reason: str) -> None:
        """Count one failed pairing attempt (before the phone is told)."""
        with storage.write(self._conn) as conn:
            conn.execute("UPDATE pairing_code SET failures = failures + 1 WHERE id = 1")
            audit.append(conn, time=now, key_id="", command="pair", result="denied", reason=reason)

    def enroll_owner(self, public_key: PublicKey, *, name: str, now: float) -> Endpoint:
        """Enrol a phone that proved the pairing code, and use the code up."""
        with storage.write(self._conn) as conn:
            conn.execute("UPDATE pairing_code SET used = 1 WHERE id = 1")
            endpoint = self._insert_endpoint(
                conn,
                public_key,
                name=name,
                role="owner",
                rights=OWNER_RIGHTS,
                not_before=None,
                not_after=None,
                now=now,
            )
            audit.append(
                conn,
                time=now,
                key_id=public_key.key_id.hex(),
                command="pair",
                result="ok",
                detail="owner key enrolled",
            )
        return endpoint

    def enroll(
        self,
        public_key: PublicKey,
        *,
        name: str,
        role: str,
        rights: frozenset[str],
        not_before: float | None,
        not_after: float | None,
        now: float,
    ) -> Endpoint:
        """Enrol a key on an authority the caller has already checked (an owner-signed grant)."""
        with storage.write(self._conn) as conn:
            endpoint = self._insert_endpoint(
                conn,
                public_key,
                name=name,
                role=role,
                rights=rights,
                not_before=not_before,
                not_after=not_after,
                now=now,
            )
            audit.append(
                conn,
                time=now,
                key_id=public_key.key_id.hex(),
                command="enroll",
                result="ok",
                detail=f"{role}: {','.join(sorted(rights))}",
            )
        return endpoint

    def _insert_endpoint(
        self,
        conn: sqlite3.Connection,
        public_key: PublicKey,
        *,
        name: str,
        role: str,
        rights: frozenset[str],
        not_before: float | None,
        not_after: float | None,
        now: float,
    ) -> Endpoint:
        existing = self._endpoints.get(public_key.key_id)
        if existing is not None and existing.revoked:
            raise UsageError("this key was revoked and can never be enrolled again")
        conn.execute(
            "INSERT OR REPLACE INTO endpoints (endpoint_id, public_key, name, role, rights,"
            " not_before, not_after, enrolled_at, revoked_seq, persistent_key, ratchet, last_used)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0, 0)",
            (
                public_key.key_id,
                public_key.encoded,
                name,
                role,
                ",".join(sorted(rights)),
                not_before,
                not_after,
                now,
            ),
        )
        endpoint = Endpoint(
            endpoint_id=public_key.key_id,
            public_key=public_key,
            name=name,
            role=role,
            rights=rights,
            not_before=not_before,
            not_after=not_after,
            enrolled_at=now,
            revoked_seq=None,
            ratchet=0,
            last_used=0.0,
        )
        self._endpoints[endpoint.endpoint_id] = endpoint  # only after the SQL succeeded
        self._persistent.pop(endpoint.endpoint_id, None)
        return endpoint

    def set_persistent_key(self, endpoint_id: bytes, key: bytes, *, now: float) -> int:
        """Store an endpoint's next persistent key; returns the ratchet count (never decreases).

        Committed without fsync (survives ``kill -9``; made durable by the next synced commit): if
        a power cut rolls the newest step back, the phone's key is ahead of the car's, the next
        fast transaction falls back to standard, and that re-keys both (docs/vehicle.md).
        """
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None or endpoint.revoked:
            raise StorageError("no such enrolled endpoint")
        with storage.write(self._conn, sync=False) as conn:
            cur = conn.execute(
                "UPDATE endpoints SET persistent_key = ?, ratchet = ratchet + 1, last_used = ?"
                " WHERE endpoint_id = ? AND revoked_seq IS NULL",
                (key, now, endpoint_id),
            )
            if cur.rowcount != 1:
                raise StorageError("endpoint vanished while updating its key")
        updated = dataclasses.replace(endpoint, ratchet=endpoint.ratchet + 1, last_used=now)
        self._endpoints[endpoint_id] = updated
        self._persistent[endpoint_id] = key
        self._persistent.move_to_end(endpoint_id, last=False)
        return updated.ratchet

    def revoke(self, endpoint_id: bytes, *, seq: int, now: float, by: str = "") -> None:
        """Revoke an endpoint for good; ``seq`` must be above every sequence number seen so far."""
        current = self.revocation_seq()
        if seq <= current:
            raise UsageError(f"revocation {seq} is not newer than {current}; refused as a replay")
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT INTO revocations (seq, target, kind, received_at) VALUES (?, ?, 'key', ?)",
                (seq, endpoint_id, now),
            )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'revocation_seq'", (seq,))
            conn.execute(
                "UPDATE endpoints SET revoked_seq = ?, persistent_key = NULL WHERE endpoint_id = ?",
                (seq, endpoint_id),
            )
            audit.append(
                conn,
                time=now,
                key_id=endpoint_id.hex(),
                command="revoke",
                result="ok",
                detail=f"seq {seq}" + (f" by {by}" if by else ""),
            )
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is not None:
            self._endpoints[endpoint_id] = dataclasses.replace(endpoint, revoked_seq=seq)
        self._persistent.pop(endpoint_id, None)

    def audit(
        self,
        *,
        now: float,
        key_id: bytes | None,
        command: str,
        result: str,
        reason: str = "",
        detail: str = "",
    ) -> None:
        """Append one audit entry on its own (an attempt that changed nothing else)."""
        with storage.write(self._conn, sync=False) as conn:
            audit.append(
                conn,
                time=now,
                key_id=key_id.hex() if key_id else "",
                command=command,
                result=result,
                reason=reason,
                detail=detail,
            )
