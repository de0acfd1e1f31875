"""docs/deploy.md's nginx configuration, as written, in front of two server instances: requests
reach both, signed requests (RFC 9421) pass untouched, and a car's owner sends a remote command."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cloud.rig import Instance, eventually, free_port, make_car, pair_owner
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet
from tether.protocol.commands import Command

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONF = Path(__file__).parents[2] / "examples" / "deploy" / "nginx.conf"
pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="needs nginx (.ci/run installs it)"
)


@pytest.fixture
def balancer(instances: tuple[Instance, Instance], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    (tmp_path / "nginx").mkdir()
    upstreams = "\n        ".join(
        f"server {i.url.removeprefix('http://')} max_fails=1 fail_timeout=10s;" for i in instances
    )
    text = (
        CONF.read_text()
        .replace("@PID@", str(tmp_path / "nginx" / "nginx.pid"))
        .replace("@ERROR_LOG@", str(tmp_path / "nginx" / "error.log"))
        .replace("@TEMP@", str(tmp_path / "nginx"))
        .replace("@UPSTREAMS@", upstreams)
        .replace("@LISTEN@", f"127.0.0.1:{port}")
    )
    assert re.search(r"@[A-Z_]+@", text) is None  # every placeholder filled
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(text)
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-e", str(tmp_path / "nginx" / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def test_nginx_spreads_signed_requests_over_both_instances(
    balancer: str, instances: tuple[Instance, Instance], tmp_path: Path
) -> None:
    seen = {httpx.get(f"{balancer}/v1/health", timeout=5).json()["instance"] for _ in range(20)}
    assert seen == {i.health()["instance"] for i in instances}

    car = await make_car(tmp_path / "car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    try:
        ada = await pair_owner(car, owner)
        await car.connect(balancer)  # the car, too, reaches the servers through the balancer

        async def locked() -> bool:
            try:
                result = await cloud.command(owner, ada, balancer, Command.LOCK, now=time.time())
            except Exception:
                return False  # the car has not told the servers about its owner yet
            return result.ok

        await eventually(locked, timeout=30, every=0.5)
        for _ in range(6):  # whichever instance each lands on
            assert (await cloud.command(owner, ada, balancer, Command.UNLOCK, now=time.time())).ok
    finally:
        await car.close()
        owner.close()
