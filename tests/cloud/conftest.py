"""Cloud fixtures: the same tests on SQLite + the embedded broker and on PostgreSQL + Mosquitto.

PostgreSQL (127.0.0.1:5432) and Mosquitto (127.0.0.1:1883) are real services here (`.ci/run`
starts them); each test gets an empty database schema.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cloud.rig import Instance, free_port, start_server
from tests.integration.procs import tether
from tether.cloud.server import Server

PG_ADMIN = os.environ.get("TETHER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MOSQUITTO = os.environ.get("TETHER_TEST_MQTT", "mqtt://127.0.0.1:1883")
PG_DB = "tether_test"


@pytest.fixture(scope="session")
def pg_url() -> str:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        admin.connect().close()
    except sa.exc.OperationalError:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN}: start it (`.ci/run` does, or"
            " `pg_ctlcluster <version> main start`), or point TETHER_TEST_PG at one",
            pytrace=False,
        )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {PG_DB}"))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB


def reset_pg(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database's URL: SQLite in a file, or the real PostgreSQL."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        reset_pg(url)
        return url
    return f"sqlite:///{tmp_path / 'cloud.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        reset_pg(url)
        srv = await start_server(tmp_path / "server", database=url, mqtt=MOSQUITTO)
    else:
        srv = await start_server(tmp_path / "server", database=None, mqtt=None)
    yield srv
    await srv.stop()


@pytest.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path / "server", database=None, mqtt=None)
    yield srv
    await srv.stop()


def _dump_tasks(*_: object) -> None:
    """`kill -USR1 <pytest pid>` prints every asyncio task's stack (to find a hang)."""
    import asyncio
    import sys

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for task in asyncio.all_tasks(loop):
        task.print_stack(file=sys.stderr)


signal.signal(signal.SIGUSR1, _dump_tasks)


@pytest.fixture
def broker() -> Iterator[tuple[int, Path]]:
    port = free_port()
    # Not under pytest's tmp_path: its 0700 parents keep out the user Mosquitto drops to.
    tmp_path = Path(tempfile.mkdtemp(prefix="tether-mqtt-"))
    tmp_path.chmod(0o711)
    made = tether("mosquitto-setup", "--dir", str(tmp_path / "mqtt"), "--port", str(port))
    assert "mosquitto -c" in made.stdout
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "mqtt" / "broker" / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), 0.2),
        ):
            break
        time.sleep(0.05)
    yield port, tmp_path / "mqtt" / "mqtt-secrets.json"
    proc.terminate()
    output, _ = proc.communicate(timeout=10)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert b"Error" not in output, output.decode(errors="replace")


@pytest.fixture
def instances(
    pg_url: str, broker: tuple[int, Path], tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    reset_pg(pg_url)
    port, secrets = broker
    a = Instance(tmp_path / "a", pg_url, port, secrets)
    b = Instance(tmp_path / "b", pg_url, port, secrets)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
