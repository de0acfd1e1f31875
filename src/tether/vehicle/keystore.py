"""The car's durable key store (SQLite, WAL, fsync per commit): identity, endpoints, codes, audit.

Every change is one transaction that also appends its audit entry, and is committed before the
caller tells the phone it succeeded. An in-memory index of enrolled endpoints (most recently used
first) answers the protocol's lookups without touching the disk; it is rebuilt from the database
when the store opens, so a restart after ``kill -9`` sees exactly what was committed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether import storage
from tether.errors import GrantError, PairingError, StorageError, UsageError, WireCode
from tether.protocol import credentials
from tether.protocol.credentials import Limits, Revocation, VerifiedChain
from tether.protocol.crypto import Entropy, PrivateKey, PublicKey, Signer, sha256
from tether.protocol.names import RIGHTS, Role, role_of_chain
from tether.protocol.pairing import CodeState
from tether.vehicle import audit, hsm

DB_NAME = "vehicle.db"
SCHEMA_VERSION = 3  # 2: grants, revoked ids, limits, settings; 3: remote command counters
CODE_DIGITS = 8
CODE_TTL = 600.0
MAX_PAIRING_FAILURES = 5
NO_LIMITS = Limits()

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
    last_used REAL NOT NULL DEFAULT 0,
    grant_serial BLOB,
    limits TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS grants (
    serial BLOB PRIMARY KEY,
    parent BLOB,
    issuer_id BLOB NOT NULL,
    grantee_id BLOB NOT NULL,
    raw BLOB NOT NULL,
    seen_at REAL NOT NULL
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
    digest BLOB NOT NULL,
    issuer TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_ids (
    id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_counters (
    endpoint_id BLOB PRIMARY KEY,
    counter INTEGER NOT NULL
);
"""
_UPGRADES = {
    # 2 -> 3: remote command counters (docs/protocol.md §14); nothing else changes.
    2: "CREATE TABLE IF NOT EXISTS remote_counters"
    " (endpoint_id BLOB PRIMARY KEY, counter INTEGER NOT NULL);",
}


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
    grant_serial: bytes | None = None
    limits: Limits = NO_LIMITS

    @property
    def revoked(self) -> bool:
        return self.revoked_seq is not None


def _endpoint(row: tuple[Any, ...]) -> Endpoint:
    (eid, pub, name, role, rights, nb, na, enrolled, revoked, ratchet, last_used, serial, lim) = row
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
        grant_serial=bytes(serial) if serial is not None else None,
        limits=Limits.from_cbor(json.loads(lim)) if lim != "{}" else NO_LIMITS,
    )


_ENDPOINT_COLUMNS = (
    "endpoint_id, public_key, name, role, rights, not_before, not_after, enrolled_at,"
    " revoked_seq, ratchet, last_used, grant_serial, limits"
)


def _identity(meta: dict[str, Any]) -> Signer:
    """The car's signing key: from the store, or the PKCS#11 token the store names."""
    if "identity_token" in meta:
        ref = hsm.TokenKey(**json.loads(str(meta["identity_token"])))
        return hsm.TokenSigner(ref, PublicKey(bytes(meta["vehicle_public"])))
    return PrivateKey.from_scalar(bytes(meta["vehicle_scalar"]))


