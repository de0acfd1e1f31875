"""The phone's wallet (SQLite, WAL): its car keys, key requests and the grants it issued.

Private keys and persistent keys are encrypted at rest with AES-256-GCM under a wallet key. The
wallet key lives in the OS keyring (``keyring``) where there is one, or is wrapped with a
passphrase through scrypt (``TETHER_PASSPHRASE`` for scripts). Several cars per phone, and several
keys per car (one per name), each with its rights, validity window and status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from tether import storage
from tether.errors import (
    AuthenticationFailed,
    LocalCode,
    PassphraseNeeded,
    StorageError,
    UsageError,
    WrongPassphrase,
)
from tether.protocol import crypto
from tether.protocol.credentials import Limits
from tether.protocol.crypto import PrivateKey, PublicKey

DB_NAME = "phone.db"
SCHEMA_VERSION = 2
PASSPHRASE_ENV = "TETHER_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret
KEYRING_SERVICE = "tether-wallet"
_SCRYPT_N = 2**15

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cars (
    name TEXT PRIMARY KEY,
    vehicle_key BLOB NOT NULL,
    vehicle_name TEXT NOT NULL,
    address TEXT NOT NULL,
    endpoint_scalar BLOB NOT NULL,
    role TEXT NOT NULL,
    rights TEXT NOT NULL,
    not_before REAL,
    not_after REAL,
    limits TEXT NOT NULL DEFAULT '{}',
    credential BLOB,
    enrolled INTEGER NOT NULL DEFAULT 0,
    persistent_key BLOB,
    ratchet INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    added_at REAL NOT NULL,
    UNIQUE (vehicle_key, endpoint_scalar)
);
CREATE TABLE IF NOT EXISTS requests (
    key_id BLOB PRIMARY KEY,
    scalar BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consent (
    car TEXT NOT NULL,
    category TEXT NOT NULL,
    decision TEXT NOT NULL,
    PRIMARY KEY (car, category)
);
CREATE TABLE IF NOT EXISTS disclosures (
    time REAL NOT NULL,
    car TEXT NOT NULL,
    category TEXT NOT NULL,
    items INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    decision TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS issued (
    serial BLOB PRIMARY KEY,
    car TEXT NOT NULL,
    grantee_id BLOB NOT NULL,
    label TEXT NOT NULL,
    rights TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    issued_at REAL NOT NULL,
    revoked_seq INTEGER
);
"""


class KeyStatus(enum.StrEnum):
    """What this phone knows of one of its keys: usable, or refused by the car (revoked/unknown)."""

    ACTIVE = "active"
    REVOKED = "revoked"

    @classmethod
    def read(cls, stored: str) -> KeyStatus:
        # Older wallets stored a sentence for a refused key; anything but "active" is refused.
        return cls.ACTIVE if stored == cls.ACTIVE.value else cls.REVOKED


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CarKey:
    """Everything the phone holds for one key to one car."""

    name: str
    vehicle_key: PublicKey
    vehicle_name: str
    address: str
    endpoint_key: PrivateKey
    role: str
    persistent_key: bytes | None
    ratchet: int
    added_at: float
    rights: frozenset[str] = frozenset()
    not_before: float | None = None
    not_after: float | None = None
    limits: Limits = dataclasses.field(default_factory=Limits)
    credential: bytes | None = None
    enrolled: bool = True
    status: KeyStatus = KeyStatus.ACTIVE

    @property
    def vehicle_id(self) -> bytes:
        return self.vehicle_key.key_id

    @property
    def endpoint_id(self) -> bytes:
        return self.endpoint_key.public_key.key_id


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IssuedGrant:
    """A grant this phone signed (so its owner can list and revoke it)."""

    serial: bytes
    car: str
    grantee_id: bytes
    label: str
    rights: frozenset[str]
    not_before: float
    not_after: float
    issued_at: float
    revoked_seq: int | None


_COLUMNS = (
    "name, vehicle_key, vehicle_name, address, endpoint_scalar, role, rights, not_before,"
    " not_after, limits, credential, enrolled, persistent_key, ratchet, status, added_at"
)


