"""SQLite plumbing for the car's and the phone's stores: WAL, full sync, one-transaction writes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

from tether.errors import LocalCode, StorageError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a directory only its owner can enter (0700)."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(PRIVATE_DIR)
    except OSError as exc:
        raise StorageError(f"cannot make the directory {path}: {exc.strerror}") from exc
    return path


def _private_file(path: Path) -> None:
    """Create ``path`` as 0600 before SQLite opens it (its -wal and -shm files inherit the mode)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE)
        os.close(fd)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(PRIVATE_FILE)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open a store in WAL mode with fsync on every commit (durable before acknowledged).

    Stores hold keys: the file is 0600 and its directory 0700, whatever the umask (an older store
    with looser modes is tightened when it is opened).
    """
    if not create and not path.exists():
        raise StorageError(f"no store at {path}; create it first (init)", code=LocalCode.MISSING)
    if create:
        private_dir(path.parent)
    _private_file(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    return conn


@contextlib.contextmanager
def write(conn: sqlite3.Connection, *, sync: bool = True) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it is committed or none of it.

    With ``sync`` (the default) the commit is fsynced before this returns: durable even against
    power loss. ``sync=False`` is for audit-only entries: the commit survives ``kill -9`` (WAL), and
    reaches the disk with the next synced commit; a power cut can lose the newest of them, never a
    key change, and the hash chain stays consistent either way (docs/vehicle.md).
    """
    conn.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StorageError(f"store is busy or unwritable: {exc}") from exc
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StorageError(f"could not commit: {exc}") from exc


def integrity_ok(conn: sqlite3.Connection) -> bool:
    """SQLite's own integrity check."""
    return bool(conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