class VehicleStore:
    """The car's persistent state, opened from a directory."""

    def __init__(self, conn: sqlite3.Connection, directory: Path) -> None:
        self._conn = conn
        self.directory = directory
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", 0))
        while version in _UPGRADES:
            with storage.write(conn) as tx:
                tx.execute(_UPGRADES[version])
                version += 1
                tx.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
            meta["schema_version"] = version
        if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
            raise StorageError(f"{directory} holds an unknown store version")
        self.identity: Signer = _identity(meta)
        self.name = str(meta["vehicle_name"])
        self.vehicle_id = self.identity.public_key.key_id
        self._endpoints: dict[bytes, Endpoint] = {}
        # Persistent keys of unrevoked endpoints, most recently used first (fast-path lookup).
        self._persistent: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self._data_version = -1
        self._revoked: set[bytes] = set()
        self._floor = 0.0
        self.max_depth = credentials.DEFAULT_MAX_DEPTH
        self.refresh()

    def refresh(self) -> bool:
        """Reload the endpoint index if another process (an admin CLI) changed the database;
        True if it did."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._data_version:
            return False
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
        self._revoked = {bytes(r[0]) for r in self._conn.execute("SELECT id FROM revoked_ids")}
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        self._floor = float(meta.get("time_floor", 0.0))
        self.max_depth = int(meta.get("max_depth", credentials.DEFAULT_MAX_DEPTH))
        return True

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        name: str,
        entropy: Entropy,
        now: float,
        token: hsm.TokenKey | None = None,
    ) -> VehicleStore:
        """Make a new car identity in ``directory`` (which must not hold one yet).

        With ``token`` the identity key is made inside that PKCS#11 token and the store keeps
        only its public half and where it is; otherwise the store keeps the key itself.
        """
        storage.private_dir(directory)
        path = directory / DB_NAME
        if path.exists():
            raise UsageError(f"{directory} already holds a vehicle; use another --dir")
        if token is not None:
            public = hsm.create(token)  # first: a token that refuses leaves no store behind
            identity: list[tuple[str, object]] = [
                ("vehicle_public", public.encoded),
                ("identity_token", json.dumps(dataclasses.asdict(token), sort_keys=True)),
            ]
        else:
            key = entropy.new_private_key()
            public = key.public_key
            identity = [("vehicle_scalar", key.scalar())]
        conn = storage.connect(path, create=True)
        conn.executescript(_SCHEMA + audit.SCHEMA)
        with storage.write(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    *identity,
                    ("vehicle_name", name),
                    ("created_at", now),
                    ("revocation_seq", 0),
                    ("max_depth", credentials.DEFAULT_MAX_DEPTH),
                ],
            )
            audit.append(
                conn,
                time=now,
                key_id="",
                command="init",
                result="ok",
                detail=f"vehicle {public.key_id.hex()}"
                + (" (key in a PKCS#11 token)" if token else ""),
            )
        return cls(conn, directory)

    @classmethod
    def open(cls, directory: Path) -> VehicleStore:
        """Open the car in ``directory``."""
        return cls(storage.connect(directory / DB_NAME, create=False), directory)

    def close(self) -> None:
        self._conn.close()
        if isinstance(self.identity, hsm.TokenSigner):
            self.identity.close()  # the token's session

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

    def owner_key(self, key_id: bytes) -> PublicKey | None:
        """An unrevoked owner key, the only kind that may sign root grants and revocations."""
        endpoint = self._endpoints.get(key_id)
        if endpoint is None or endpoint.revoked or endpoint.role != Role.OWNER:
            return None
        return endpoint.public_key

    def is_revoked(self, some_id: bytes) -> bool:
        """True for a revoked key id or grant serial (directly or by cascade)."""
        return some_id in self._revoked

    def set_max_depth(self, depth: int, *, now: float) -> None:
        """How long a delegation chain this car accepts (1: only the owner's own grants)."""
        if not 1 <= depth <= credentials.MAX_CHAIN:
            raise UsageError(f"the delegation depth is 1 to {credentials.MAX_CHAIN}")
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('max_depth', ?)", (depth,)
            )
            audit.append(
                conn,
                time=now,
                key_id="",
                command="setting",
                result="ok",
                detail=f"max_depth = {depth}",
            )
        self.max_depth = depth
        self._bump_floor(now)

    def setting(self, name: str, default: str = "") -> str:
        """An owner setting of this car (for example ``ranging_for_app``)."""
        row = self._conn.execute(
            "SELECT value FROM meta WHERE key = ?", (f"setting {name}",)
        ).fetchone()
        return str(row[0]) if row is not None else default

    def set_setting(self, name: str, value: str, *, now: float) -> None:
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"setting {name}", value)
            )
            audit.append(
                conn,
                time=now,
                key_id="",
                command="setting",
                result="ok",
                detail=f"{name} = {value}",
            )
        self._bump_floor(now)

    def time_floor(self) -> float:
        """The latest time this car has recorded: its clock may not go back before it."""
        return self._floor

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

    def audit_entries(
        self, *, since: int = 0, limit: int | None = None, last: int | None = None
    ) -> list[audit.AuditEntry]:
        return audit.entries(self._conn, since=since, limit=limit, last=last)

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
        self._bump_floor(now)
        return code

    def reserve_pairing_guess(self, *, now: float) -> int:
        """Spend one guess of the code, atomically and durably, before it is tested.

        The count is checked and incremented in one statement at the moment a PairConfirm is
        tested, for every connection (and every process) together, so parallel guessing gets no
        more tries than serial guessing. Returns the guesses left after this one; raises
        :class:`PairingError` when none is left (the code is then void), or the code is gone.
        """
        with storage.write(self._conn) as conn:
            cur = conn.execute(
                "UPDATE pairing_code SET failures = failures + 1"
                " WHERE id = 1 AND used = 0 AND failures < ? AND expires_at > ?",
                (MAX_PAIRING_FAILURES, now),
            )
            row = conn.execute(
                "SELECT used, failures, expires_at FROM pairing_code WHERE id = 1"
            ).fetchone()
        self._bump_floor(now)
        if cur.rowcount == 1:
            return MAX_PAIRING_FAILURES - int(row[1])
        if row is None or row[0]:
            raise PairingError("no pairing code is active on this car", code=WireCode.NO_CODE)
        if now >= row[2]:
            raise PairingError("the pairing code has expired", code=WireCode.CODE_EXPIRED)
        raise PairingError(
            "pairing is locked after too many wrong codes; show a new code on the car",
            code=WireCode.PAIRING_LOCKED,
        )

    def enroll_owner(self, public_key: PublicKey, *, name: str, now: float) -> Endpoint:
        """Enrol a phone that proved the pairing code, and use the code up."""
        with storage.write(self._conn) as conn:
            cur = conn.execute("UPDATE pairing_code SET used = 1 WHERE id = 1 AND used = 0")
            if cur.rowcount != 1:  # a second right guess racing the first: the code is spent
                raise PairingError("no pairing code is active on this car", code=WireCode.NO_CODE)
            endpoint = self._insert_endpoint(
                conn,
                public_key,
                name=name,
                role=Role.OWNER,
                rights=RIGHTS,
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
        self._bump_floor(now)
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
        limits: Limits | None = None,
    ) -> Endpoint:
        """Enrol a key on an authority the caller has already checked (tests, admin tools)."""
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
                limits=limits or NO_LIMITS,
            )
            audit.append(
                conn,
                time=now,
                key_id=public_key.key_id.hex(),
                command="enroll",
                result="ok",
                detail=f"{role}: {','.join(sorted(rights))}",
            )
        self._bump_floor(now)
        return endpoint

    def enroll_grant(self, chain: VerifiedChain, *, now: float) -> Endpoint:
        """Enrol the holder of a verified credential (first use), remembering every grant in it.

        A grant never demotes an owner: for a key the car already holds as its owner (a friend
        with ``share`` can sign a sub-grant naming the owner's public key), nothing changes.
        """
        leaf = chain.leaf
        known = self._endpoints.get(leaf.grantee.key_id)
        if known is not None and known.role == Role.OWNER and not known.revoked:
            self.audit(
                now=now,
                key_id=known.endpoint_id,
                command="enroll",
                result="denied",
                reason=WireCode.GRANT_ROLE_CONFLICT,
                detail=f"grant {leaf.serial.hex()[:12]} names an owner key; kept as owner",
            )
            return known
        with storage.write(self._conn) as conn:
            for grant in chain.grants:
                conn.execute(
                    "INSERT OR IGNORE INTO grants (serial, parent, issuer_id, grantee_id, raw,"
                    " seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        grant.serial,
                        grant.parent,
                        grant.issuer_id,
                        grant.grantee.key_id,
                        grant.raw,
                        now,
                    ),
                )
            endpoint = self._insert_endpoint(
                conn,
                leaf.grantee,
                name=leaf.label or "shared key",
                role=role_of_chain(len(chain.grants)),
                rights=leaf.rights,
                not_before=float(leaf.not_before),
                not_after=float(leaf.expires),
                now=now,
                limits=leaf.limits,
                grant_serial=leaf.serial,
            )
            audit.append(
                conn,
                time=now,
                key_id=leaf.grantee.key_id.hex(),
                command="enroll",
                result="ok",
                detail=f"grant {leaf.serial.hex()[:12]}: {','.join(sorted(leaf.rights))}",
            )
        self._bump_floor(now)
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
        limits: Limits = NO_LIMITS,
        grant_serial: bytes | None = None,
    ) -> Endpoint:
        if public_key.key_id in self._revoked:
            raise UsageError("this key was revoked and can never be enrolled again")
        conn.execute(
            "INSERT OR REPLACE INTO endpoints (endpoint_id, public_key, name, role, rights,"
            " not_before, not_after, enrolled_at, revoked_seq, persistent_key, ratchet, last_used,"
            " grant_serial, limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0, 0, ?, ?)",
            (
                public_key.key_id,
                public_key.encoded,
                name,
                role,
                ",".join(sorted(rights)),
                not_before,
                not_after,
                now,
                grant_serial,
                json.dumps(limits.to_cbor()),
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
            grant_serial=grant_serial,
            limits=limits,
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

    # -- remote commands (docs/protocol.md §14) --------------------------------------------------
    def remote_counter(self, endpoint_id: bytes) -> int:
        """The highest remote-command counter seen from this endpoint (0: none yet)."""
        row = self._conn.execute(
            "SELECT counter FROM remote_counters WHERE endpoint_id = ?", (endpoint_id,)
        ).fetchone()
        return int(row[0]) if row else 0

    def accept_remote(self, endpoint_id: bytes, counter: int, *, now: float) -> None:
        """Record a remote command's counter, durably, before the car acts on it (no replays)."""
        with storage.write(self._conn) as conn:
            cur = conn.execute(
                "INSERT INTO remote_counters (endpoint_id, counter) VALUES (?, ?)"
                " ON CONFLICT (endpoint_id) DO UPDATE SET counter = excluded.counter"
                " WHERE excluded.counter > remote_counters.counter",
                (endpoint_id, counter),
            )
            if cur.rowcount != 1:
                raise GrantError(
                    "this command was already seen (a replay)", code=WireCode.COMMAND_REPLAYED
                )
        self._bump_floor(now)

    def revoke(self, endpoint_id: bytes, *, seq: int, now: float, by: str = "") -> None:
        """Revoke one key locally (an admin on the car); ``seq`` must be above every seen so far."""
        current = self.revocation_seq()
        if seq <= current:
            raise UsageError(f"revocation {seq} is not newer than {current}; refused as a replay")
        digest = sha256(b"local" + endpoint_id + seq.to_bytes(8, "big"))
        self._revoke(seq, digest, by or "local", keys={endpoint_id}, serials=set(), now=now)

    def apply_revocation(self, revocation: Revocation, *, now: float) -> tuple[bool, int]:
        """Apply a verified owner revocation, cascading; returns (newly applied, its seq).

        The same revocation delivered twice is acknowledged again (idempotent); any other one
        whose sequence number is not above the last is refused as a replay.
        """
        digest = sha256(revocation.raw)
        row = self._conn.execute(
            "SELECT digest FROM revocations WHERE seq = ?", (revocation.seq,)
        ).fetchone()
        if row is not None and bytes(row[0]) == digest:
            return False, revocation.seq
        current = self.revocation_seq()
        if revocation.seq <= current:
            raise GrantError(
                f"revocation {revocation.seq} is older than the car's {current}",
                code=WireCode.REVOCATION_REPLAYED,
            )
        self._revoke(
            revocation.seq,
            digest,
            revocation.issuer_id.hex(),
            keys=set(revocation.keys),
            serials=set(revocation.grants),
            now=now,
        )
        return True, revocation.seq

    def _cascade(self, keys: set[bytes], serials: set[bytes]) -> tuple[set[bytes], set[bytes]]:
        """Everything below the targets: grants given to revoked keys, their sub-grants, holders."""
        grants = self._conn.execute("SELECT serial, parent, grantee_id FROM grants").fetchall()
        by_serial = {bytes(g[0]): g for g in grants}
        holders = {
            bytes(e.grant_serial): e.endpoint_id
            for e in self._endpoints.values()
            if e.grant_serial is not None
        }
        changed = True
        while changed:
            changed = False
            for serial, (_, parent, grantee) in by_serial.items():
                hit = (bytes(grantee) in keys) or (parent is not None and bytes(parent) in serials)
                if hit and serial not in serials:
                    serials.add(serial)
                    changed = True
            for serial in list(serials):
                holder = holders.get(serial)
                if holder is not None and holder not in keys:
                    keys.add(holder)
                    changed = True
        return keys, serials

    def _revoke(
        self,
        seq: int,
        digest: bytes,
        issuer: str,
        *,
        keys: set[bytes],
        serials: set[bytes],
        now: float,
    ) -> None:
        keys, serials = self._cascade(set(keys), set(serials))
        with storage.write(self._conn) as conn:
            conn.execute(
                "INSERT INTO revocations (seq, digest, issuer, received_at) VALUES (?, ?, ?, ?)",
                (seq, digest, issuer, now),
            )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'revocation_seq'", (seq,))
            conn.executemany(
                "INSERT OR IGNORE INTO revoked_ids (id, kind, seq) VALUES (?, ?, ?)",
                [(k, "key", seq) for k in keys] + [(g, "grant", seq) for g in serials],
            )
            conn.executemany(
                "UPDATE endpoints SET revoked_seq = ?, persistent_key = NULL"
                " WHERE endpoint_id = ? AND revoked_seq IS NULL",
                [(seq, k) for k in keys],
            )
            for key in sorted(keys):
                audit.append(
                    conn,
                    time=now,
                    key_id=key.hex(),
                    command="revoke",
                    result="ok",
                    detail=f"seq {seq} by {issuer[:16]}",
                )
        self._revoked |= keys | serials
        for key in keys:
            endpoint = self._endpoints.get(key)
            if endpoint is not None and not endpoint.revoked:
                self._endpoints[key] = dataclasses.replace(endpoint, revoked_seq=seq)
            self._persistent.pop(key, None)
        self._bump_floor(now)

    def _bump_floor(self, now: float) -> None:
        self._floor = max(self._floor, now)

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
        self._bump_floor(now)