class _Sealer:
    """AES-GCM under the wallet key; the associated data names what is sealed."""

    def __init__(self, key: bytes) -> None:
        self._aead = crypto.Aead(key)

    def seal(self, plaintext: bytes, label: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.seal(nonce, plaintext, b"tether wallet " + label)

    def open(self, sealed: bytes, label: bytes) -> bytes:
        try:
            return self._aead.open(sealed[:12], sealed[12:], b"tether wallet " + label)
        except AuthenticationFailed:
            raise StorageError(
                "the wallet is damaged or the key is wrong", code=LocalCode.WALLET_CORRUPT
            ) from None


def _kek(passphrase: str, salt: bytes) -> bytes:
    return crypto.scrypt(passphrase.encode(), salt=salt, n=_SCRYPT_N)


def has_keyring() -> bool:
    """Whether this machine has an OS keyring the wallet could use."""
    return _keyring_backend() is not None


def _keyring_backend() -> Any | None:
    """The OS keyring if a usable one exists here (none on a headless server)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:  # pragma: no cover - keyring is a dependency
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring | null.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return keyring


class PhoneWallet:
    """A phone's keys, opened from a directory."""

    def __init__(self, conn: sqlite3.Connection, directory: Path, sealer: _Sealer) -> None:
        self._conn = conn
        self.directory = directory
        self._sealer = sealer
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.name = str(meta["phone_name"])

    # -- lifecycle --------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, *, name: str, passphrase: str | None = None) -> PhoneWallet:
        """A new wallet; its key goes to the OS keyring, or is wrapped with ``passphrase``.

        Everything that can refuse is checked before anything is written: a failed create leaves
        no directory and no file behind.
        """
        path = directory / DB_NAME
        if path.exists():
            raise UsageError(f"{directory} already holds a phone; use another --dir")
        backend = None if passphrase else _keyring_backend()
        if not passphrase and backend is None:
            raise UsageError(
                f"no OS keyring here to protect the wallet: set {PASSPHRASE_ENV}"
                " (or answer the passphrase question on a terminal)"
            )
        made = not directory.exists()
        try:
            return cls._create(directory, name=name, passphrase=passphrase, backend=backend)
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    for leftover in directory.iterdir():
                        leftover.unlink()
                    directory.rmdir()
            raise

    @classmethod
    def _create(
        cls, directory: Path, *, name: str, passphrase: str | None, backend: Any | None
    ) -> PhoneWallet:
        storage.private_dir(directory)
        path = directory / DB_NAME
        wallet_key = os.urandom(32)
        wallet_id = os.urandom(16).hex()
        meta: list[tuple[str, object]] = [
            ("schema_version", SCHEMA_VERSION),
            ("phone_name", name),
            ("wallet_id", wallet_id),
        ]
        if passphrase:
            salt = os.urandom(16)
            meta += [
                ("protection", "passphrase"),
                ("salt", salt),
                ("wrapped_key", _Sealer(_kek(passphrase, salt)).seal(wallet_key, b"key")),
            ]
        else:
            assert backend is not None
            backend.set_password(KEYRING_SERVICE, wallet_id, wallet_key.hex())
            meta.append(("protection", "keyring"))
        conn = storage.connect(path, create=True)
        conn.executescript(_SCHEMA)
        with storage.write(conn):
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta)
        return cls(conn, directory, _Sealer(wallet_key))

    @classmethod
    def open(cls, directory: Path, *, passphrase: str | None = None) -> PhoneWallet:
        conn = storage.connect(directory / DB_NAME, create=False)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
            conn.close()
            raise StorageError(f"{directory} holds an unknown wallet version")
        if meta["protection"] == "passphrase":
            if not passphrase:
                conn.close()
                raise PassphraseNeeded(
                    f"this wallet is locked with a passphrase: set {PASSPHRASE_ENV}"
                )
            try:
                key = _Sealer(_kek(passphrase, bytes(meta["salt"]))).open(
                    bytes(meta["wrapped_key"]), b"key"
                )
            except StorageError:
                conn.close()
                raise WrongPassphrase("wrong passphrase for this wallet") from None
        else:
            backend = _keyring_backend()
            stored = backend.get_password(KEYRING_SERVICE, meta["wallet_id"]) if backend else None
            if stored is None:
                conn.close()
                raise UsageError("this wallet's key is not in this machine's keyring")
            key = bytes.fromhex(stored)
        return cls(conn, directory, _Sealer(key))

    def close(self) -> None:
        self._conn.close()

    def change_passphrase(self, old: str, new: str) -> None:
        """Re-wrap the wallet key under ``new`` (the keys themselves do not change)."""
        if not new:
            raise UsageError("the new passphrase is empty")
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("protection") != "passphrase":
            raise UsageError("this wallet is protected by the OS keyring, not a passphrase")
        try:
            key = _Sealer(_kek(old, bytes(meta["salt"]))).open(bytes(meta["wrapped_key"]), b"key")
        except StorageError:
            raise WrongPassphrase("wrong passphrase for this wallet") from None
        salt = os.urandom(16)
        wrapped = _Sealer(_kek(new, salt)).seal(key, b"key")
        with storage.write(self._conn) as conn:  # both or neither: never a key no one can open
            conn.execute("UPDATE meta SET value = ? WHERE key = 'salt'", (salt,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'wrapped_key'", (wrapped,))

    # -- cars -------------------------------------------------------------------------------------
    def _car(self, row: tuple[Any, ...]) -> CarKey:
        (
            name,
            vkey,
            vname,
            address,
            scalar,
            role,
            rights,
            nb,
            na,
            limits,
            credential,
            enrolled,
            persistent,
            ratchet,
            status,
            added,
        ) = row
        label = name.encode()
        return CarKey(
            name=name,
            vehicle_key=PublicKey(bytes(vkey)),
            vehicle_name=vname,
            address=address,
            endpoint_key=PrivateKey.from_scalar(
                self._sealer.open(bytes(scalar), b"scalar " + label)
            ),
            role=role,
            rights=frozenset(rights.split(",")) - {""},
            not_before=nb,
            not_after=na,
            limits=Limits.from_cbor(json.loads(limits)),
            credential=bytes(credential) if credential is not None else None,
            enrolled=bool(enrolled),
            persistent_key=(
                self._sealer.open(bytes(persistent), b"persistent " + label)
                if persistent is not None
                else None
            ),
            ratchet=ratchet,
            status=KeyStatus.read(status),
            added_at=added,
        )

    def remove_car(self, name: str) -> CarKey:
        """Forget the key called ``name`` for good (its private key is deleted with it)."""
        car = self.car(name)
        with storage.write(self._conn) as conn:
            conn.execute("DELETE FROM cars WHERE name = ?", (name,))
        return car

    def cars(self) -> list[CarKey]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM cars ORDER BY added_at")
        return [self._car(row) for row in rows]

    def car(self, name: str | None) -> CarKey:
        """The key called ``name``, or the only key when ``name`` is None."""
        cars = self.cars()
        if name is None:
            if len(cars) == 1:
                return cars[0]
            if not cars:
                raise UsageError("this phone has no car key yet; pair or accept one first")
            names = ", ".join(c.name for c in cars)
            raise UsageError(f"this phone holds several keys; pick one with --vehicle ({names})")
        for car in cars:
            if car.name == name:
                return car
        raise UsageError(f"this phone has no key called {name!r}")

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
        rights: frozenset[str] = frozenset(),
        not_before: float | None = None,
        not_after: float | None = None,
        limits: Limits | None = None,
        credential: bytes | None = None,
        replaces: str | None = None,
    ) -> CarKey:
        """Store a new key; ``replaces`` names a dead key it takes the place of (at once)."""
        if any(c.name == name and c.name != replaces for c in self.cars()):
            raise UsageError(f"this phone already has a key called {name!r}; pick another name")
        label = name.encode()
        with storage.write(self._conn) as conn:
            if replaces is not None:
                conn.execute("DELETE FROM cars WHERE name = ?", (replaces,))
            try:
                conn.execute(
                    f"INSERT INTO cars ({_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 'active', ?)",
                    (
                        name,
                        vehicle_key.encoded,
                        vehicle_name,
                        address,
                        self._sealer.seal(endpoint_key.scalar(), b"scalar " + label),
                        role,
                        ",".join(sorted(rights)),
                        not_before,
                        not_after,
                        json.dumps((limits or Limits()).to_cbor()),
                        credential,
                        int(credential is None),
                        now,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise UsageError("this phone already holds that key for that car") from exc
        return self.car(name)

    def set_persistent_key(self, name: str, key: bytes) -> None:
        """The car confirmed a transaction: store the next persistent key (the car knows us now)."""
        with storage.write(self._conn) as conn:
            conn.execute(
                "UPDATE cars SET persistent_key = ?, ratchet = ratchet + 1, enrolled = 1,"
                " status = 'active' WHERE name = ?",
                (self._sealer.seal(key, b"persistent " + name.encode()), name),
            )

    def set_status(self, name: str, status: KeyStatus) -> None:
        with storage.write(self._conn) as conn:
            conn.execute("UPDATE cars SET status = ? WHERE name = ?", (status.value, name))

    # -- sealed blobs (the vault) and consent
    def read_sealed(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT sealed FROM blobs WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._sealer.open(bytes(row[0]), name.encode())

    def write_sealed(self, name: str, plaintext: bytes) -> None:
        self.write_sealed_many({name: plaintext})

    def write_sealed_many(self, blobs: dict[str, bytes]) -> None:
        """Write several sealed blobs in one transaction: all of them, or none."""
        import time

        with storage.write(self._conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO blobs (name, sealed, updated_at) VALUES (?, ?, ?)",
                [
                    (name, self._sealer.seal(plaintext, name.encode()), time.time())
                    for name, plaintext in blobs.items()
                ],
            )

    def consent_rules(self) -> dict[tuple[str, str], str]:
        rows = self._conn.execute("SELECT car, category, decision FROM consent")
        return {(r[0], r[1]): r[2] for r in rows}

    def set_consent(self, car: str, category: str, decision: str) -> None:
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO consent (car, category, decision) VALUES (?, ?, ?)",
                (car, category, decision),
            )

    def log_disclosure(
        self, *, time: float, car: str, category: str, items: int, purpose: str, decision: str
    ) -> None:
        # A log, not a key: kill -9 safe without an fsync per answer (docs/vehicle.md).
        with storage.write(self._conn, sync=False) as conn:
            conn.execute(
                "INSERT INTO disclosures (time, car, category, items, purpose, decision)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time, car, category, items, purpose, decision),
            )

    def disclosures(self) -> list[tuple[float, str, str, int, str, str]]:
        rows = self._conn.execute(
            "SELECT time, car, category, items, purpose, decision FROM disclosures ORDER BY time"
        )
        return [tuple(r) for r in rows]

    # -- key requests (the friend's side) ---------------------------------------------------------
    def add_request(self, key: PrivateKey, *, now: float) -> None:
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT INTO requests (key_id, scalar, created_at) VALUES (?, ?, ?)",
                (key.public_key.key_id, self._sealer.seal(key.scalar(), b"request"), now),
            )

    def take_request(self, key_id: bytes) -> PrivateKey | None:
        """The pending key a grant was made for (removed once the grant is stored)."""
        row = self._conn.execute(
            "SELECT scalar FROM requests WHERE key_id = ?", (key_id,)
        ).fetchone()
        if row is None:
            return None
        return PrivateKey.from_scalar(self._sealer.open(bytes(row[0]), b"request"))

    def pending_requests(self) -> list[PrivateKey]:
        """Keys this phone asked grants for and has not received one for yet."""
        rows = self._conn.execute("SELECT scalar FROM requests ORDER BY created_at").fetchall()
        return [PrivateKey.from_scalar(self._sealer.open(bytes(r[0]), b"request")) for r in rows]

    def drop_request(self, key_id: bytes) -> None:
        with storage.write(self._conn) as conn:
            conn.execute("DELETE FROM requests WHERE key_id = ?", (key_id,))

    # -- grants issued (the owner's side) ---------------------------------------------------------
    def record_issued(self, grant: IssuedGrant) -> None:
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT INTO issued (serial, car, grantee_id, label, rights, not_before,"
                " not_after, issued_at, revoked_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    grant.serial,
                    grant.car,
                    grant.grantee_id,
                    grant.label,
                    ",".join(sorted(grant.rights)),
                    grant.not_before,
                    grant.not_after,
                    grant.issued_at,
                ),
            )

    def issued(self) -> list[IssuedGrant]:
        rows = self._conn.execute(
            "SELECT serial, car, grantee_id, label, rights, not_before, not_after, issued_at,"
            " revoked_seq FROM issued ORDER BY issued_at"
        )
        return [
            IssuedGrant(
                serial=bytes(r[0]),
                car=r[1],
                grantee_id=bytes(r[2]),
                label=r[3],
                rights=frozenset(r[4].split(",")),
                not_before=r[5],
                not_after=r[6],
                issued_at=r[7],
                revoked_seq=r[8],
            )
            for r in rows
        ]

    def mark_revoked(self, *, serials: list[bytes], keys: list[bytes], seq: int) -> None:
        with storage.write(self._conn) as conn:
            conn.executemany(
                "UPDATE issued SET revoked_seq = ? WHERE serial = ? OR grantee_id = ?",
                [(seq, s, b"") for s in serials] + [(seq, b"", k) for k in keys],
            )

    def next_remote_counter(self, car: str, now: float) -> int:
        """A counter for a remote command to ``car``: grows by one and with time, never repeats."""
        name = f"remote_counter:{car}"
        with storage.write(self._conn) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            counter = max(int(row[0]) + 1 if row else 1, int(now * 1000))
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (name, counter))
        return counter

    def next_revocation_seq(self, now: float) -> int:
        """Sequence numbers grow with time (so several owner phones do not collide) and by one."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'revocation_seq'").fetchone()
        seq = max(int(row[0]) + 1 if row else 1, int(now * 1000))
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('revocation_seq', ?)", (seq,)
            )
        return seq
