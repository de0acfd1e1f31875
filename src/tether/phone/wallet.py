"""The phone's wallet (SQLite, WAL, fsync per commit): one endpoint key per car, and what it knows.

Private keys are stored as raw scalars in this file for now; encryption at rest (passphrase or the
OS keyring) belongs to key sharing (issue 5).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

from tether import storage
from tether.errors import StorageError, UsageError
from tether.protocol.crypto import PrivateKey, PublicKey

DB_NAME = "phone.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cars (
    name TEXT PRIMARY KEY,
    vehicle_key BLOB NOT NULL UNIQUE,
    vehicle_name TEXT NOT NULL,
    address TEXT NOT NULL,
    endpoint_scalar BLOB NOT NULL,
    role TEXT NOT NULL,
    persistent_key BLOB,
    ratchet INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CarKey:
    """Everything the phone holds for one car."""

    name: str
    vehicle_key: PublicKey
    vehicle_name: str
    address: str
    endpoint_key: PrivateKey
    role: str
    persistent_key: bytes | None
    ratchet: int
    added_at: float

    @property
    def vehicle_id(self) -> bytes:
        return self.vehicle_key.key_id

    @property
    def endpoint_id(self) -> bytes:
        return self.endpoint_key.public_key.key_id


def _car(row: tuple[Any, ...]) -> CarKey:
    name, vkey, vname, address, scalar, role, persistent, ratchet, added = row
    return CarKey(
        name=name,
        vehicle_key=PublicKey(bytes(vkey)),
        vehicle_name=vname,
        address=address,
        endpoint_key=PrivateKey.from_scalar(bytes(scalar)),
        role=role,
        persistent_key=bytes(persistent) if persistent is not None else None,
        ratchet=ratchet,
        added_at=added,
    )


_COLUMNS = (
    "name, vehicle_key, vehicle_name, address, endpoint_scalar, role, persistent_key, ratchet,"
    " added_at"
)


class PhoneWallet:
    """A phone's keys, opened from a directory."""

    def __init__(self, conn: sqlite3.Connection, directory: Path) -> None:
        self._conn = conn
        self.directory = directory
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
            raise StorageError(f"{directory} holds an unknown wallet version")
        self.name = str(meta["phone_name"])

    @classmethod
    def create(cls, directory: Path, *, name: str) -> PhoneWallet:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / DB_NAME
        if path.exists():
            raise UsageError(f"{directory} already holds a phone; use another --dir")
        conn = storage.connect(path, create=True)
        conn.executescript(_SCHEMA)
        with storage.write(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", SCHEMA_VERSION), ("phone_name", name)],
            )
        return cls(conn, directory)

    @classmethod
    def open(cls, directory: Path) -> PhoneWallet:
        return cls(storage.connect(directory / DB_NAME, create=False), directory)

    def close(self) -> None:
        self._conn.close()

    def cars(self) -> list[CarKey]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM cars ORDER BY added_at")
        return [_car(row) for row in rows]

    def car(self, name: str | None) -> CarKey:
        """The car called ``name``, or the only car when ``name`` is None."""
        cars = self.cars()
        if name is None:
            if len(cars) == 1:
                return cars[0]
            if not cars:
                raise UsageError("this phone has no car yet; pair one first")
            names = ", ".join(c.name for c in cars)
            raise UsageError(f"this phone holds several cars; pick one with --vehicle ({names})")
        for car in cars:
            if car.name == name:
                return car
        raise UsageError(f"this phone has no car called {name!r}")

    def add_car(
        self,
        *,
        name: str,
        vehicle_key: PublicKey,
        vehicle_name: str,
        address: str,
        endpoint_key: PrivateKey,
        role: str,
        now: float,
    ) -> CarKey:
        if any(c.name == name for c in self.cars()):
            raise UsageError(f"this phone already has a car called {name!r}; pick another --name")
        with storage.write(self._conn) as conn:
            try:
                conn.execute(
                    f"INSERT INTO cars ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, 0, ?)",
                    (
                        name,
                        vehicle_key.encoded,
                        vehicle_name,
                        address,
                        endpoint_key.scalar(),
                        role,
                        now,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise UsageError("this phone already holds a key for that car") from exc
        return self.car(name)

    def set_persistent_key(self, name: str, key: bytes) -> None:
        with storage.write(self._conn) as conn:
            conn.execute(
                "UPDATE cars SET persistent_key = ?, ratchet = ratchet + 1 WHERE name = ?",
                (key, name),
            )
